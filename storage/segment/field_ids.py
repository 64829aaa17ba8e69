"""Parquet field ids and physical column names of segment layout 2 (issue 16); pure, IO-free.

Segments of layout 2 (footer format version 3, footer.py) are plain Parquet that other
engines (Iceberg, DuckDB, Daft, Spark) read natively: every column, nested ones included, carries
a Parquet field id (Arrow field metadata `PARQUET:field_id`), physical names are plain (no dotted
`v.x`), and the event time `_timestamp` is a UTC millisecond timestamp. This module is the ONE
place that maps a topic's columns to those names, types and ids; the segment writer (format.py)
and the Iceberg publisher both use it, so a table's schema and its data files always agree.

Physical columns, in file order (`_` is the system columns' prefix: declared names never start
with it, storage/values/schema.py, so the two cannot collide):

  id  column        type                                   from the record column
   1  _partition    int32 NOT NULL (one value per file)    (the segment's partition)
   2  _offset       int64 NOT NULL                         offset
   3  _timestamp    timestamp[ms, tz=UTC] NOT NULL         timestamp (epoch ms)
   4  _key          binary                                 key
   5  _value        binary                                 value
   6  _headers      list<element: struct<key, value>>      headers
   7    element (8 key: string NOT NULL, 9 value: binary)
  1000+i  <name>    the declared type                      v.<name>, declared column i (0-based)

`_partition` is stored (a constant, dictionary-encoded: a few bytes per row group) so that an
identity partition spec on it works for every reader and for pyiceberg's `add_files`, which
infers a data file's partition value from that column's min/max statistics.

How ids stay stable under schema evolution. Evolution only appends (storage/values/avro_evolve.py):
top-level columns are added at the end and ROW columns (also inside ARRAY/MAP) gain children
at the end; nothing is dropped, renamed or reordered. So:
- system columns have the fixed ids above (1..9; 1..999 reserved for them);
- declared top-level column i (declaration order) has id DECLARED_BASE + i: appending a
  column never changes an older column's id;
- a nested field (ROW child, ARRAY element, MAP key/value) has an id derived from its name
  path alone (e.g. `["bid", "items", "element", "price"]`): a hash into [NESTED_BASE, NESTED_END), so adding a
  child anywhere changes no other field's id. Iceberg does not require ids to be dense, only
  unique; NESTED_END (2^30) leaves room below int32's end for ids other tools assign later.
  Two paths hashing alike (odds ~ n²/2^31 for n nested fields) are resolved by taking the next
  free id, in pre-order, so the schema stays valid; only then could a later-added field move
  an existing field's id, and `topic_arrow_schema` is what both sides compute, so they agree.

API (all return new Arrow schemas; nothing here reads or writes files):
- `topic_arrow_schema(value_schema)`: the physical Arrow schema, with field ids on every
  field, of the newest segments of a topic with that declared schema (None: a raw-bytes topic,
  system columns only). Build the Iceberg schema from it, e.g.
  `pyiceberg.io.pyarrow.pyarrow_to_schema(topic_arrow_schema(vs))`; a segment written before
  a column was added has a prefix of these columns (same ids): readers fill the rest with nulls.
- `physical_schema(logical)`: the same for a segment's logical schema (RECORD_SCHEMA's columns
  then `v.<name>` typed columns, as encode_segment is given and decode_segment returns).
- `physical_name(logical_name)`: one column's Parquet name (`offset` → `_offset`, `v.x` → `x`).
- `physical_table(table, partition)`: a segment's records (logical columns) as layout 2 stores
  them: `_partition` prepended, renamed, retyped (zero-copy casts), ids on the schema.
- `field_id(field)`: the id stored on an Arrow field (None without one).

pyiceberg's `create_table` always assigns fresh ids (new_table_metadata → assign_fresh_schema_ids),
which would not match the files'; the table keeps ours when its schema is set afterwards by an
`AddSchemaUpdate(schema=Schema(*fields))` + `SetCurrentSchemaUpdate(schema_id=-1)` transaction
(`_partition` is fresh id 1 as well, so a partition spec made at creation stays valid).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import HEADERS_TYPE, RECORD_SCHEMA
from streamhouse.storage.values.schema import COLUMN_PREFIX, ValueSchema

__all__ = [
    "DECLARED_BASE",
    "FIELD_ID_KEY",
    "NESTED_BASE",
    "NESTED_END",
    "PARTITION_COLUMN",
    "SYSTEM_IDS",
    "TIMESTAMP_TYPE",
    "field_id",
    "physical_name",
    "physical_schema",
    "physical_table",
    "topic_arrow_schema",
]

FIELD_ID_KEY = b"PARQUET:field_id"  # what pyarrow's Parquet writer and reader map to field ids
PARTITION_COLUMN = "_partition"
TIMESTAMP_TYPE: pa.DataType = pa.timestamp("ms", tz="UTC")
SYSTEM_PREFIX = "_"
DECLARED_BASE = 1000
NESTED_BASE = 1 << 24
NESTED_END = 1 << 30

# Fixed ids of the system columns and of the headers' nested fields (module docstring).
SYSTEM_IDS: dict[str, int] = {
    PARTITION_COLUMN: 1,
    "_offset": 2,
    "_timestamp": 3,
    "_key": 4,
    "_value": 5,
    "_headers": 6,
    "_headers.element": 7,
    "_headers.element.key": 8,
    "_headers.element.value": 9,
}
_RECORD_NAMES = tuple(RECORD_SCHEMA.names)


def physical_name(name: str) -> str:
    """The Parquet column name of a segment column: record columns get the system prefix
    (`offset` → `_offset`), declared ones lose theirs (`v.price` → `price`)."""
    if name in _RECORD_NAMES:
        return SYSTEM_PREFIX + name
    return str(name).removeprefix(COLUMN_PREFIX)


def physical_table(table: pa.Table, partition: int) -> pa.Table:
    """`table` (logical columns) as layout 2 writes it; the casts only relabel (int64 ms →
    timestamp[ms, UTC], list and map field names), so no column data is copied."""
    if not 0 <= partition < 1 << 31:
        raise InvalidInputError(f"partition {partition} does not fit the int32 _partition column")
    schema = physical_schema(table.schema)
    parts: Any = pa.array(np.full(table.num_rows, partition, dtype=np.int32))
    columns = [parts, *table.columns]
    return pa.Table.from_arrays(
        [c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


def field_id(field: pa.Field[Any]) -> int | None:
    raw = (field.metadata or {}).get(FIELD_ID_KEY)
    return None if raw is None else int(raw)


def topic_arrow_schema(value_schema: ValueSchema | None) -> pa.Schema:
    """The physical Arrow schema (field ids on every field) of a topic's newest segments."""
    logical = RECORD_SCHEMA if value_schema is None else _concat(RECORD_SCHEMA, value_schema.segment_schema())
    return physical_schema(logical)


