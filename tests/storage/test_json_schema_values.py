"""JSON Schema topics (issue 13): a schema's properties mapped to Arrow (the documented table in
storage/schemas/json_schema_arrow.py), the declared columns taken from it, and framed values of
two schema ids decoded in one pass by the JSON reader (a property the older id lacks reads as
null); a bad value, an unknown id and a value without the framing are refused, naming the record."""

from __future__ import annotations

import json
import struct
from typing import Any

import pyarrow as pa
import pytest

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.json_schema_arrow import object_fields
from streamhouse.storage.values.json_schema_decode import (
    JsonSchemaValueError,
    decode_json_schema_values,
    json_schema_columns,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "user": {"type": "string"},
        "n": {"type": "integer"},
        "score": {"type": ["null", "number"]},
        "ok": {"type": "boolean"},
        "at": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "addr": {"$ref": "#/$defs/Addr"},
        "any": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "free": {"type": "object"},
        "self": {"$ref": "#"},
    },
    "$defs": {"Addr": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}}}},
}


def _framed(schema_id: int, doc: Any) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + json.dumps(doc).encode()


def test_mapping() -> None:
    fields = {f.name: f.type for f in object_fields(json.dumps(SCHEMA))}
    assert fields == {
        "user": pa.string(),
        "n": pa.int64(),
        "score": pa.float64(),
        "ok": pa.bool_(),
        "at": pa.timestamp("ms"),
        "day": pa.date32(),
        "tags": pa.list_(pa.string()),
        "addr": pa.struct([pa.field("city", pa.string()), pa.field("zip", pa.int64())]),
    }  # oneOf, a free-form object and recursion are not mapped
    columns = json_schema_columns(json.dumps(SCHEMA), "s-value").columns
    assert [(c.name, c.sql_type) for c in columns] == [
        ("user", "STRING"),
        ("n", "BIGINT"),
        ("score", "DOUBLE"),
        ("ok", "BOOLEAN"),
        ("at", "TIMESTAMP(3)"),
        ("day", "DATE"),
        ("tags", "ARRAY<STRING>"),
        ("addr", "ROW<`city` STRING, `zip` BIGINT>"),
    ]
    with pytest.raises(InvalidInputError, match="object schema"):
        json_schema_columns('{"type": "string"}', "s-value")


def test_two_ids_decode_in_one_pass_and_bad_values_are_named() -> None:
    schema = json_schema_columns(json.dumps(SCHEMA), "s-value")
    values = pa.array(
        [
            _framed(1, {"user": "a", "n": 1}),
            None,
            _framed(2, {"user": "b", "n": 2, "score": 0.5, "at": "2026-01-01T00:00:00Z", "tags": ["x"]}),
        ],
        pa.binary(),
    )
    table = decode_json_schema_values(values, schema, {1: "{}", 2: "{}"})
    assert table.column_names[:3] == ["v.user", "v.n", "v.score"]
    assert table.column("v.n").to_pylist() == [1, None, 2]
    assert table.column("v.score").to_pylist() == [None, None, 0.5]
    assert table.column("v.at").cast(pa.int64()).to_pylist() == [None, None, 1_767_225_600_000]

    with pytest.raises(JsonSchemaValueError, match="record 1 of the batch, column 'n'") as info:
        decode_json_schema_values(pa.array([_framed(1, {"n": 1}), _framed(1, {"n": "x"})]), schema, {1: "{}"})
    assert info.value.index == 1
    with pytest.raises(JsonSchemaValueError, match="record 1: schema id 9 is not registered"):
        decode_json_schema_values(pa.array([_framed(1, {}), _framed(9, {})]), schema, {1: "{}"})
    with pytest.raises(JsonSchemaValueError, match=r"record 0 .*magic byte"):
        decode_json_schema_values(pa.array([b'{"n": 1}']), schema, {1: "{}"})
