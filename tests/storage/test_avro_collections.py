"""Avro arrays, maps and unions of several types as typed columns (issue 13): the columnar
decoder (storage/schemas/avro_arrow.py, avro_collections.py) checked against fastavro's encoder
over random schemas, hand-made multi-block encodings, garbage that must raise AvroDecodeError
naming the record and field, and the declared columns and evolution of such fields."""

from __future__ import annotations

import io
import json
from itertools import count
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.schemas.avro_arrow import decode, decode_framed
from streamhouse.storage.schemas.avro_collections import MAX_EMPTY_ITEMS
from streamhouse.storage.schemas.errors import AvroDecodeError, UnsupportedAvroSchemaError
from streamhouse.storage.values.avro_decode import avro_columns
from streamhouse.storage.values.avro_evolve import grown

_UNIONABLE = ["long", "string", "boolean", "bytes"]  # Python-disjoint, so fastavro picks the branch we mean


def _record(fields: list[Any]) -> dict[str, Any]:
    return {"type": "record", "name": "R", "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(fields)]}


def _union(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    def build(null: bool, prims: list[str], extra: list[Any]) -> list[Any]:
        return (["null"] if null else []) + prims + extra

    records = st.lists(children, min_size=1, max_size=2).map(_record)
    arrays = children.filter(lambda t: not isinstance(t, list)).map(lambda t: {"type": "array", "items": t})
    extra = st.lists(st.one_of(records, arrays), max_size=1)
    return st.builds(
        build, st.booleans(), st.lists(st.sampled_from(_UNIONABLE), min_size=1, max_size=3, unique=True), extra
    )


TYPES: st.SearchStrategy[Any] = st.recursive(
    st.sampled_from(["int", "long", "string", "bytes", "boolean", "double", "null"]),
    lambda children: st.one_of(
        children.map(lambda t: {"type": "array", "items": t}),
        children.map(lambda t: {"type": "map", "values": t}),
        st.lists(children, min_size=1, max_size=3).map(_record),
        _union(children),
    ),
    max_leaves=8,
)


def _named(schema: Any, names: count[int]) -> Any:
    """The schema with every record given its own name (Avro needs them unique)."""
    if isinstance(schema, list):
        return [_named(b, names) for b in schema]
    if isinstance(schema, dict) and schema["type"] == "record":
        fields = [{**f, "type": _named(f["type"], names)} for f in schema["fields"]]
        return {**schema, "name": f"R{next(names)}", "fields": fields}
    if isinstance(schema, dict) and schema["type"] in ("array", "map"):
        key = "items" if schema["type"] == "array" else "values"
        return {**schema, key: _named(schema[key], names)}
    return schema


def _label(branch: Any) -> str:
    if isinstance(branch, str):
        return branch
    return str(branch["name"]) if branch["type"] == "record" else str(branch["type"])


def _values(schema: Any) -> st.SearchStrategy[tuple[Any, Any]]:
    """(the value fastavro writes, what the decoded column's to_pylist gives)."""
    same: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "string": st.text(max_size=4),
        "bytes": st.binary(max_size=4),
        "boolean": st.booleans(),
        "double": st.floats(allow_nan=False),
    }
    if isinstance(schema, str):
        return same[schema].map(lambda v: (v, v))
    if isinstance(schema, list):
        others = [b for b in schema if b != "null"]

        def pick(i: int) -> st.SearchStrategy[tuple[Any, Any]]:
            branch = schema[i]
            if len(others) == 1:
                return _values(branch)
            if branch == "null":
                return st.just((None, None))
            return _values(branch).map(lambda p: (p[0], {_label(b): (p[1] if b is branch else None) for b in others}))

        return st.integers(0, len(schema) - 1).flatmap(pick)
    if schema["type"] == "array":
        return st.lists(_values(schema["items"]), max_size=4).map(lambda ps: ([p[0] for p in ps], [p[1] for p in ps]))
    if schema["type"] == "map":
        entries = st.lists(
            st.tuples(st.text(max_size=3), _values(schema["values"])), max_size=3, unique_by=lambda e: e[0]
        )
        return entries.map(lambda es: ({k: p[0] for k, p in es}, [(k, p[1]) for k, p in es]))
    fields = [(f["name"], _values(f["type"])) for f in schema["fields"]]
    return st.tuples(*(v for _, v in fields)).map(
        lambda ps: (
            {n: p[0] for (n, _), p in zip(fields, ps, strict=True)},
            {n: p[1] for (n, _), p in zip(fields, ps, strict=True)},
        )
    )


def _encode(schema: Any, values: list[Any]) -> pa.Array[Any]:
    parsed = fastavro.parse_schema(schema)
    out = []
    for value in values:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, value)
        out.append(buffer.getvalue())
    return pa.array(out, pa.binary())


