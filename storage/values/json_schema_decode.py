"""JSON Schema topics' declared columns (issue 13): `CREATE TOPIC t WITH (format = 'json-schema',
subject = s)` takes its columns from the top-level properties of the subject's latest JSON Schema
(storage/schemas/json_schema_arrow.py has the mapping); nested objects and arrays map to struct and
list types there but have no SQL column type yet, so, like Avro's records, they are not declared
and stay in `_value`.

Decoding needs no writer schema: the payload after the Confluent header (magic byte + schema id)
is JSON, self-describing, so the whole batch's headers are cut off in one numpy gather (wire.py
`split`, which checks the framing anyway; pyarrow's binary_slice failed on produced batches'
columns, "Negative buffer resize") and the payloads read by the JSON topics' vectorised reader
(storage/values/json_decode.py) into the declared columns. A
property an older writer schema lacks is simply absent from its values and reads as null. The
schema ids were checked by produce (registered under the topic's subject), as for Avro. A value
whose property does not fit its column refuses the batch (JsonSchemaValueError naming the record
and the column)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidInputError, InvalidValueError
from streamhouse.storage.schemas.errors import SchemaValidationError, WireFormatError
from streamhouse.storage.schemas.json_schema_arrow import object_fields
from streamhouse.storage.schemas.wire import split
from streamhouse.storage.values.json_decode import check_values, decode_json_values
from streamhouse.storage.values.registry_format import RegistryFormat
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import sql_type

JSON_SCHEMA = "json-schema"


class JsonSchemaValueError(SchemaValidationError):
    """A produced value of a JSON Schema topic that is not framed JSON fitting the topic's
    columns; `index` is the record's position in its batch. Nothing of the batch was stored."""


def _declarable(arrow: pa.DataType) -> bool:
    return not (pa.types.is_struct(arrow) or pa.types.is_list(arrow))


def json_schema_columns(schema_text: str, subject: str) -> ValueSchema:
    try:
        fields = object_fields(schema_text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"subject {subject!r}: {exc}") from None
    columns = tuple(Column(f.name, sql_type(f.type)) for f in fields if _declarable(f.type))
    if not columns:
        raise InvalidInputError(f"subject {subject!r}: the schema has no property with a SQL column type")
    return ValueSchema(columns, None, JSON_SCHEMA, subject)


def decode_json_schema_values(values: pa.Array[Any], schema: ValueSchema, writers: Mapping[int, str]) -> pa.Table:
    """The declared columns (segment names) of a batch of framed JSON values: the framing checked
    for every value (and every id given in `writers`), the 5-byte headers cut off at once, the
    JSON read in one pass."""
    try:
        framed = split(values, source="produced batch")
    except WireFormatError as exc:
        raise JsonSchemaValueError(
            f"record {exc.index} of the batch: {str(exc).rsplit(' (', 1)[0]}", index=exc.index
        ) from None
    ids = framed.schema_ids
    unknown: Any = pc.and_(pc.is_valid(ids), pc.invert(pc.is_in(ids, pa.array(list(writers), pa.int32()))))
    if pc.any(unknown).as_py():
        i = int(pc.index(unknown, True).as_py())
        raise JsonSchemaValueError(f"record {i}: schema id {ids[i].as_py()} is not registered", index=i)
    payloads = framed.payloads  # the 5-byte headers already cut off, one gather (wire.py)
    try:
        table = check_values(payloads, schema)
    except InvalidValueError as exc:
        raise JsonSchemaValueError(str(exc), index=exc.index) from None
    if table is None:  # decoded in several runs (e.g. ISO and epoch timestamps mixed): all fit
        table = decode_json_values(payloads, schema).table
    return table.rename_columns(schema.segment_schema().names)


FORMAT = RegistryFormat(JSON_SCHEMA, "JSON", json_schema_columns, decode_json_schema_values)
