"""Kafka transaction markers stored in a partition's log (issue 18, docs/DESIGN.md §2).

When a Kafka transaction ends, each of its partitions gets one control row at its own offset, as a
Kafka broker writes a control batch (COMMIT or ABORT) there. A control row is an ordinary row of
RECORD_SCHEMA, so it goes through the leader's append path unchanged (WAL, buffer, segment, WAL
takeover, merges), and it is told apart by its first header, whose key is CONTROL_HEADER:

    key      Kafka's control record key: int16 version (0), int16 type (ABORT 0, COMMIT 1)
    value    null (the Kafka value, int16 version + int32 coordinator epoch, is rebuilt on fetch;
             a null value is valid in every value format, so typed topics decode it as a tombstone)
    headers  [(CONTROL_HEADER, int64 producer id | int16 producer epoch | int32 coordinator epoch)]

The header key is reserved: produce refuses records that carry it (refuse_reserved), so only the
transaction coordinator writes control rows. Segments list their control rows' offsets in the
footer (KEY_CONTROL_OFFSETS, written by encode_segment from the rows themselves), so SQL scans drop
them by offset without reading the headers column; segments without the key have none (every
segment written before markers existed).

Kafka Fetch encodes them as control batches (engine/kafka/fetch_txn.py); every other reader
drops them (`without_control`, `drop_offsets`).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import make_batch

CONTROL_HEADER = "__streamhouse.kafka.control"
KEY_CONTROL_OFFSETS = "streamhouse.control_offsets"  # a segment footer's control rows, ascending
ABORT, COMMIT = 0, 1
_KEY = struct.Struct(">hh")
_META = struct.Struct(">qhi")
_VALUE = struct.Struct(">hi")


@dataclass(frozen=True)
class Marker:
    """One control row: what a Kafka control batch carries."""

    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int = 0

    @property
    def kafka_key(self) -> bytes:
        return _KEY.pack(0, COMMIT if self.commit else ABORT)

    @property
    def kafka_value(self) -> bytes:
        return _VALUE.pack(0, self.coordinator_epoch)


def marker_batch(marker: Marker, timestamp_ms: int) -> pa.RecordBatch:
    """The one-row batch a transaction's end appends to each of its partitions."""
    meta = _META.pack(marker.producer_id, marker.producer_epoch, marker.coordinator_epoch)
    return make_batch([None], keys=[marker.kafka_key], timestamps=[timestamp_ms], headers=[[(CONTROL_HEADER, meta)]])


def marker_of(key: bytes | None, meta: bytes | None) -> Marker:
    """A control row's marker from its key and its control header's value."""
    if key is None or len(key) != _KEY.size or meta is None or len(meta) != _META.size:
        raise InvalidInputError("a control row needs a 4-byte key and a 14-byte control header")
    _, kind = _KEY.unpack(key)
    pid, epoch, coordinator_epoch = _META.unpack(meta)
    return Marker(pid, epoch, kind == COMMIT, coordinator_epoch)


def control_mask(headers: pa.Array[Any] | pa.ChunkedArray[Any]) -> np.ndarray[Any, Any] | None:
    """Which rows of a headers column are control rows; None when none is (the usual case, found
    without looking at a header when the column is all null or all empty)."""
    if isinstance(headers, pa.ChunkedArray):  # per chunk: a roll's table has one per appended batch
        masks = [control_mask(chunk) for chunk in headers.chunks]
        if all(m is None for m in masks):
            return None
        return np.concatenate(
            [np.zeros(len(c), np.bool_) if m is None else m for c, m in zip(headers.chunks, masks, strict=True)]
        )
    n = len(headers)
    if n == 0 or headers.null_count == n:
        return None
    lists: Any = headers
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    has = lengths > 0
    if not has.any():
        return None
    firsts = lists.offsets.to_numpy()[:-1][has]  # into the unsliced child, as `values` is
    keys = lists.values.field("key").take(pa.array(firsts, type=pa.int64()))
    hits = pc.fill_null(pc.equal(keys, pa.scalar(CONTROL_HEADER)), False).to_numpy(zero_copy_only=False)
    if not hits.any():
        return None
    mask = np.zeros(n, dtype=np.bool_)
    mask[has] = hits
    return mask


def control_offsets(records: pa.Table | pa.RecordBatch) -> np.ndarray[Any, Any]:
    """The offsets of `records`' control rows (RECORD_SCHEMA columns), ascending as the rows are."""
    mask = control_mask(records.column("headers"))
    if mask is None:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(records.column("offset").to_numpy(zero_copy_only=False)[mask], dtype=np.int64)


def without_control(records: pa.Table) -> pa.Table:
    """`records` less its control rows (readers other than Kafka Fetch)."""
    if "headers" not in records.column_names:
        raise InvalidInputError("without_control needs the headers column; drop by offset instead")
    mask = control_mask(records.column("headers"))
    return records if mask is None else records.filter(pa.array(~mask))


def drop_offsets(records: pa.Table, offsets: np.ndarray[Any, Any]) -> pa.Table:
    """`records` less the rows at `offsets` (a segment's control rows, from its footer)."""
    if not len(offsets) or not records.num_rows:
        return records
    keep = ~np.isin(records.column("offset").to_numpy(), offsets)
    return records if keep.all() else records.filter(pa.array(keep))


def record_keys(records: pa.Table) -> pa.Array[Any]:
    """The key column with control rows' keys null (log compaction drops keyless rows)."""
    keys = records.column("key").combine_chunks()
    mask = control_mask(records.column("headers"))
    return keys if mask is None else pc.if_else(pa.array(mask), pa.nulls(len(keys), keys.type), keys)


def refuse_reserved(batch: pa.RecordBatch, topic: str) -> None:
    """Produce: a record may carry the control header only as a whole, well-formed marker batch
    (a WAL take-over hands a marker to the partition's new leader through its produce path,
    engine/agent/forward.py); anything else with it is refused before it is written."""
    mask = control_mask(batch.column("headers"))
    if mask is None:
        return
    if mask.all() and batch.column("value").null_count == batch.num_rows:
        try:
            for row in batch.select(["key", "headers"]).to_pylist():  # markers only: one row each
                marker_of(row["key"], row["headers"][0]["value"])
            return
        except InvalidInputError:
            pass
    raise InvalidInputError(f"{topic}: the record header {CONTROL_HEADER!r} is reserved for transaction markers")


def footer_metadata(records: pa.Table) -> dict[str, str]:
    """The footer entry of a segment holding `records`: their control rows' offsets, if any."""
    found = control_offsets(records)
    return {KEY_CONTROL_OFFSETS: ",".join(map(str, found.tolist()))} if len(found) else {}


def footer_controls(metadata: Mapping[bytes, bytes] | None) -> np.ndarray[Any, Any]:
    """A segment's control-row offsets from its footer's key/value metadata (none: old segments)."""
    raw = (metadata or {}).get(KEY_CONTROL_OFFSETS.encode())
    if not raw:
        return np.zeros(0, dtype=np.int64)
    return np.array([int(o) for o in raw.split(b",")], dtype=np.int64)