@st.composite
def _batches(draw: st.DrawFn) -> tuple[Any, list[tuple[Any, Any]]]:
    schema = _named(_record(draw(st.lists(TYPES, min_size=1, max_size=3))), count())
    return schema, draw(st.lists(_values(schema), max_size=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_batches())
def test_decode_matches_fastavro(batch: tuple[Any, list[tuple[Any, Any]]]) -> None:
    schema, pairs = batch
    column = decode(_encode(schema, [p[0] for p in pairs]), json.dumps(schema))
    assert column.to_pylist() == [p[1] for p in pairs]


GARBAGE_SCHEMA = {
    "type": "record",
    "name": "G",
    "fields": [
        {"name": "a", "type": {"type": "array", "items": ["null", "long", "string"]}},
        {"name": "m", "type": {"type": "map", "values": {"type": "array", "items": "int"}}},
    ],
}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=5))
def test_garbage_decodes_or_raises_a_typed_error(payloads: list[bytes]) -> None:
    try:
        decode(pa.array(payloads, pa.binary()), json.dumps(GARBAGE_SCHEMA))
    except AvroDecodeError as exc:
        assert 0 <= exc.index < len(payloads) and f"record {exc.index}:" in str(exc)


def _zz(n: int) -> bytes:
    """Avro's zigzag varint."""
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    return bytes([*out, z])


ARRAY_OF_LONGS = json.dumps(_record([{"type": "array", "items": "long"}]))


def test_blocks_with_byte_sizes_and_several_blocks() -> None:
    # [1, 2] as a sized block (count -2, then its byte size), [3] as a second block, then 0.
    sized = _zz(-2) + _zz(2) + _zz(1) + _zz(2) + _zz(1) + _zz(3) + _zz(0)
    column = decode(pa.array([sized, _zz(0), None], pa.binary()), ARRAY_OF_LONGS)
    assert column.to_pylist() == [{"f0": [1, 2, 3]}, {"f0": []}, None]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (_zz(10**12) + _zz(1), "a block of 1000000000000 items at $.f0"),
        (_zz(-1) + _zz(-5) + _zz(1) + _zz(0), "a block of -5 bytes at $.f0"),
        (_zz(-1) + _zz(99) + _zz(1) + _zz(0), "a block of 99 bytes at $.f0"),
        (_zz(2) + _zz(1) + b"\x80", "$.f0[]"),  # the second item's varint runs out
        (_zz(-(2**63)), "bad block count at $.f0"),
        (_zz(1) + _zz(7) + _zz(0) + b"\x00", "bytes left"),
    ],
)
def test_bad_blocks_name_the_record_and_the_field(bad: bytes, says: str) -> None:
    good = _zz(1) + _zz(4) + _zz(0)
    with pytest.raises(AvroDecodeError, match="record 2: ") as caught:
        decode(pa.array([good, good, bad, good], pa.binary()), ARRAY_OF_LONGS)
    assert caught.value.index == 2 and says in str(caught.value)


def test_items_that_take_no_bytes_are_bounded() -> None:
    nulls = json.dumps(_record([{"type": "array", "items": "null"}]))
    assert decode(pa.array([_zz(5) + _zz(0)], pa.binary()), nulls).to_pylist() == [{"f0": [None] * 5}]
    with pytest.raises(AvroDecodeError, match=f"record 0: a block of {MAX_EMPTY_ITEMS + 1} items"):
        decode(pa.array([_zz(MAX_EMPTY_ITEMS + 1) + _zz(0)], pa.binary()), nulls)


def test_errors_inside_items_name_the_batch_record() -> None:
    schema = _record([{"type": "array", "items": {"type": "enum", "name": "E", "symbols": ["A"]}}, "string"])
    rows = [_zz(1) + _zz(0) + _zz(0) + _zz(1) + b"x"] * 3
    rows.insert(1, _zz(0) + _zz(1) + b"\xff")  # no items; the string is not UTF-8
    rows.append(_zz(2) + _zz(0) + _zz(4) + _zz(0) + _zz(0))  # its second item (read alone) has enum index 4
    with pytest.raises(AvroDecodeError, match=r"record 3: enum index 4 out of range at \$.f0\[\]"):
        decode(pa.array([r for i, r in enumerate(rows) if i != 1], pa.binary()), json.dumps(schema))
    with pytest.raises(AvroDecodeError, match=r"record 1: invalid UTF-8 in the string at \$.f1") as caught:
        decode(pa.array(rows[:4], pa.binary()), json.dumps(schema))
    assert caught.value.index == 1


