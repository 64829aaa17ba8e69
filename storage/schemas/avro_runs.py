"""Whole blocks of primitive Avro array items at once (storage/schemas/avro_collections.py's fast
path): when an array's items are plain int, long, float, double or boolean, every record's block
of items is read in one numpy step instead of one step per item position. IO-free.

Fixed-width items are one gather of count × width bytes. Varints end at the bytes below 0x80:
with C the running count of such bytes over the batch's buffer, a block of c varints starting at
p ends at the first q where C[q] - C[p] = c (one searchsorted for all records); the bytes of all
blocks are then decoded together, each byte shifted by its place in its varint and OR-reduced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.avro_cursor import Cursor
from streamhouse.storage.schemas.wire import Array

RunReader = Callable[[Cursor, Array], "pa.Array[Any]"]
_FIXED: dict[str, tuple[str, pa.DataType]] = {
    "float": ("<f4", pa.float32()),
    "double": ("<f8", pa.float64()),
    "boolean": ("u1", pa.bool_()),
}
_MAX_VARINT_BYTES = 10


def run_reader(items: Any, path: str) -> RunReader | None:
    """A reader of `counts[k]` items per entry of a cursor, for a plain primitive item schema."""
    kind = items.get("type") if isinstance(items, dict) and "logicalType" not in items else items
    if not isinstance(kind, str):
        return None
    if kind in _FIXED:
        dtype, arrow = _FIXED[kind]
        width = np.dtype(dtype).itemsize
        return lambda sub, counts: _fixed(sub, counts, width, dtype, arrow, path)
    if kind in ("int", "long"):
        return lambda sub, counts: _varints(sub, counts, kind == "int", path)
    return None


def _fixed(sub: Cursor, counts: Array, width: int, dtype: str, arrow: pa.DataType, path: str) -> pa.Array[Any]:
    _, body = sub.gather(np.ones(len(counts), dtype=bool), counts * width, f"{path}[]")
    if arrow == pa.bool_():
        return pa.array(body != 0, type=arrow)
    return pa.array(body.view(dtype), type=arrow)


def _varints(sub: Cursor, counts: Array, narrow: bool, path: str) -> pa.Array[Any]:
    ends_below = np.zeros(len(sub.data) + 1, dtype=np.int64)  # C: last bytes of varints before q
    np.cumsum(sub.data < 0x80, out=ends_below[1:])
    stop = np.searchsorted(ends_below, ends_below[sub.pos] + counts, side="left")
    sub.fail(stop > sub.ends, f"the value ends inside {path}[] (a varint runs past it)")
    spans = stop - sub.pos
    _, body = sub.gather(np.ones(len(counts), dtype=bool), spans, f"{path}[]")
    last = body < 0x80
    first = np.flatnonzero(np.concatenate(([True], last[:-1])))[: int(counts.sum())]
    place = np.arange(len(body), dtype=np.int64) - np.repeat(first, np.diff(np.append(first, len(body))))
    if len(place) and int(place.max()) >= _MAX_VARINT_BYTES:
        at = np.searchsorted(np.cumsum(spans), int(np.argmax(place >= _MAX_VARINT_BYTES)), side="right")
        flags = np.zeros(len(counts), dtype=bool)
        flags[at] = True
        sub.fail(flags, f"a varint of {path}[] is too long")
    shifted = (body & 0x7F).astype(np.uint64) << (7 * place).astype(np.uint64)
    raw = np.bitwise_or.reduceat(shifted, first) if len(first) else np.zeros(0, np.uint64)
    values = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
    return pa.array(values.astype(np.int32) if narrow else values, type=pa.int32() if narrow else pa.int64())
