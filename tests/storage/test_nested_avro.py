"""Avro records, bytes, fixed and enums as SQL columns (ROW, BYTES, STRING), decoded like
fastavro reads them; a nested field added to a record is refused (a column is never retyped)."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from streamhouse.storage.values.avro_decode import avro_columns, decode_avro_values
from streamhouse.storage.values.avro_evolve import ColumnEvolutionError, grown

INNER = {
    "type": "record",
    "name": "Address",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "int"], "default": None},
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 2}},
    ],
}
V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "address", "type": INNER},
        {"name": "blob", "type": "bytes"},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "DONE"]}},
    ],
}


def _framed(schema_id: int, schema: dict[str, Any], row: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), row)
    return out.getvalue()


def test_nested_avro_fields_are_columns_equal_to_fastavro() -> None:
    schema = avro_columns(json.dumps(V1), "orders-value")
    assert [(c.name, c.sql_type) for c in schema.columns] == [
        ("id", "BIGINT"),
        ("address", "ROW<`city` STRING, `zip` INT, `code` BYTES>"),
        ("blob", "BYTES"),
        ("state", "STRING"),
    ]
    rows = [
        {
            "id": i,
            "address": {"city": f"c{i}", "zip": None if i % 2 else i, "code": b"%02d" % i},
            "blob": bytes([i]) * i,
            "state": "DONE" if i % 3 else "NEW",
        }
        for i in range(50)
    ]
    framed = [_framed(3, V1, r) for r in rows]
    table = decode_avro_values(pa.array([*framed, None], pa.binary()), schema, {3: json.dumps(V1)})
    expected = [fastavro.schemaless_reader(io.BytesIO(f[5:]), fastavro.parse_schema(V1)) for f in framed]
    assert table.to_pylist()[:-1] == [{f"v.{k}": v for k, v in e.items()} for e in expected]
    assert set(table.to_pylist()[-1].values()) == {None}  # a tombstone


def test_a_nested_field_added_is_refused_as_a_retyped_column() -> None:
    schema = avro_columns(json.dumps(V1), "orders-value")
    inner2 = {**INNER, "fields": [*INNER["fields"], {"name": "street", "type": ["null", "string"], "default": None}]}
    v2 = {**V1, "fields": [{**V1["fields"][0]}, {"name": "address", "type": inner2}, *V1["fields"][2:]]}
    with pytest.raises(ColumnEvolutionError, match=r"field 'address' is ROW<.*street.*never retyped"):
        grown(schema, json.dumps(v2), topic="orders", schema_id=4, index=0)
    v3 = {
        **V1,
        "fields": [*V1["fields"], {"name": "note", "type": ["null", INNER | {"name": "Note"}], "default": None}],
    }
    added = grown(schema, json.dumps(v3), topic="orders", schema_id=5, index=0)
    assert added is not None and added.columns[-1].sql_type.startswith("ROW<")  # a new ROW column is fine
