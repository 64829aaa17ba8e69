"""RecordBatch v2 (Kafka's magic 2 format) ↔ Arrow record batches of RECORD_SCHEMA.

Layout of a batch: a 61-byte header (base offset, length, leader epoch, magic, CRC32C,
attributes, last offset delta, base/max timestamp, producer id/epoch, base sequence,
record count) and then the record section, compressed as a whole when attributes say so.
The CRC covers everything from the attributes on, so it is checked before decompressing.

Per batch this module does a handful of numpy calls; the per-record work is the C
kernel's. Null and empty keys/values stay distinct; a record with no headers has null
headers (Kafka cannot tell an empty header list from none, and our SDK writes null).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import crc32c
import numpy as np
import pyarrow as pa

from streamhouse.kafka.errors import CorruptMessageError, KafkaProtocolError, RecordTooLargeError
from streamhouse.kafka.protocol.primitives import Buffer
from streamhouse.kafka.record import _kernel
from streamhouse.kafka.record.compression import NONE, decompress
from streamhouse.storage.records.schema import HEADER_TYPE, HEADERS_TYPE, RECORD_SCHEMA

HEADER: Final = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE: Final = HEADER.size  # 61
_CRC_FROM: Final = 21  # attributes onwards
_LENGTH_AFTER: Final = 12  # batch_length counts the bytes after base_offset + itself
COMPRESSION_MASK: Final = 0x07
TIMESTAMP_LOG_APPEND: Final = 0x08
TRANSACTIONAL: Final = 0x10
CONTROL: Final = 0x20
DEFAULT_MAX_UNCOMPRESSED: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class KafkaBatch:
    """One decoded RecordBatch: its header fields and its records as Arrow."""

    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: pa.RecordBatch
    size: int  # bytes of this batch on the wire

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_LOG_APPEND)


def _corrupt(reason: str, position: int) -> CorruptMessageError:
    return CorruptMessageError(reason, api="RecordBatch", field="records", position=position)


def iter_batches(data: Buffer, *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> Iterator[KafkaBatch]:
    """Every batch in a `records` field, in order. A partial batch at the end is corrupt
    (a producer never sends one; a fetch response may, and the consumer side trims it)."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    pos = 0
    # Each iteration consumes a whole batch of at least HEADER_SIZE bytes, so this ends.
    while pos < len(view):
        batch = decode_batch(view, pos, max_uncompressed=max_uncompressed)
        pos += batch.size
        yield batch