def physical_schema(logical: pa.Schema) -> pa.Schema:
    """The layout-2 schema of a segment whose records have `logical` columns (RECORD_SCHEMA's,
    then typed columns): `_partition` first, plain names, `_timestamp` as UTC milliseconds,
    field ids everywhere. InvalidInputError if two columns would get one physical name."""
    if logical.names[: len(_RECORD_NAMES)] != list(_RECORD_NAMES):
        raise InvalidInputError(f"segment columns must start with the record schema, got {logical.names}")
    fields: list[pa.Field[Any]] = [_with_id(pa.field(PARTITION_COLUMN, pa.int32(), nullable=False), 1)]
    for name in _RECORD_NAMES:
        source = logical.field(name)
        column = physical_name(name)
        if name == "timestamp":
            source = source.with_type(TIMESTAMP_TYPE)
        if name == "headers":
            fields.append(_headers_field(source.nullable))
        else:
            fields.append(_with_id(source.with_name(column).remove_metadata(), SYSTEM_IDS[column]))
    taken: set[int] = set(SYSTEM_IDS.values())
    for i, source in enumerate(list(logical)[len(_RECORD_NAMES) :]):
        source = source.remove_metadata()
        column = physical_name(source.name)
        if not column or column.startswith(SYSTEM_PREFIX):
            raise InvalidInputError(f"column {source.name!r}: names starting with _ are the system columns'")
        taken.add(DECLARED_BASE + i)
        fields.append(_with_id(source.with_name(column), DECLARED_BASE + i))
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"segment columns {logical.names} map to duplicate Parquet names {names}")
    # Nested ids second, so a top-level id is never taken by a nested hash.
    declared = [_nested(f, (f.name,), taken) for f in fields[len(_RECORD_NAMES) + 1 :]]
    return pa.schema([*fields[: len(_RECORD_NAMES) + 1], *declared])


