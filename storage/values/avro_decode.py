"""Avro topics' declared columns (issue 13): a topic created with `format = 'avro'` takes its
columns from its subject's latest Avro schema (record fields → SQL columns through the one type
map, storage/values/types.py), and its values are decoded into those columns once per produced
batch, each schema id's rows with that id's writer schema (storage/schemas/avro_arrow.py), so
the segment writer stores typed columns exactly as it does for JSON topics (docs/DESIGN.md §7).
IO-free: the caller (engine/registry/produce_check.py) looks the writer schemas up.

Fields a writer schema lacks read as null (rows written before a field was added); fields the
declared columns lack are dropped (the raw value keeps them), except that a newer version of the
subject first grows the columns by its new fields (schema evolution, avro_evolve.py). Fields whose Avro type has no SQL
column type here (bytes, fixed, nested records) are not declared: they stay in `_value`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.schemas.avro_arrow import decode, decode_framed
from streamhouse.storage.schemas.errors import (
    AvroValueError,
    SchemaNotFoundError,
    UnsupportedAvroSchemaError,
    WireFormatError,
)
from streamhouse.storage.schemas.wire import split, valid_mask
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import sql_type

AVRO = "avro"
log = logging.getLogger(__name__)


def _declarable(arrow: pa.DataType) -> bool:
    return not (pa.types.is_binary(arrow) or pa.types.is_fixed_size_binary(arrow) or pa.types.is_struct(arrow))


def avro_columns(schema_text: str, subject: str) -> ValueSchema:
    """The declared columns of an Avro record schema: one per field with a SQL column type, the
    types derived from exactly what the decoder produces (an empty batch decoded), so the
    declared and the decoded types can never disagree."""
    empty = decode(pa.array([], pa.binary()), schema_text, source=f"subject {subject!r}")
    if not isinstance(empty, pa.StructArray):
        raise InvalidInputError(f"subject {subject!r}: an Avro topic needs a record schema, not {empty.type}")
    columns = tuple(Column(f.name, sql_type(f.type)) for f in empty.type if _declarable(f.type))
    if not columns:
        raise InvalidInputError(f"subject {subject!r}: the record has no field with a SQL column type")
    return ValueSchema(columns, None, AVRO, subject)


def decode_avro_values(values: pa.Array[Any], schema: ValueSchema, writer_schemas: Mapping[int, str]) -> pa.Table:
    """The declared columns (segment names) of a batch of framed Avro values; `writer_schemas`
    maps every schema id in the batch to its text. AvroValueError names the first bad record."""
    try:
        struct = decode_framed(values, writer_schemas, source="produced batch")
    except WireFormatError as exc:
        raise AvroValueError(
            f"record {exc.index} of the batch: {str(exc).rsplit(' (', 1)[0]}", index=exc.index
        ) from None
    arrays: list[pa.Array[Any]] = []
    valid = struct.is_valid() if struct.null_count else None
    for column in schema.columns:
        index = struct.type.get_field_index(column.name)
        target: Any = column.arrow_type
        if index < 0:  # a field added after these rows were written: null
            arrays.append(pa.nulls(len(values), target))
            continue
        child = struct.field(index)  # ignores the struct's validity: tombstones are masked here
        if valid is not None:
            child = pc.if_else(valid, child, pa.scalar(None, child.type))
        arrays.append(child.cast(target, safe=False) if child.type != target else child)
    return pa.Table.from_arrays(arrays, schema=schema.segment_schema())


async def decode_stored(
    metadata: MetadataStore, batches: Sequence[pa.RecordBatch], schema: ValueSchema
) -> list[pa.Table]:
    """The declared columns of buffered batches that produce did not leave decoded (replayed from
    the WAL after a restart): the writer schemas looked up by id, then the same decode. These
    values passed the produce-time decode, so this fails only if the registry lost a schema; then
    the columns are null (the values themselves are kept in `_value`) and it is logged, rather than
    blocking the partition's flush forever."""
    ids: set[int] = set()
    for batch in batches:
        framed = split(batch.column("value"), source="buffered batch")
        present = valid_mask(framed.schema_ids)
        ids.update(int(i) for i in set(framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)[present]))
    writers: dict[int, str] = {}
    for schema_id in sorted(ids):
        stored = await metadata.registry_schema(schema_id)
        if stored is not None:
            writers[schema_id] = stored.schema.text
    out: list[pa.Table] = []
    for batch in batches:
        try:
            out.append(await run_blocking(decode_avro_values, batch.column("value"), schema, writers))
        except (WireFormatError, UnsupportedAvroSchemaError, AvroValueError, SchemaNotFoundError) as exc:
            log.warning("Avro topic columns of %d buffered records written as null: %s", batch.num_rows, exc)
            out.append(schema.segment_schema().empty_table() if batch.num_rows == 0 else _nulls(batch, schema))
    return out


def _nulls(batch: pa.RecordBatch, schema: ValueSchema) -> pa.Table:
    segment = schema.segment_schema()
    return pa.Table.from_arrays([pa.nulls(batch.num_rows, f.type) for f in segment], schema=segment)
