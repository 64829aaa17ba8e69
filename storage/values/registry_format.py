"""The value formats whose schemas live in the schema registry (issue 13): Avro, Protobuf and JSON
Schema topics, behind one small interface so produce (engine/registry/produce_check.py), schema
evolution (avro_evolve.py `grown`) and the segment writer (storage/partition/writer.py) treat them
alike. Each format says which registry schema type it takes, which columns a writer schema gives
(`columns`) and how a batch of framed values becomes the topic's declared columns (`decode`, each
schema id's rows with that id's writer schema, rows a writer schema lacks a column for read as
null). This module is the interface and what the formats share; registry_formats.py is the table
of them. IO-free."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.schemas.wire import Array
from streamhouse.storage.values.schema import ValueSchema

Decode = Callable[["pa.Array[Any]", ValueSchema, Mapping[int, str]], pa.Table]


@dataclass(frozen=True)
class RegistryFormat:
    """`name`: ValueSchema.format (what CREATE TOPIC … WITH (format = …) says); `schema_type`:
    the registry's schemaType; `columns(text, subject)`: the declared columns a schema gives
    (InvalidInputError if none); `decode(values, schema, writers)`: the declared columns (segment
    names) of a batch, `writers` mapping every id in it to its text; a value that does not decode
    raises a SchemaValidationError naming the record."""

    name: str
    schema_type: str
    columns: Callable[[str, str], ValueSchema]
    decode: Decode


def declared(struct: pa.StructArray, schema: ValueSchema) -> pa.Table:
    """The declared columns out of one struct row per value (fields missing from the struct, and
    null rows, read as null; narrower types widen to the column's)."""
    arrays: list[pa.Array[Any]] = []
    valid = struct.is_valid() if struct.null_count else None
    for column in schema.columns:
        index = struct.type.get_field_index(column.name)
        target: Any = column.arrow_type
        if index < 0:  # a field added after these rows were written: null
            arrays.append(pa.nulls(len(struct), target))
            continue
        child = struct.field(index)  # ignores the struct's validity: tombstones are masked here
        if valid is not None:
            child = pc.if_else(valid, child, pa.scalar(None, child.type))
        arrays.append(child.cast(target, safe=False) if child.type != target else child)
    return pa.Table.from_arrays(arrays, schema=schema.segment_schema())


def lined_up(parts: list[tuple[Array, pa.StructArray]], n: int, schema: ValueSchema) -> pa.Table:
    """The declared columns of `n` values from per-schema-id decodes: `parts` pairs the rows of
    one id (indexes into the batch) with their struct rows; each part's columns are picked by
    name (`declared`) and put back in the batch's order; rows in no part (tombstones) are null."""
    segment = schema.segment_schema()
    if not parts:
        return pa.Table.from_arrays([pa.nulls(n, f.type) for f in segment], schema=segment)
    tables = [declared(struct, schema) for _, struct in parts]
    if len(parts) == 1 and len(parts[0][0]) == n:
        return tables[0]  # one id, no tombstones: already in order
    order = np.concatenate([rows for rows, _ in parts])
    position = np.full(n, -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    stacked = pa.concat_tables(tables)
    return stacked.take(pa.array(position, pa.int64(), mask=position < 0)).combine_chunks()
