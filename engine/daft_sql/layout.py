"""A segment file's physical columns → the topic's SQL columns, for every segment format a file
may be in. The one place the Daft path knows physical names (the agent's own reader has its own
in storage/segment/decode.py and sql/query/catalog.py).

- v1 (every segment written so far; footer `streamhouse.format_version` 1, or 2 for segments
  with compaction gaps): record columns `offset`, `timestamp` (BIGINT epoch ms), `key`, `value`,
  `headers`; declared columns as `v.<name>`.
- v2 (issue 16 part 2: plain names for other engines): `_offset`, `_timestamp` (a UTC
  millisecond timestamp), `_key`, `_value`, declared columns under their own names.

The layout is told by the file's column names, not by the footer's version number: version 2 of
the footer already means "v1 names with gaps", and whatever number the new format takes, a file
with an `offset` column is read the v1 way and one with `_offset` the v2 way. `_partition` is
never stored: it is a constant per file, added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import pyarrow as pa

from streamhouse.storage.errors import CorruptDataError

__all__ = ["Layout", "PhysicalColumns", "layout_of"]


class Layout(Enum):
    V1 = "v1"  # offset, timestamp (ms BIGINT), key, value, v.<declared>
    V2 = "v2"  # _offset, _timestamp (timestamp ms UTC), _key, _value, <declared>


_V1_SYSTEM = {"_offset": "offset", "_timestamp": "timestamp", "_key": "key", "_value": "value"}


@dataclass(frozen=True)
class PhysicalColumns:
    """How one file's columns become SQL columns: `source[sql_name]` is the physical name, or
    None where the file lacks the column (a declared column added later: read as nulls)."""

    layout: Layout
    source: tuple[tuple[str, str | None], ...]

    def physical(self, sql_name: str) -> str | None:
        return dict(self.source)[sql_name]


def layout_of(physical: pa.Schema, where: str) -> Layout:
    names = set(physical.names)
    if "offset" in names and "timestamp" in names:
        return Layout.V1
    if "_offset" in names and "_timestamp" in names:
        return Layout.V2
    raise CorruptDataError(
        "a segment with neither format v1 (offset, timestamp) nor v2 (_offset, _timestamp) columns", source=where
    )


def physical_columns(physical: pa.Schema, sql_schema: pa.Schema, where: str) -> PhysicalColumns:
    """The physical source of each SQL column of `sql_schema` (except `_partition`) in a file."""
    layout = layout_of(physical, where)
    present = set(physical.names)
    source: list[tuple[str, str | None]] = []
    for name in sql_schema.names:
        if name == "_partition":
            continue
        if layout is Layout.V1:
            stored = _V1_SYSTEM.get(name, "v." + name)
        else:
            stored = name
        source.append((name, stored if stored in present else None))
    return PhysicalColumns(layout, tuple(source))


def sql_expressions(columns: PhysicalColumns, sql_schema: pa.Schema, partition: int, wanted: list[str]) -> list[Any]:
    """Daft expressions projecting a file read with `columns` onto the SQL columns `wanted`,
    each cast to the SQL type so files of every layout and age union (daft.Expression list)."""
    import daft

    result: list[Any] = []
    for name in wanted:
        target = daft.DataType.from_arrow_type(sql_schema.field(name).type)
        if name == "_partition":
            result.append(daft.lit(partition).cast(target).alias(name))
            continue
        stored = columns.physical(name)
        if stored is None:
            result.append(daft.lit(None).cast(target).alias(name))
            continue
        # v1's BIGINT epoch ms casts to the timestamp as is; v2's timestamp keeps its instant.
        result.append(daft.col(stored).cast(target).alias(name))
    return result
