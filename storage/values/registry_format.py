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

from streamhouse.storage.schemas.errors import SchemaValidationError
from streamhouse.storage.schemas.wire import Array, split, valid_mask
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


def per_schema_id(
    values: pa.Array[Any],
    schema: ValueSchema,
    writers: Mapping[int, str],
    decode_one: Callable[[pa.Array[Any], str, Array], pa.StructArray],
) -> pa.Table:
    """Declared columns of framed values decoded once per schema id: `decode_one(payloads,
    writer text, rows)` gives a struct per payload (`rows`: their indexes in the batch, for
    errors); the pieces are lined up by column name and put back in the batch's order."""
    framed = split(values, source="produced batch")
    ids = framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)
    present = valid_mask(framed.schema_ids)
    n = len(values)
    parts: list[tuple[Array, pa.Table]] = []
    for schema_id in (int(i) for i in np.unique(ids[present])):  # one decode per distinct id
        rows = np.flatnonzero(present & (ids == schema_id))
        text = writers.get(schema_id)
        if text is None:
            first = int(rows[0])
            raise SchemaValidationError(f"record {first}: schema id {schema_id} is not registered", index=first)
        parts.append((rows, declared(decode_one(framed.payloads.take(rows), text, rows), schema)))
    segment = schema.segment_schema()
    if not parts:
        return pa.Table.from_arrays([pa.nulls(n, f.type) for f in segment], schema=segment)
    order = np.concatenate([rows for rows, _ in parts])
    position = np.full(n, -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    stacked = pa.concat_tables([t for _, t in parts])
    return stacked.take(pa.array(position, pa.int64(), mask=position < 0)).combine_chunks()
