"""Consume of a schema-registry topic (format avro / protobuf / json-schema, issue 13) with its
values decoded to JSON, as Confluent's REST Proxy answers for its avro / protobuf / jsonschema
embedded formats.

A fetched batch's framed values are decoded by the topic's format with the batch decoders the
segment writer uses (storage/values/registry_formats.py: each schema id's rows with that id's
writer schema, looked up once per id through the registry's cache), into the topic's declared
columns, and those become one JSON object per record with Arrow kernels (engine/api/json_rows.py).
Per batch, no step per record. Bytes fields come back base64 (Protobuf's JSON mapping), maps as
objects, timestamps as ISO-8601 text; a null value (tombstone) is null.

What comes back is the topic's declared columns: a field the topic does not declare (a type with
no column type, see the format modules) is not in the decoded object; `value_type=BINARY` keeps
the exact stored bytes (base64) for a client that wants to decode them itself.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.api.contract import FrontEnd
from streamhouse.api.json_rows import json_rows, single_chunk
from streamhouse.registry.service import RegistryService
from streamhouse.rest import base64_columns
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.schemas.wire import split, valid_mask
from streamhouse.storage.values.registry_format import RegistryFormat
from streamhouse.storage.values.registry_formats import registry_format
from streamhouse.storage.values.schema import ValueSchema, parse_value_schema

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly
ConsumeValueType = Literal["JSON", "BINARY", "STRING", "AVRO", "PROTOBUF", "JSONSCHEMA"]
# The decoded value types and the registry schemaType of the topic format each asks for.
DECODED = {"AVRO": "AVRO", "PROTOBUF": "PROTOBUF", "JSONSCHEMA": "JSON"}
_INLINE_ROWS = 2_048  # below this many records the decode runs on the event loop


# What a consume answers values as: (value type, the format and value schema to decode with, if any).
Decoding = tuple[str, RegistryFormat | None, ValueSchema | None]


async def value_kind(front: FrontEnd, topic: str, asked: ConsumeValueType | None) -> Decoding:
    """The value type a consume answers with: `asked`, or by default the topic's own format
    (decoded) for a registry topic and JSON otherwise; with the format and value schema to decode
    with when decoded. A decoded type that is not the topic's format is refused (400)."""
    if asked is not None and asked not in DECODED:
        return asked, None, None
    schema = parse_value_schema((await front.topic(topic)).value_schema)
    fmt = registry_format(schema.format if schema else None)
    if asked is None:
        if fmt is None or schema is None:
            return "JSON", None, None
        return next(k for k, t in DECODED.items() if t == fmt.schema_type), fmt, schema
    if fmt is None or schema is None or fmt.schema_type != DECODED[asked]:
        held = f"a {schema.format} topic" if schema is not None and fmt is not None else "not a schema-registry topic"
        raise InvalidInputError(f"value_type {asked}: topic {topic!r} is {held}; ask for BINARY for the stored bytes")
    return asked, fmt, schema


async def decoded_json(
    registry: RegistryService | None, values: pa.Array[Any], fmt: RegistryFormat, schema: ValueSchema
) -> pa.Array[Any]:
    """One JSON text per value (null → "null"): the values decoded to the topic's columns."""
    if len(values) == 0:
        return pa.array([], pa.string())
    if registry is None:
        raise InvalidInputError("decoding values needs the agent's schema registry, which is not served here")
    ids = split(values, source="stored values").schema_ids
    present = valid_mask(ids)
    writers: dict[int, str] = {}
    for schema_id in np.unique(np.asarray(ids.fill_null(0).to_numpy(zero_copy_only=False))[present]):
        writers[int(schema_id)] = (await registry.schema(int(schema_id))).schema.text
    if len(values) < _INLINE_ROWS:
        return _to_json(values, fmt, schema, writers)
    return cast("pa.Array[Any]", await run_blocking(_to_json, values, fmt, schema, writers))


def _to_json(values: pa.Array[Any], fmt: RegistryFormat, schema: ValueSchema, writers: dict[int, str]) -> pa.Array[Any]:
    table = fmt.decode(values, schema, writers)
    columns = []
    for column in table.columns:  # bytes as base64 text, as Protobuf's JSON mapping writes them
        arr = single_chunk(column)
        columns.append(base64_columns.encode(arr) if _is_binary(arr.type) else arr)
    rows = json_rows(pa.Table.from_arrays(columns, names=[c.name for c in schema.columns]))
    texts = pc.cast(rows, pa.string())
    return cast("pa.Array[Any]", pc.if_else(values.is_null(), pa.scalar("null", pa.string()), texts))


def _is_binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t))
