"""Avro topics' declared columns (issue 13): a topic created with `format = 'avro'` takes its
columns from its subject's latest Avro schema (record fields → SQL columns through the one type
map, storage/values/types.py), and its values are decoded into those columns once per produced
batch, each schema id's rows with that id's writer schema (storage/schemas/avro_arrow.py), so
the segment writer stores typed columns exactly as it does for JSON topics (docs/DESIGN.md §7).
IO-free: the caller (engine/registry/produce_check.py) looks the writer schemas up.

Fields a writer schema lacks read as null (rows written before a field was added); fields the
declared columns lack are dropped (the raw value keeps them), except that a newer version of the
subject first grows the columns by its new fields (schema evolution, avro_evolve.py). Records
are ROW columns, arrays ARRAY<T>, maps MAP<STRING, T>, unions of several types a ROW with one field
per branch (storage/schemas/avro_collections.py), bytes and fixed BYTES, at any nesting; a field
whose Avro type has no SQL column type is not declared: it stays in `_value`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.avro_arrow import decode, decode_framed
from streamhouse.storage.schemas.errors import AvroValueError, WireFormatError
from streamhouse.storage.values.registry_format import RegistryFormat, declared
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.time_range import check_time_range
from streamhouse.storage.values.types import sql_type

AVRO = "avro"


def _declarable(arrow: pa.DataType) -> bool:
    # Records are ROW columns, bytes and fixed BYTES (a fixed's width is not kept: BYTES holds
    # any length); a type with no SQL twin would only be JSON text, so it stays in `_value`.
    return sql_type(arrow) != "STRING" or pa.types.is_string(arrow)


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
    table = declared(struct, schema)
    # Serializers take any long; Python, pandas and SQL clients read years 1-9999 only.
    check_time_range(table, [c.name for c in schema.columns])
    return table


FORMAT = RegistryFormat(AVRO, "AVRO", avro_columns, decode_avro_values)
