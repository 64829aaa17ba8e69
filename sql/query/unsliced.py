"""A workaround for one DataFusion panic, shared by every path that hands it Arrow batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def unsliced(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with every column holding a sliced ROW-in-ROW copied to offset 0. DataFusion's
    Arrow (arrow-rs 59) panics importing a struct array with a nonzero offset whose child is a
    struct ("assertion failed: end <= self.len()"), and `to_batches` above, scans and buffered
    reads all hand it slices. One vectorised take per such column; other columns are untouched."""
    columns = list(batch.columns)
    copied = False
    for i, column in enumerate(columns):
        if _sliced_struct_of_struct(column):
            every: Any = pa.array(np.arange(len(column), dtype=np.int64))
            columns[i] = pc.take(column, every)
            copied = True
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema) if copied else batch


def _sliced_struct_of_struct(array: Any) -> bool:  # a pa.Array (stubs lack .field/.values)
    kind = array.type
    if pa.types.is_struct(kind):
        if array.offset and any(_holds_struct(f.type) for f in kind):
            return True
        return any(_sliced_struct_of_struct(array.field(j)) for j in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        return _sliced_struct_of_struct(array.values)
    return False


def _holds_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _holds_struct(kind.value_type)
    if pa.types.is_map(kind):
        return _holds_struct(kind.key_type) or _holds_struct(kind.item_type)
    return False
