"""The Confluent wire format of serialised keys and values, split for a whole Arrow column at once
(issue 13). IO-free; numpy over the column's buffers, no Python loop per record.

Every value a Confluent serialiser writes starts with magic byte 0 and the schema id as a 4-byte
big-endian integer; Protobuf values then carry the message indexes (which message of the .proto:
a zigzag varint count, then that many zigzag varints; the single byte 0 stands for [0], the first
message). `split` checks the framing of every non-null value and returns each record's schema id
and its payload without the header; `split_message_indexes` strips the Protobuf indexes. A bad
value raises WireFormatError naming the first bad record's index in the column, so a produce can
refuse the batch and say which record. Null values (tombstones) stay null, with a null id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.errors import WireFormatError

MAGIC = 0
HEADER_BYTES = 5
_MAX_VARINT_BYTES = 10
_MAX_INDEXES = 64  # nesting depth of a message inside a .proto; far beyond any real schema

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Framed:
    """Per record: `schema_ids` (int32, null where the value is null) and `payloads` (binary)."""

    schema_ids: pa.Array[Any]  # int32
    payloads: pa.Array[Any]  # binary


@dataclass(frozen=True)
class Indexed:
    """Per record: the Protobuf message indexes (list<int32>) and the message bytes."""

    indexes: pa.Array[Any]  # list<int32>
    payloads: pa.Array[Any]  # binary


def buffers(column: pa.Array[Any]) -> tuple[Array, Array, Array]:
    """(starts, ends, data bytes) of a binary column, in the column's own coordinates."""
    if pa.types.is_large_binary(column.type):
        dtype: Any = np.int64
    elif pa.types.is_binary(column.type):
        dtype = np.int32
    else:
        raise TypeError(f"a serialised column must be binary or large_binary, not {column.type}")
    _validity, offsets_buf, data_buf = column.buffers()
    assert offsets_buf is not None
    offsets = np.frombuffer(memoryview(offsets_buf), dtype=dtype, count=column.offset + len(column) + 1)[
        column.offset :
    ]
    data = np.frombuffer(memoryview(data_buf), dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64), data


def numpy_buffer(values: Array) -> pa.Buffer:
    """A numpy array's bytes as an Arrow buffer, zero-copy."""
    buffer = pa.array(values.view(np.uint8)).buffers()[1]
    assert buffer is not None
    return buffer


