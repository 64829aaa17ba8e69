"""Checking that decoded string columns hold valid UTF-8, cheaply enough for every decode.

pyarrow's Parquet reader does not check UTF-8, so a row group damaged behind a matching CRC32C
(a writer bug, a collision) decodes to string arrays whose bytes are not UTF-8: they fail
`validate(full=True)` later, in SQL or in a client, far from the object that holds them
(found by tests/fuzz/test_fuzz_segment.py). `validate(full=True)` on every string column cost
~5-10% of a whole-segment decode (it checks string by string). Most strings are ASCII, which
is UTF-8: one numpy pass over each string array's bytes proves that; only arrays holding
non-ASCII bytes are validated string by string. Measured on 200,000 records (two headers
each, a declared string column; loaded 2-core box): ~3 ms on a ~250 ms decode when ASCII.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pyarrow as pa


def invalid_utf8_column(table: pa.Table) -> str | None:
    """The name of the first column of `table` holding a string that is not UTF-8, else None."""
    for field, column in zip(table.schema, table.columns, strict=True):
        if not _has_strings(field.type):
            continue
        for chunk in column.chunks:
            if any(not _valid(leaf) for leaf in _string_leaves(chunk)):
                return field.name
    return None


def _has_strings(kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _has_strings(kind.value_type)
    return any(_has_strings(kind.field(i).type) for i in range(kind.num_fields))


def _string_leaves(array: Any) -> Iterator[pa.Array[Any]]:
    # Any: the nested accessors (field, values, keys, items, dictionary) are per array class.
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        yield array
    elif pa.types.is_dictionary(kind):
        yield from _string_leaves(array.dictionary)
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            if _has_strings(kind.field(i).type):
                yield from _string_leaves(array.field(i))
    elif pa.types.is_map(kind):
        yield from _string_leaves(array.keys)
        yield from _string_leaves(array.items)
    elif kind.num_fields:  # list, large list, fixed-size list: every value, sliced or not
        yield from _string_leaves(array.values)


def _valid(array: pa.Array[Any]) -> bool:
    if not len(array):
        return True
    _, offsets_buffer, data = array.buffers()
    if data is None or offsets_buffer is None:
        return True
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(cast(Any, offsets_buffer), dtype=width)[array.offset : array.offset + len(array) + 1]
    low, high = int(offsets[0]), int(offsets[-1])
    if not 0 <= low <= high <= data.size:
        return False
    raw = np.frombuffer(cast(Any, data), dtype=np.uint8)[low:high]
    if not raw.size or raw.max() < 0x80:
        return True  # ASCII is UTF-8: one vectorised pass, the common case
    try:
        array.validate(full=True)  # string by string
    except pa.ArrowInvalid:
        return False
    return True
