"""Avro records, bytes, fixed and enums as SQL columns (ROW, BYTES, STRING), decoded like
fastavro reads them; a nested field added to a record widens its ROW column (nested_widen.py), a
nested field retyped is refused (a column is never retyped)."""

from __future__ import annotations

import io
import json
import struct
from decimal import Decimal
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_nested_field_added_widens_the_column_and_a_retyped_one_is_refused() -> None:
    schema = avro_columns(json.dumps(V1), "orders-value")
    inner2 = {**INNER, "fields": [*INNER["fields"], {"name": "street", "type": ["null", "string"], "default": None}]}
    v2 = {**V1, "fields": [{**V1["fields"][0]}, {"name": "address", "type": inner2}, *V1["fields"][2:]]}
    widened = grown(schema, json.dumps(v2), topic="orders", schema_id=4, index=0)
    assert widened is not None and "street" in widened.columns[1].sql_type
    inner3 = {**INNER, "fields": [{"name": "city", "type": "long"}, *INNER["fields"][1:]]}
    v2b = {**V1, "fields": [{**V1["fields"][0]}, {"name": "address", "type": inner3}, *V1["fields"][2:]]}
    with pytest.raises(ColumnEvolutionError, match=r"field 'address' is ROW<.*never retyped"):
        grown(schema, json.dumps(v2b), topic="orders", schema_id=4, index=0)
    v3 = {
        **V1,
        "fields": [*V1["fields"], {"name": "note", "type": ["null", INNER | {"name": "Note"}], "default": None}],
    }
    added = grown(schema, json.dumps(v3), topic="orders", schema_id=5, index=0)
    assert added is not None and added.columns[-1].sql_type.startswith("ROW<")  # a new ROW column is fine


_names = iter(range(10**9))


def _leaf() -> st.SearchStrategy[Any]:
    def fixed() -> dict[str, Any]:
        return {"type": "fixed", "name": f"F{next(_names)}", "size": 3}

    def enum() -> dict[str, Any]:
        return {"type": "enum", "name": f"E{next(_names)}", "symbols": ["A", "B", "C"]}

    def decimal() -> dict[str, Any]:
        return {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}

    plain = st.sampled_from(["int", "long", "double", "boolean", "string", "bytes"])
    return st.one_of(plain, st.builds(fixed), st.builds(enum), st.builds(decimal))


def _record(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def build(types: list[Any]) -> dict[str, Any]:
        fields = [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]
        return {"type": "record", "name": f"R{next(_names)}", "fields": fields}

    return st.lists(children, min_size=1, max_size=4).map(build)


_TYPES = st.recursive(
    _leaf(),
    lambda inner: st.one_of(_record(inner), inner.filter(lambda t: not isinstance(t, list)).map(lambda t: ["null", t])),
    max_leaves=8,
)


def _value(data: st.DataObject, schema: Any) -> Any:
    if isinstance(schema, list):
        return None if data.draw(st.booleans()) else _value(data, schema[1])
    if isinstance(schema, dict):
        if schema["type"] == "record":
            return {f["name"]: _value(data, f["type"]) for f in schema["fields"]}
        if schema.get("logicalType") == "decimal":
            return Decimal(data.draw(st.integers(-(10**12) + 1, 10**12 - 1))).scaleb(-2)
        if schema["type"] == "fixed":
            return data.draw(st.binary(min_size=3, max_size=3))
        return data.draw(st.sampled_from(schema["symbols"]))
    return data.draw(
        {
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "double": st.floats(allow_nan=False),
            "boolean": st.booleans(),
            "string": st.text(max_size=5),
            "bytes": st.binary(max_size=5),
        }[schema]
    )


@settings(max_examples=40, deadline=None)
@given(top=_record(_TYPES), data=st.data())
def test_nested_decode_equals_fastavro(top: dict[str, Any], data: st.DataObject) -> None:
    top = {**top, "fields": [{"name": "id", "type": "long"}, *top["fields"]]}
    schema = avro_columns(json.dumps(top), "t-value")
    rows = [_value(data, top) for _ in range(data.draw(st.integers(1, 6)))]
    framed = [_framed(9, top, r) for r in rows]
    table = decode_avro_values(pa.array(framed, pa.binary()), schema, {9: json.dumps(top)})
    parsed = fastavro.parse_schema(top)
    expected = [fastavro.schemaless_reader(io.BytesIO(f[5:]), parsed) for f in framed]
    assert table.to_pylist() == [{f"v.{k}": v for k, v in e.items()} for e in expected]