def valid_mask(column: pa.Array[Any]) -> Array:
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _cut(data: Array, starts: Array, keep_from: Array, ends: Array, valid: Array) -> pa.Array[Any]:
    """A binary array of data[keep_from[i]:ends[i]] per record (null where not valid).

    The records of a column are contiguous in its data buffer, so the result is that span with
    the headers [starts, keep_from) (and null records' bytes, if any) masked out: one boolean
    gather over the bytes, with the positions to drop built from the (small) header ranges only.
    """
    n = len(starts)
    lengths = np.where(valid, ends - keep_from, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if n == 0:
        body = np.zeros(0, np.uint8)
    else:
        first, last = int(starts[0]), int(ends[-1])
        drop_to = np.where(valid, keep_from, ends)
        widths = drop_to - starts
        total = int(widths.sum())
        keep = np.ones(last - first, dtype=bool)
        if total and (widths == widths[0]).all():  # the usual case: one header size for all
            keep[((starts - first)[:, None] + np.arange(int(widths[0]))).ravel()] = False
        elif total:
            run_starts = np.zeros(n, dtype=np.int64)
            np.cumsum(widths[:-1], out=run_starts[1:])
            owner = np.repeat(np.arange(n), widths)
            keep[starts[owner] - first + (np.arange(total, dtype=np.int64) - run_starts[owner])] = False
        body = data[first:last][keep]
    mask = None if valid.all() else pa.array(valid).buffers()[1]  # validity bitmap: 1 = present
    if offsets[-1] >= 2**31:
        large = pa.Array.from_buffers(pa.large_binary(), n, [mask, numpy_buffer(offsets), numpy_buffer(body)])
        return large.cast(pa.binary())  # raises: a column over 2 GiB cannot be a binary array
    out = pa.Array.from_buffers(pa.binary(), n, [mask, numpy_buffer(offsets.astype(np.int32)), numpy_buffer(body)])
    return out


@dataclass(frozen=True)
class Headers:
    """A column's 5-byte headers read in place: per record the schema id (0 where null) and
    whether it is present, and the column's buffers, so a decoder can read each payload at
    starts + HEADER_BYTES without copying it out (Protobuf topics, storage/values/protobuf_decode.py)."""

    ids: Array  # uint32
    valid: Array  # bool
    starts: Array
    ends: Array
    data: Array


def headers(column: pa.Array[Any], source: str = "value column") -> Headers:
    """Check every non-null value's framing (WireFormatError for the first value shorter than 5
    bytes or without magic byte 0) and read its schema id, in place."""
    starts, ends, data = buffers(column)
    valid = valid_mask(column)
    short = valid & (ends - starts < HEADER_BYTES)
    if short.any():
        i = int(np.argmax(short))
        raise WireFormatError(
            f"record {i}: {int(ends[i] - starts[i])} bytes, too short for the 5-byte schema header",
            index=i,
            source=source,
        )
    head = np.where(valid, starts, 0)
    if len(data) < HEADER_BYTES:
        data = np.zeros(HEADER_BYTES, np.uint8)  # every value is null: gather from something
    block = data[np.minimum(head[:, None] + np.arange(HEADER_BYTES), len(data) - 1)]  # one gather, n x 5
    magic = block[:, 0]
    bad = valid & (magic != MAGIC)
    if bad.any():
        i = int(np.argmax(bad))
        raise WireFormatError(
            f"record {i}: magic byte {int(magic[i])}, expected 0 (not written by a schema-registry serialiser)",
            index=i,
            source=source,
        )
    ids = np.ascontiguousarray(block[:, 1:]).view(">u4").reshape(-1).astype(np.uint32)  # big-endian id
    if not valid.all():
        ids[~valid] = 0
    return Headers(ids, valid, starts, ends, data)


def split(column: pa.Array[Any], source: str = "value column") -> Framed:
    """Schema ids and payloads of a column of Confluent-framed values. WireFormatError (the
    first bad record's index) for a value shorter than 5 bytes or without magic byte 0."""
    h = headers(column, source)
    valid = h.valid
    ids_arr = pa.array(h.ids.view(np.int32), type=pa.int32(), mask=~valid if not valid.all() else None)
    return Framed(ids_arr, _cut(h.data, h.starts, h.starts + HEADER_BYTES, h.ends, valid))


def zigzag_varints(
    data: Array, pos: Array, ends: Array, live: Array, source: str, what: str = "Protobuf message indexes"
) -> tuple[Array, Array]:
    """One zigzag varint (Protobuf's sint, Avro's int and long) per live record at `pos`:
    (values, positions after them); one numpy round per varint byte, never per record."""
    value = np.zeros(len(pos), dtype=np.uint64)
    done = ~live
    at = pos.copy()
    for k in range(_MAX_VARINT_BYTES):
        todo = ~done
        if not todo.any():
            break
        over = todo & (at >= ends)
        if over.any():
            i = int(np.argmax(over))
            raise WireFormatError(f"record {i}: {what} run past the value", index=i, source=source)
        byte = data[np.where(todo, at, 0)].astype(np.uint64)
        value = np.where(todo, value | ((byte & np.uint64(0x7F)) << np.uint64(7 * k)), value)
        at = np.where(todo, at + 1, at)
        done = done | (byte < 0x80)
    if not done.all():
        i = int(np.argmax(~done))
        raise WireFormatError(f"record {i}: a varint of {what} is too long", index=i, source=source)
    decoded = (value >> np.uint64(1)).astype(np.int64) ^ -(value & np.uint64(1)).astype(np.int64)
    return decoded, at


def split_message_indexes(payloads: pa.Array[Any], source: str = "value column") -> Indexed:
    """The Protobuf message indexes at the front of each payload (after `split`), and the rest."""
    starts, ends, data = buffers(payloads)
    valid = valid_mask(payloads)
    if len(data) == 0:
        data = np.zeros(1, np.uint8)
    counts, pos = zigzag_varints(data, starts, ends, valid, source)
    bad = valid & ((counts < 0) | (counts > _MAX_INDEXES))
    if bad.any():
        i = int(np.argmax(bad))
        raise WireFormatError(f"record {i}: {int(counts[i])} Protobuf message indexes", index=i, source=source)
    # The byte 0 alone (count 0) means [0]: the first message of the file.
    first = valid & (counts == 0)
    n = np.where(valid, np.where(first, 1, counts), 0)
    columns = np.zeros((len(n), int(n.max()) if len(n) else 0), dtype=np.int64)
    for j in range(columns.shape[1]):  # one round per index position, not per record
        live = valid & ~first & (counts > j)
        values, pos = zigzag_varints(data, pos, ends, live, source)
        columns[:, j] = np.where(live, values, 0)
    offsets = np.zeros(len(n) + 1, dtype=np.int32)
    np.cumsum(n, out=offsets[1:])
    flat = columns[np.arange(columns.shape[1]) < n[:, None]] if columns.size else np.zeros(0, np.int64)
    indexes = pa.ListArray.from_arrays(
        pa.array(offsets, type=pa.int32()), pa.array(flat.astype(np.int32), type=pa.int32())
    )
    if not valid.all():
        indexes = pa.ListArray.from_arrays(
            pa.array(offsets, type=pa.int32(), mask=np.append(~valid, False)), indexes.values
        )
    return Indexed(indexes, _cut(data, starts, pos, ends, valid))
