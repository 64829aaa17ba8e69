"""JSON Schema topics' declared columns (issue 13): `CREATE TOPIC t WITH (format = 'json-schema',
subject = s)` takes its columns from the top-level properties of the subject's latest JSON Schema
(storage/schemas/json_schema_arrow.py has the mapping): nested objects are ROW columns, arrays
ARRAY, and objects with `additionalProperties: {schema}` and no `properties` MAP<STRING, V>,
read from a plain JSON object (storage/values/json_composite.py).

Decoding needs no writer schema: the payload after the Confluent header (magic byte + schema id)
is JSON, self-describing, so the framing is checked in place (wire.py `headers`), the 5-byte
headers are overwritten with spaces in one copy of the column's bytes (JSON ignores whitespace;
cheaper than cutting them out, and pyarrow's binary_slice failed on produced batches' columns with
"Negative buffer resize"), and the values read by the JSON topics' vectorised reader
(storage/values/json_decode.py) into the declared columns. A
property an older writer schema lacks is simply absent from its values and reads as null. The
schema ids were checked by produce (registered under the topic's subject), as for Avro. A value
whose property does not fit its column refuses the batch (JsonSchemaValueError naming the record
and the column)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError, InvalidValueError
from streamhouse.storage.schemas.errors import SchemaValidationError, WireFormatError
from streamhouse.storage.schemas.json_schema_arrow import object_fields
from streamhouse.storage.schemas.wire import HEADER_BYTES, headers, numpy_buffer
from streamhouse.storage.values.json_decode import check_values, decode_json_values
from streamhouse.storage.values.registry_format import RegistryFormat
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import sql_type

JSON_SCHEMA = "json-schema"


class JsonSchemaValueError(SchemaValidationError):
    """A produced value of a JSON Schema topic that is not framed JSON fitting the topic's
    columns; `index` is the record's position in its batch. Nothing of the batch was stored."""


def _declarable(arrow: pa.DataType) -> bool:
    # Nested messages/objects are ROW, repeated/arrays ARRAY, bytes BYTES (storage/values/types.py).
    return sql_type(arrow) != "STRING" or pa.types.is_string(arrow)


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
    for every value (and every id given in `writers`), the 5-byte headers blanked to spaces in
    one copy of the column's bytes (JSON ignores whitespace, so offsets stay and nothing is
    cut out), the JSON read in one pass."""
    try:
        h = headers(values, source="produced batch")
    except WireFormatError as exc:
        reason = str(exc).rsplit(" (", 1)[0]
        raise JsonSchemaValueError(f"record {exc.index} of the batch: {reason}", index=exc.index) from None
    unknown = h.valid & ~np.isin(h.ids, np.fromiter(writers, dtype=np.uint32, count=len(writers)))
    if unknown.any():
        i = int(np.argmax(unknown))
        raise JsonSchemaValueError(f"record {i}: schema id {int(h.ids[i])} is not registered", index=i)
    # Only this batch's bytes are copied (a slice of a bigger column shares its whole buffer).
    first = int(h.starts[0]) if len(values) else 0
    last = int(h.ends[-1]) if len(values) else 0
    data = h.data[first:last].copy() if last > first else np.zeros(1, np.uint8)
    heads = h.starts[h.valid] - first
    data[(heads[:, None] + np.arange(HEADER_BYTES)).ravel()] = ord(" ")
    offsets = np.append(h.starts, h.ends[-1:]) - first
    mask = None if h.valid.all() else pa.array(h.valid).buffers()[1]
    large = offsets[-1] >= 2**31  # a batch over 2 GiB keeps 64-bit offsets
    kind, width = (pa.large_binary(), np.int64) if large else (pa.binary(), np.int32)
    blanked = pa.Array.from_buffers(kind, len(values), [mask, numpy_buffer(offsets.astype(width)), numpy_buffer(data)])
    try:
        table = check_values(blanked, schema)
    except InvalidValueError as exc:
        raise JsonSchemaValueError(str(exc), index=exc.index) from None
    if table is None:  # decoded in several runs (e.g. ISO and epoch timestamps mixed): all fit
        table = decode_json_values(blanked, schema).table
    return table.rename_columns(schema.segment_schema().names)


FORMAT = RegistryFormat(JSON_SCHEMA, "JSON", json_schema_columns, decode_json_schema_values)