def _concat(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    return pa.schema([*a, *b])


def _with_id(field: pa.Field[Any], fid: int) -> pa.Field[Any]:
    return field.with_metadata({FIELD_ID_KEY: str(fid).encode()})


def _headers_field(nullable: bool) -> pa.Field[Any]:
    header = HEADERS_TYPE.value_type
    key, value = header.field("key"), header.field("value")
    struct = pa.struct(
        [
            _with_id(key, SYSTEM_IDS["_headers.element.key"]),
            _with_id(value, SYSTEM_IDS["_headers.element.value"]),
        ]
    )
    element = _with_id(pa.field("element", struct), SYSTEM_IDS["_headers.element"])
    return _with_id(pa.field("_headers", pa.list_(element), nullable=nullable), SYSTEM_IDS["_headers"])


def _nested(field: pa.Field[Any], path: tuple[str, ...], taken: set[int]) -> pa.Field[Any]:
    """`field` with ids on every field nested in its type (its own id already set)."""
    return field.with_type(_nested_type(field.type, path, taken))


def _child(field: pa.Field[Any], path: tuple[str, ...], taken: set[int]) -> pa.Field[Any]:
    fid = _hashed_id(path, taken)
    return _nested(_with_id(field, fid), path, taken)


def _nested_type(t: pa.DataType, path: tuple[str, ...], taken: set[int]) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct([_child(f, (*path, f.name), taken) for f in _struct_fields(t)])
    if pa.types.is_map(t):
        key = _child(t.key_field.with_name("key"), (*path, "key"), taken)
        item = _child(t.item_field.with_name("value"), (*path, "value"), taken)
        sorted_keys: Any = t.keys_sorted
        return cast(pa.DataType, pa.map_(key, item, sorted_keys))
    if pa.types.is_large_list(t):
        return pa.large_list(_child(t.value_field.with_name("element"), (*path, "element"), taken))
    if pa.types.is_list(t):
        return pa.list_(_child(t.value_field.with_name("element"), (*path, "element"), taken))
    if pa.types.is_fixed_size_list(t):
        size: int = t.list_size
        return pa.list_(_child(t.value_field.with_name("element"), (*path, "element"), taken), size)
    return t


def _struct_fields(t: pa.StructType) -> Iterator[pa.Field[Any]]:
    return (t.field(i) for i in range(t.num_fields))


def _hashed_id(path: tuple[str, ...], taken: set[int]) -> int:
    """A stable id in [NESTED_BASE, NESTED_END) from the field's name path (blake2b of its JSON
    list, so no field name can fake a path: the same on every agent and Python version, unlike
    hash()); the next free one on a collision."""
    span = NESTED_END - NESTED_BASE
    text = json.dumps(path, ensure_ascii=False, separators=(",", ":"))
    digest = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    fid = NESTED_BASE + digest % span
    while fid in taken:
        fid = NESTED_BASE + (fid - NESTED_BASE + 1) % span
    taken.add(fid)
    return fid