def test_a_recursive_schema_is_not_decoded() -> None:
    tree = {"type": "record", "name": "Node", "fields": [{"name": "kids", "type": {"type": "array", "items": "Node"}}]}
    with pytest.raises(UnsupportedAvroSchemaError, match="recursive"):
        decode(pa.array([], pa.binary()), json.dumps(tree))


def test_union_members_are_named_after_their_types() -> None:
    a = {"type": "record", "name": "Card", "namespace": "pay.a", "fields": [{"name": "n", "type": "int"}]}
    b = {"type": "record", "name": "Card", "namespace": "pay.b", "fields": [{"name": "n", "type": "int"}]}
    money = {"type": "fixed", "name": "Money", "size": 2}
    schema = _record([["null", "int", {"type": "long", "logicalType": "timestamp-millis"}, a, b, money]])
    field = decode(pa.array([], pa.binary()), json.dumps(schema)).type.field("f0")
    assert [f.name for f in field.type] == ["int", "long", "pay.a.Card", "pay.b.Card", "Money"]


V1 = _record(
    ["long", {"type": "array", "items": "string"}, {"type": "map", "values": "int"}, ["null", "int", "string"]]
)
V2 = {**V1, "fields": [*V1["fields"][:3], {"name": "f3", "type": ["null", "int", "string", "boolean"]}]}


def test_columns_and_evolution_of_collections() -> None:
    columns = avro_columns(json.dumps(V1), "s-value")
    assert [c.sql_type for c in columns.columns] == [
        "BIGINT",
        "ARRAY<STRING>",
        "MAP<STRING, INT>",
        "ROW<`int` INT, `string` STRING>",
    ]
    # A union branch added by a later version widens the ROW (older rows read NULL in it).
    wider = grown(columns, json.dumps(V2), topic="t", schema_id=2, index=0)
    assert wider is not None and wider.columns[3].sql_type == "ROW<`int` INT, `string` STRING, `boolean` BOOLEAN>"
    one = _encode(V1, [{"f0": 1, "f1": ["a"], "f2": {"k": 1}, "f3": "s"}]).to_pylist()
    two = _encode(V2, [{"f0": 2, "f1": [], "f2": {}, "f3": True}]).to_pylist()
    framed = [b"\x00\x00\x00\x00\x01" + one[0], b"\x00\x00\x00\x00\x02" + two[0]]
    rows = decode_framed(pa.array(framed, pa.binary()), {1: json.dumps(V1), 2: json.dumps(V2)}).to_pylist()
    assert [r["f3"] for r in rows] == [
        {"int": None, "string": "s", "boolean": None},
        {"int": None, "string": None, "boolean": True},
    ]
    assert rows[0]["f2"] == [("k", 1)] and rows[1]["f1"] == []


@pytest.mark.parametrize("items", ["int", "long", "float", "double", "boolean"])
def test_long_primitive_arrays_are_read_a_block_at_a_time(items: str) -> None:
    schema = _record([{"type": "array", "items": items}, "string"])
    make = {"boolean": lambda k: k % 3 == 0, "float": lambda k: k / 4, "double": lambda k: k / 3}.get(
        items, lambda k: (-1) ** k * k * 1000
    )
    rows = [{"f0": [make(k) for k in range(i * 150 if i % 2 else i)], "f1": f"s{i}"} for i in range(8)]
    assert decode(_encode(schema, rows), json.dumps(schema)).to_pylist() == rows


def test_a_long_run_of_varints_that_runs_out_names_its_record() -> None:
    run = _zz(400) + b"".join(_zz(k) for k in range(399))  # one item short
    good = _zz(1) + _zz(4) + _zz(0)
    with pytest.raises(AvroDecodeError, match=r"record 1: .*\$.f0\[\]"):
        decode(pa.array([good, run, good], pa.binary()), ARRAY_OF_LONGS)
    too_long = _zz(300) + b"\x80" * 11 + b"\x01" + b"\x02" * 299 + _zz(0)
    with pytest.raises(AvroDecodeError, match=r"record 2: a varint of \$.f0\[\] is too long"):
        decode(pa.array([good, good, too_long], pa.binary()), ARRAY_OF_LONGS)
