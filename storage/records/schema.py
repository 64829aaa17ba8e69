"""The record schema (docs/DESIGN.md §2) and building record batches from buffers.

A record batch is the unit everything moves in: produce requests, WAL entries, fetch
responses and segment row groups. Columns are built from joined buffers with numpy
offsets — never one Python object per record on a hot path.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError

HEADER_TYPE = pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.binary())])
HEADERS_TYPE = pa.list_(HEADER_TYPE)

RECORD_SCHEMA: pa.Schema = pa.schema(
    [  # type: ignore[arg-type]  # pyarrow-stubs reject a list of fields typed as list[Field[Any]]
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),  # epoch milliseconds
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADERS_TYPE),
    ]
)
RECORD_COLUMNS = tuple(RECORD_SCHEMA.names)

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Record:
    """One record as plain Python values (tests, debugging, protobuf conversion)."""

    value: bytes | None
    key: bytes | None = None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes | None], ...] = ()
    offset: int = -1


class RecordLike(Protocol):
    """Anything shaped like a record: our `Record` or a protobuf message with these fields."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


def binary_array(values: Sequence[bytes | None]) -> pa.Array[Any]:
    """A BinaryArray from Python bytes by joining buffers (None → null, b"" → empty).

    The joins and length scans run in C (`b"".join`, `map(len, …)`, `itertools.compress`),
    so there is no per-record Python bytecode.
    """
    n = len(values)
    if n == 0:
        return pa.array([], type=pa.binary())
    if None in values:
        valid = np.fromiter(map(operator.is_not, values, itertools.repeat(None)), dtype=np.bool_, count=n)
        present = list(itertools.compress(values, valid))
        lengths = np.zeros(n, dtype=np.int64)
        lengths[valid] = np.fromiter(map(len, cast(list[bytes], present)), dtype=np.int64, count=len(present))
        data = b"".join(cast(list[bytes], present))
        validity: pa.Buffer | None = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
        null_count = n - int(valid.sum())
    else:
        lengths = np.fromiter(map(len, cast(Sequence[bytes], values)), dtype=np.int64, count=n)
        data = b"".join(cast(Sequence[bytes], values))
        validity = None
        null_count = 0
    if len(data) >= 2**31:
        raise InvalidInputError("a batch may carry at most 2 GiB of keys or values; split it")
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.array(offsets).buffers()[1], pa.py_buffer(data)], null_count=null_count
    )


def headers_array(headers: Sequence[Headers | None] | None, n: int) -> pa.Array[Any]:
    if headers is None:
        return null_headers(n)
    if len(headers) != n:
        raise InvalidInputError(f"headers has {len(headers)} entries for {n} records")
    rows = [None if h is None else [{"key": k, "value": v} for k, v in h] for h in headers]
    return pa.array(rows, type=HEADERS_TYPE)


def null_headers(n: int) -> pa.Array[Any]:
    """All-null headers with an empty child: `pa.nulls` would allocate child offset buffers
    of n + 1 entries, which a sliced batch then carries into every IPC frame."""
    offsets = pa.array(np.zeros(n + 1, dtype=np.int32)).buffers()[1]
    validity = pa.py_buffer(bytes((n + 7) // 8))
    child = pa.array([], type=HEADER_TYPE)
    return pa.Array.from_buffers(HEADERS_TYPE, n, [validity, offsets], null_count=n, children=[child])


def offsets_array(base_offset: int, n: int) -> pa.Array[Any]:
    return pa.array(np.arange(base_offset, base_offset + n, dtype=np.int64), type=pa.int64())


def make_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int] | np.ndarray | int | None = None,
    headers: Sequence[Headers | None] | None = None,
    base_offset: int = 0,
) -> pa.RecordBatch:
    """Build a record batch. `timestamps` may be one int for all records (append time)."""
    n = len(values)
    if keys is not None and len(keys) != n:
        raise InvalidInputError(f"keys has {len(keys)} entries for {n} values")
    if timestamps is None or isinstance(timestamps, int):
        ts = np.full(n, 0 if timestamps is None else timestamps, dtype=np.int64)
    else:
        ts = np.asarray(timestamps, dtype=np.int64)
        if ts.shape != (n,):
            raise InvalidInputError(f"timestamps has {ts.size} entries for {n} values")
    return pa.RecordBatch.from_arrays(
        [
            offsets_array(base_offset, n),
            pa.array(ts, type=pa.int64()),
            pa.nulls(n, type=pa.binary()) if keys is None else binary_array(keys),
            binary_array(values),
            headers_array(headers, n),
        ],
        schema=RECORD_SCHEMA,
    )


def batch_from_records(records: Iterable[RecordLike]) -> pa.RecordBatch:
    """Turn plain records (our `Record`, protobuf messages) into one batch, once."""
    items = list(records)
    headers: list[Headers | None] | None = None
    if any(getattr(r, "headers", None) for r in items):
        headers = [_headers_of(r) for r in items]
    return make_batch(
        [r.value for r in items],
        keys=[r.key for r in items],
        timestamps=np.fromiter((r.timestamp for r in items), dtype=np.int64, count=len(items)),
        headers=headers,
    )


def _headers_of(record: RecordLike) -> Headers:
    raw = getattr(record, "headers", None) or ()
    return [(h[0], h[1]) if isinstance(h, tuple) else (h.key, h.value) for h in raw]


def assign_offsets(batch: pa.RecordBatch, base_offset: int) -> pa.RecordBatch:
    """The leader's offsets: base + arange, replacing whatever the producer sent."""
    return batch.set_column(0, RECORD_SCHEMA.field(0), offsets_array(base_offset, batch.num_rows))


def stamp_missing_timestamps(batch: pa.RecordBatch, now_ms: int) -> pa.RecordBatch:
    """Replace timestamps ≤ 0 (the producer gave none) with append time, vectorised."""
    ts = batch.column(1).to_numpy()
    if not (ts <= 0).any():
        return batch
    fixed = np.where(ts <= 0, np.int64(now_ms), ts)
    return batch.set_column(1, RECORD_SCHEMA.field(1), pa.array(fixed, type=pa.int64()))


def batch_to_records(batch: pa.RecordBatch | pa.Table) -> list[Record]:
    """Plain records for tests and debugging: not for hot paths."""
    cols = batch.to_pydict()
    out: list[Record] = []
    for off, ts, key, value, hdrs in zip(
        cols["offset"], cols["timestamp"], cols["key"], cols["value"], cols["headers"], strict=True
    ):
        hs = tuple((h["key"], h["value"]) for h in hdrs) if hdrs else ()
        out.append(Record(value=value, key=key, timestamp=ts, headers=hs, offset=off))
    return out
