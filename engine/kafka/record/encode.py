"""Arrow record batches (RECORD_SCHEMA) → Kafka RecordBatch v2 bytes, for Fetch responses.

One Kafka batch per Arrow batch: offsets become deltas from the first record's, the first
timestamp is the batch's base timestamp. Deltas come from the records' own offsets, never from
their positions: a compacted topic's batches have gaps (issue 14), as a Kafka broker's do after
cleaning, and last_offset_delta is the last record's, so a client goes on right after it (the
next fetch, starting inside a gap, gets the records after the gap). The C kernel writes the record section straight
from Arrow's offset/data/validity buffers (slices included), so nothing is converted to
Python objects.
"""

from __future__ import annotations

from typing import Any, cast

import crc32c
import numpy as np
import pyarrow as pa

from streamhouse.kafka.errors import RecordTooLargeError
from streamhouse.kafka.record import _kernel
from streamhouse.kafka.record.batch import HEADER, HEADER_SIZE, TIMESTAMP_LOG_APPEND
from streamhouse.kafka.record.compression import NONE, compress

_CRC_FROM = 21
_EMPTY_OFFSETS = np.zeros(1, dtype=np.int32)
_INT32_MAX = 2**31 - 1


def _spans(
    arr: pa.Array[Any], type_: pa.DataType
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], pa.Buffer | bytes]:
    """Absolute int32 offsets (n + 1), a uint8 validity mask and the data buffer of a
    binary/string array, honouring the array's slice offset."""
    if arr.type != type_:
        arr = arr.cast(type_)
    n = len(arr)
    bufs = arr.buffers()
    if bufs[1] is None:
        offsets = np.zeros(n + 1, dtype=np.int32)
    else:
        offsets = np.frombuffer(cast(Any, bufs[1]), dtype=np.int32)[arr.offset : arr.offset + n + 1]
    valid = np.asarray(arr.is_valid(), dtype=np.uint8) if arr.null_count else np.ones(n, dtype=np.uint8)
    data = bufs[2] if bufs[2] is not None else b""
    return offsets, valid, data


def encode_batch(
    records: pa.RecordBatch,
    *,
    compression: int = NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    log_append_time: bool = False,
    max_bytes: int = _INT32_MAX,
    attributes: int = 0,
) -> bytes:
    """One RecordBatch v2 holding every row of `records` (which must be non-empty).
    `attributes`: extra bits (transactional, control: engine/kafka/fetch_txn.py)."""
    n = records.num_rows
    if n == 0:
        raise ValueError("a Kafka record batch holds at least one record")
    offsets = records.column("offset").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    timestamps = records.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    base_offset = int(offsets[0])
    off_delta = offsets - base_offset
    if int(off_delta.min()) < 0 or int(off_delta.max()) > _INT32_MAX:
        raise ValueError("offsets of one batch must ascend from the first within 2^31")
    base_ts = int(timestamps[0])
    ts_delta = timestamps - base_ts

    ko, kv, kd = _spans(records.column("key"), pa.binary())
    vo, vv, vd = _spans(records.column("value"), pa.binary())
    headers = records.column("headers")
    if headers.type != pa.list_(headers.type.value_type) or not pa.types.is_struct(headers.type.value_type):
        raise ValueError(f"headers column has type {headers.type}")
    lists: Any = headers
    list_offsets = np.frombuffer(cast(Any, lists.buffers()[1]), dtype=np.int32)[lists.offset : lists.offset + n + 1]
    lo = list_offsets[:-1].copy()
    hi = list_offsets[1:].copy()
    if lists.null_count:
        present = np.asarray(lists.is_valid())
        hi = np.where(present, hi, lo).astype(np.int32)
    child: Any = lists.values
    if len(child):
        hko, _, hkd = _spans(child.field("key"), pa.string())
        hvo, hvv, hvd = _spans(child.field("value"), pa.binary())
    else:
        hko, hkd, hvo, hvv, hvd = _EMPTY_OFFSETS, b"", _EMPTY_OFFSETS, np.zeros(0, np.uint8), b""

    key_bytes = int(ko[-1]) - int(ko[0])
    value_bytes = int(vo[-1]) - int(vo[0])
    m = int(np.sum(hi - lo))
    header_bytes = (int(hko[-1]) - int(hko[0]) + int(hvo[-1]) - int(hvo[0])) if len(child) else 0
    bound = 40 * n + key_bytes + value_bytes + 20 * m + header_bytes
    if bound > max_bytes + 40 * n + 20 * m:
        raise RecordTooLargeError(f"batch of about {bound} bytes exceeds {max_bytes}", field="records")
    out = np.empty(bound, dtype=np.uint8)
    written = _kernel.encode_records(
        out, n, off_delta, ts_delta, ko, kv, kd, vo, vv, vd, lo, hi, hko, hkd, hvo, hvv, hvd
    )
    section: bytes | memoryview = out.data[:written]
    if compression != NONE:
        section = compress(compression, section)
    attributes |= compression | (TIMESTAMP_LOG_APPEND if log_append_time else 0)
    header = HEADER.pack(
        base_offset,
        HEADER_SIZE - 12 + len(section),
        partition_leader_epoch,
        2,
        0,
        attributes,
        int(off_delta[-1]),
        base_ts,
        int(timestamps.max()),
        producer_id,
        producer_epoch,
        base_sequence,
        n,
    )
    crc = crc32c.crc32c(section, crc32c.crc32c(header[_CRC_FROM:]))
    return header[:17] + crc.to_bytes(4, "big") + header[_CRC_FROM:] + bytes(section)


def encode_batches(batches: list[pa.RecordBatch], *, compression: int = NONE) -> bytes:
    """The `records` field of a Fetch response: one Kafka batch per non-empty Arrow batch."""
    return b"".join(encode_batch(b, compression=compression) for b in batches if b.num_rows)