def produced_batches(records: Buffer | None, *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> list[KafkaBatch]:
    """A produce request's `records` for one partition, every batch decoded (CRC, codec,
    records) before any is written; KafkaProtocolError if there is nothing to write."""
    if records is None or len(records) == 0:
        raise KafkaProtocolError("no records", api="Produce", field="records")
    batches = list(iter_batches(records, max_uncompressed=max_uncompressed))
    if not any(b.records.num_rows for b in batches):  # batches of zero records: nothing to place
        raise KafkaProtocolError("the record batches hold no records", api="Produce", field="records")
    return batches


def merged_records(batches: list[KafkaBatch]) -> pa.RecordBatch:
    """A partition's batches as one (a client usually sends one per partition: not copied)."""
    if len(batches) == 1:
        return batches[0].records
    whole = pa.Table.from_batches([b.records for b in batches], schema=RECORD_SCHEMA).combine_chunks()
    return whole.to_batches()[0] if whole.num_rows else RECORD_SCHEMA.empty_table().to_batches()[0]


def decode_batch(data: Buffer, start: int = 0, *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> KafkaBatch:
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    if len(view) - start < HEADER_SIZE:
        raise _corrupt(f"{len(view) - start} bytes are not a batch header ({HEADER_SIZE})", start)
    (base_offset, length, leader_epoch, magic, crc, attributes, last_delta, base_ts, max_ts, pid, epoch, seq, count) = (
        HEADER.unpack_from(view, start)
    )
    if magic != 2:
        raise KafkaProtocolError(
            f"record batch magic {magic}: only v2 (magic 2) is supported",
            api="RecordBatch",
            field="magic",
            position=start + 16,
        )
    size = length + _LENGTH_AFTER
    if size < HEADER_SIZE or size > len(view) - start:
        raise _corrupt(f"batch length {length} does not fit the {len(view) - start} bytes given", start + 8)
    body = view[start + _CRC_FROM : start + size]
    if crc32c.crc32c(body) != crc:
        raise _corrupt("CRC32C mismatch", start + 17)
    if count < 0:
        raise _corrupt(f"negative record count {count}", start + 57)
    codec = attributes & COMPRESSION_MASK
    section: Buffer = view[start + HEADER_SIZE : start + size]
    if codec != NONE:
        try:
            section = decompress(codec, section, max_uncompressed)
        except KafkaProtocolError as exc:
            exc.position = start + HEADER_SIZE
            raise
    elif len(section) > max_uncompressed:
        raise RecordTooLargeError(f"batch of {len(section)} bytes exceeds {max_uncompressed}", field="records")
    records = decode_records(section, count, base_offset, base_ts, start + HEADER_SIZE)
    if attributes & TIMESTAMP_LOG_APPEND:
        records = records.set_column(1, "timestamp", pa.array(np.full(count, max_ts, dtype=np.int64)))
    return KafkaBatch(
        base_offset, leader_epoch, attributes, last_delta, base_ts, max_ts, pid, epoch, seq, records, size
    )


def decode_records(
    section: Buffer, count: int, base_offset: int, base_timestamp: int, position: int = 0
) -> pa.RecordBatch:
    """A v2 record section (uncompressed) → RECORD_SCHEMA batch. `position` labels errors.

    One kernel pass leaves the offset, timestamp, key and value columns as Arrow buffers
    (each key and value copied once, into a buffer of the section's size, shrunk in place
    afterwards); the header column is built from the header spans only when a record has
    headers (producers mostly send none)."""
    if count > len(section):  # every record takes at least 7 bytes; refuse before allocating
        raise _corrupt(f"{count} records in {len(section)} bytes", position)
    i32, u8 = np.int32, np.uint8
    offsets, timestamps = np.empty(count, np.int64), np.empty(count, np.int64)
    key_offsets, val_offsets = np.empty(count + 1, i32), np.empty(count + 1, i32)
    key_valid, val_valid = np.zeros((count + 7) // 8, u8), np.zeros((count + 7) // 8, u8)
    # Keys and values both fit in the section; the unused tail is given back by resize below.
    key_data, val_data = np.empty(len(section), u8), np.empty(len(section), u8)
    hdr_pos, hdr_count = np.empty(count, i32), np.empty(count, i32)
    try:
        key_bytes, key_nulls, val_bytes, val_nulls, n_headers = _kernel.decode_columns(
            section, count, base_offset, base_timestamp, offsets, timestamps, key_offsets, key_valid, key_data,
            val_offsets, val_valid, val_data, hdr_pos, hdr_count,
        )  # fmt: skip
    except ValueError as exc:
        raise _corrupt(f"record section: {exc}", position) from None
    # realloc shrinks in place: no copy, and no buffer larger than its column is kept alive.
    key_data.resize(key_bytes, refcheck=False)
    val_data.resize(val_bytes, refcheck=False)
    keys = _column(pa.binary(), count, key_nulls, key_valid, key_offsets, key_data)
    values = _column(pa.binary(), count, val_nulls, val_valid, val_offsets, val_data)
    if n_headers:
        headers = _headers(section, np.frombuffer(section, dtype=u8), hdr_pos, hdr_count, n_headers, position)
    else:
        headers = _no_headers(count)
    columns = [pa.array(offsets), pa.array(timestamps), keys, values, headers]
    return pa.RecordBatch.from_arrays(columns, schema=RECORD_SCHEMA)


def _column(
    type_: pa.DataType,
    n: int,
    nulls: int,
    valid: np.ndarray[Any, Any],
    offsets: np.ndarray[Any, Any],
    data: np.ndarray[Any, Any],
) -> pa.Array[Any]:
    validity = _buffer(valid) if nulls else None
    return pa.Array.from_buffers(type_, n, [validity, _buffer(offsets), _buffer(data)], null_count=nulls)


_EMPTY_HEADER = pa.StructArray.from_arrays(
    [pa.array([], pa.string()), pa.array([], pa.binary())], fields=list(HEADER_TYPE)
)


def _no_headers(n: int) -> pa.Array[Any]:
    """`n` records without headers: null header lists (what _headers builds for them)."""
    validity = _buffer(np.zeros((n + 7) // 8, np.uint8))
    offsets = _buffer(np.zeros(n + 1, np.int32))
    return pa.Array.from_buffers(HEADERS_TYPE, n, [validity, offsets], null_count=n, children=[_EMPTY_HEADER])


def _buffer(arr: np.ndarray[Any, Any]) -> pa.Buffer:
    return pa.py_buffer(cast(Any, arr))  # zero-copy: numpy arrays export the buffer protocol


def _binary(
    src: np.ndarray[Any, Any], start: np.ndarray[Any, Any], length: np.ndarray[Any, Any], type_: pa.DataType
) -> pa.Array[Any]:
    n = len(start)
    valid = length >= 0
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.maximum(length, 0), out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    _kernel.gather(src, start, length, data)
    null_count = n - int(np.count_nonzero(valid))
    validity = None if null_count == 0 else _buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(type_, n, [validity, _buffer(offsets), _buffer(data)], null_count=null_count)


def _headers(
    section: Buffer,
    src: np.ndarray[Any, Any],
    hdr_pos: np.ndarray[Any, Any],
    hdr_count: np.ndarray[Any, Any],
    total: int,
    position: int,
) -> pa.Array[Any]:
    n = len(hdr_pos)
    hk_start, hk_len, hv_start, hv_len = (np.empty(total, np.int32) for _ in range(4))
    if total:
        _kernel.decode_headers(section, n, hdr_pos, hdr_count, hk_start, hk_len, hv_start, hv_len)
    keys = _binary(src, hk_start, hk_len, pa.string())
    try:
        keys.validate(full=True)  # header keys are Kafka strings: UTF-8
    except pa.ArrowInvalid as exc:
        raise _corrupt(f"header key is not UTF-8: {exc}", position) from None
    values = _binary(src, hv_start, hv_len, pa.binary())
    child = pa.StructArray.from_arrays([keys, values], fields=list(HEADER_TYPE))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(hdr_count, out=offsets[1:])
    present = hdr_count > 0
    null_count = n - int(np.count_nonzero(present))
    validity = None if null_count == 0 else _buffer(np.packbits(present, bitorder="little"))
    return pa.Array.from_buffers(HEADERS_TYPE, n, [validity, _buffer(offsets)], null_count=null_count, children=[child])
