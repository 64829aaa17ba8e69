"""The range every stored TIMESTAMP and DATE must stay in: years 1 to 9999.

Arrow's timestamp[ms] and date32 hold far more (±292 million years), and Avro and Protobuf
serializers accept any long (an Avro timestamp-millis of 2**62, a google.protobuf.Timestamp
with seconds = 10**15): such a value stores fine and then breaks every read of its column in
Python, pandas and SQL clients (datetime stops at 9999-12-31; found by
tests/fuzz/test_fuzz_registry.py). JSON topics refuse them at produce (json_decode.py's
MIN/MAX_EPOCH_MS); `check_time_range` gives Avro and Protobuf topics the same refusal, over
whole columns (numpy/Arrow min-max, nested values too), never a Python loop per record."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidValueError
from streamhouse.storage.values.json_decode import MAX_EPOCH_MS, MIN_EPOCH_MS

_MS_PER_DAY = 86_400_000
# date32: days since 1970-01-01 for 0001-01-01 and 9999-12-31.
MIN_EPOCH_DAYS = MIN_EPOCH_MS // _MS_PER_DAY
MAX_EPOCH_DAYS = MAX_EPOCH_MS // _MS_PER_DAY
_PER_MS = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}


def check_time_range(table: pa.Table, names: list[str] | None = None) -> None:
    """Raise InvalidValueError naming the first record (row of `table`, in batch order), its
    column (`names[i]` for column i, default the table's names) and the value when a TIMESTAMP
    or DATE anywhere in `table` (also inside ROW, ARRAY and MAP values) is outside years 1-9999."""
    labels = names if names is not None else table.column_names
    for label, column in zip(labels, table.columns, strict=True):
        if not _has_times(column.type):
            continue
        base = 0
        for chunk in column.chunks:
            for path, leaf, row_of in _time_leaves(chunk, "", _same):
                _check_leaf(label, path, leaf, row_of, base)
            base += len(chunk)


def _same(index: int) -> int:
    return index


def _has_times(kind: pa.DataType) -> bool:
    if pa.types.is_timestamp(kind) or pa.types.is_date32(kind):
        return True
    return any(_has_times(kind.field(i).type) for i in range(kind.num_fields))


RowOf = Callable[[int], int]


def _time_leaves(array: Any, path: str, row_of: RowOf) -> Iterator[tuple[str, pa.Array[Any], RowOf]]:
    """Every TIMESTAMP/DATE array inside `array` with its path and how to find the top-level
    row of its value i (worked out only for a refusal: the success path stays vectorised).
    `array` is Any: the nested accessors (field, values, keys, items) are per array class."""
    kind = array.type
    if pa.types.is_timestamp(kind) or pa.types.is_date32(kind):
        yield path, array, row_of
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            child = kind.field(i)
            if _has_times(child.type):
                yield from _time_leaves(array.field(i), f"{path}.{child.name}", row_of)
    elif kind.num_fields:  # list, large list, map (its entries struct), fixed-size list
        # The values of list row i are child values [offsets[i], offsets[i + 1]).
        if hasattr(array, "offsets"):
            offsets = array.offsets.to_numpy(zero_copy_only=False)
        else:  # fixed-size: consecutive runs of list_size
            offsets = (np.arange(len(array) + 1) + array.offset) * kind.list_size
        first, last = int(offsets[0]), int(offsets[-1])

        def owner(index: int) -> int:
            return row_of(int(np.searchsorted(offsets, first + index, side="right")) - 1)

        if pa.types.is_map(kind):
            yield from _time_leaves(array.keys.slice(first, last - first), f"{path}.key", owner)
            yield from _time_leaves(array.items.slice(first, last - first), f"{path}.value", owner)
        else:
            yield from _time_leaves(array.values.slice(first, last - first), f"{path}.element", owner)


def _check_leaf(column: str, path: str, leaf: pa.Array[Any], row_of: RowOf, base: int) -> None:
    raw: Any
    if pa.types.is_date32(leaf.type):
        low, high, unit = MIN_EPOCH_DAYS, MAX_EPOCH_DAYS, "days"
        raw = leaf.cast(pa.int32())
    else:
        per_ms = _PER_MS[leaf.type.unit]
        low, high, unit = int(MIN_EPOCH_MS * per_ms), int(MAX_EPOCH_MS * per_ms), leaf.type.unit
        raw = leaf.cast(pa.int64())
    least, most = pc.min_max(raw).values()
    if not least.is_valid or (least.as_py() >= low and most.as_py() <= high):
        return  # the success path: one vectorised min/max per leaf
    values = raw.to_numpy(zero_copy_only=False)
    bad = (values < low) | (values > high)
    if raw.null_count:
        bad &= np.asarray(raw.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    at = int(np.argmax(bad))
    row = base + row_of(at)
    inner = f"at {path.lstrip('.')}: " if path else ""
    raise InvalidValueError(
        row,
        column,
        f"{inner}{int(values[at])} ({unit} since 1970-01-01) is outside years 1-9999 ({low} to {high});"
        " Python, pandas and SQL clients could not read it",
    )
