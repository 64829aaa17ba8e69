"""The batch Avro encoder of REST produce (engine/registry/avro_encode.py) against fastavro, the
encoder confluent-kafka's AvroSerializer uses: byte for byte equal on generated records, and
every record that does not fit named by index and field."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.registry.avro_encode import AvroDataError, encode, frame

ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": "int", "default": 0}],
}
SCHEMA = {
    "type": "record",
    "name": "User",
    "namespace": "ex",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "age", "type": "int"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "double"},
        {"name": "ratio", "type": "float"},
        {"name": "ok", "type": "boolean"},
        {"name": "email", "type": ["null", "string"], "default": None},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "home", "type": ["null", ADDRESS], "default": None},
        {"name": "work", "type": ["null", "Address"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "n", "type": ["long", "null"], "default": 0},
        {"name": "count", "type": "int", "default": 3},
    ],
}
TEXT = json.dumps(SCHEMA)
PARSED = fastavro.parse_schema(SCHEMA)

address = st.fixed_dictionaries({"city": st.text(max_size=12)}, optional={"zip": st.integers(-(2**31), 2**31 - 1)})
user = st.fixed_dictionaries(
    {
        "id": st.integers(-(2**63), 2**63 - 1),
        "age": st.integers(-(2**31), 2**31 - 1),
        "name": st.text(max_size=30),
        "score": st.floats(allow_nan=False),
        "ratio": st.floats(width=32, allow_nan=False),
        "ok": st.booleans(),
        "email": st.none() | st.text(max_size=10),
        "color": st.sampled_from(["RED", "GREEN", "BLUE"]),
        "home": st.none() | address,
        "work": st.none() | address,
        "at": st.integers(0, 2**50),
        "n": st.none() | st.integers(-(2**63), 2**63 - 1),
    },
    optional={"count": st.integers(-(2**31), 2**31 - 1)},
)


def _fastavro(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PARSED, record)
    return buffer.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | user, min_size=1, max_size=20))
def test_batch_encoding_equals_fastavro(records: list[dict[str, Any] | None]) -> None:
    got = encode(TEXT, records).to_pylist()
    assert got == [None if r is None else _fastavro(r) for r in records]


def test_frame_is_the_serializers_wire_format() -> None:
    framed = frame(encode('"string"', ["ab", None]), 258).to_pylist()
    assert framed == [b"\x00\x00\x00\x01\x02\x04ab", None]


def _good(**change: Any) -> dict[str, Any]:
    base = {"id": 1, "age": 2, "name": "x", "score": 1.0, "ratio": 0.5, "ok": True, "color": "RED", "at": 5}
    return {**base, **change}


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        (_good(age=1.5), "age", "must be an integer"),
        (_good(age=True), "age", "must be an integer"),
        (_good(age=2**31), "age", "out of the int range"),
        (_good(name=7), "name", "must be a string"),
        (_good(ok=1), "ok", "must be true or false"),
        (_good(color="PINK"), "color", "not a symbol"),
        (_good(home={"zip": 1}), "home.city", "missing or null"),
        (_good(home="Paris"), "home", "must be an object"),
        (_good(extra=1), "extra", "not a field"),
        ({k: v for k, v in _good().items() if k != "id"}, "id", "missing or null"),
        (_good(score="1.0"), "score", "must be a number"),
    ],
)
def test_a_record_that_does_not_fit_is_named(bad: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(AvroDataError) as caught:
        encode(TEXT, [_good(), _good(id=2), bad, _good(id=3)], where="values")
    assert (caught.value.index, caught.value.field) == (2, field)
    assert f"values[2] field {field!r}" in str(caught.value) and words in str(caught.value)


def test_other_schemas_fall_back_to_fastavro_per_record() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "tags", "type": {"type": "array", "items": "int"}}]}
    assert encode(json.dumps(schema), [{"tags": [1, 2]}, None]).to_pylist() == [b"\x04\x02\x04\x00", None]
    with pytest.raises(AvroDataError) as caught:
        encode(json.dumps(schema), [{"tags": [1]}, {"tags": ["x"]}])
    assert caught.value.index == 1


def test_named_types_from_references() -> None:
    schema = {"type": "record", "name": "Order", "fields": [{"name": "ship_to", "type": "Address"}]}
    out = encode(json.dumps(schema), [{"ship_to": {"city": "a", "zip": 1}}], references=[json.dumps(ADDRESS)])
    assert out.to_pylist() == [b"\x02a\x02"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["id", "age", "name", "home", "x"]), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=4))
def test_any_json_is_encoded_or_refused_as_avro_data(data: list[Any]) -> None:
    """Whatever JSON a client sends: payloads fastavro reads back, or AvroDataError, nothing else."""
    try:
        out = encode(TEXT, data).to_pylist()
    except AvroDataError as exc:
        assert 0 <= exc.index < len(data)
        return
    for payload in out:
        if payload is not None:
            fastavro.schemaless_reader(io.BytesIO(payload), PARSED)
