"""Composite SQL column types (ROW, ARRAY, MAP, BYTES, DECIMAL) in the one type map, CREATE
TOPIC's declared columns and JSON topics' decoding of them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from streamhouse.sql.statements.ddl import CreateTopic, parse_statement
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.values.json_decode import decode_json_values
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import arrow_type, sql_type

ROUND_TRIPS = [
    ("ROW<a INT, b ARRAY<STRING>>", pa.struct([("a", pa.int32()), ("b", pa.list_(pa.string()))])),
    ("MAP<STRING, DECIMAL(10, 2)>", pa.map_(pa.string(), pa.decimal128(10, 2))),
    ("ARRAY<ROW<`x y` BIGINT NOT NULL>>", pa.list_(pa.struct([("x y", pa.int64())]))),
    (
        "ROW(a INT, m MAP<STRING, ROW<q DOUBLE>>)",
        pa.struct([("a", pa.int32()), ("m", pa.map_(pa.string(), pa.struct([("q", pa.float64())])))]),
    ),
    ("BYTES", pa.binary()),
    ("VARBINARY(10)", pa.binary()),
]


@pytest.mark.parametrize(("text", "arrow"), ROUND_TRIPS)
def test_composite_types_round_trip(text: str, arrow: pa.DataType) -> None:
    assert arrow_type(text) == arrow
    assert arrow_type(sql_type(arrow)) == arrow


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ROW<>", "name TYPE"),
        ("ARRAY<INT, INT>", "one element type"),
        ("MAP<INT>", "key type and a value type"),
        ("ROW<a>", "name TYPE"),
        ("ROW<a INT, a INT>", "appears twice"),
        ("ARRAY<FOO>", "unsupported column type 'FOO'"),
        ("ROW<a INT", "unbalanced"),
    ],
)
def test_bad_composite_types_are_named(text: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        arrow_type(text)


def test_create_topic_declares_composite_columns_and_they_round_trip() -> None:
    statement = parse_statement(
        "CREATE TOPIC t (id BIGINT, r ROW<a INT, tags ARRAY<STRING>>, m MAP<STRING, INT>, b BYTES, "
        "d DECIMAL(12, 3)) WITH (partitions = 1)"
    )
    assert isinstance(statement, CreateTopic) and statement.schema is not None
    schema = statement.schema
    assert [c.name for c in schema.columns] == ["id", "r", "m", "b", "d"]
    assert schema.arrow_schema().field("m").type == pa.map_(pa.string(), pa.int32())
    assert ValueSchema.from_json(schema.to_json()) == schema


def test_json_topic_decodes_nested_columns_and_flags_bad_rows() -> None:
    schema = ValueSchema(
        (
            Column("id", "BIGINT"),
            Column("r", "ROW<a INT, tags ARRAY<STRING>>"),
            Column("m", "MAP<STRING, DOUBLE>"),
            Column("b", "BYTES"),
            Column("l", "ARRAY<ROW<x BIGINT, mm MAP<STRING, INT>>>"),
        ),
        None,
    )
    values = pa.array(
        [
            b'{"id":1,"r":{"a":2,"tags":["x","y"]},"m":[{"key":"k","value":1.5}],"b":"raw",'
            b'"l":[{"x":3,"mm":[{"key":"q","value":7}]}]}',
            b'{"id":2}',
            b'{"id":3,"r":{"a":"not a number"}}',
            b'{"id":4,"m":[{"key":null,"value":1}]}',
        ]
    )
    decoded = decode_json_values(values, schema)
    assert decoded.table.schema == schema.arrow_schema()
    assert list(decoded.bad_rows) == [2, 3]  # a wrong nested type; a null MAP key
    rows = decoded.table.to_pylist()
    assert rows[0] == {
        "id": 1,
        "r": {"a": 2, "tags": ["x", "y"]},
        "m": [("k", 1.5)],
        "b": b"raw",
        "l": [{"x": 3, "mm": [("q", 7)]}],
    }
    assert rows[1] == {"id": 2, "r": None, "m": None, "b": None, "l": None}
