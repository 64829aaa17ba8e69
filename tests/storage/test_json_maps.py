"""MAP columns of JSON topics read a plain JSON object (issue 13), as Flink's JSON format and
DuckDB do, besides the documented array of {"key", "value"} objects: hypothesis batches mixing
both spellings, nulls and wrong values against what Python's json reads; key types cast from
object keys; nested MAPs; runs longer than the decoder's object run; the produce check naming
record, column and reason; JSON Schema's `additionalProperties: {schema}` as MAP<STRING, V>; and
an embedded topic reading `m['k']` in SQL, from a segment and from the buffer, with
json.ignore-errors storing a bad map as NULL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamhouse
from streamhouse.storage.errors import InvalidValueError
from streamhouse.storage.schemas.json_schema_arrow import object_fields
from streamhouse.storage.values.json_composite import OBJECT_RUN_ROWS
from streamhouse.storage.values.json_decode import check_values, decode_json_values
from streamhouse.storage.values.json_members import keep_members
from streamhouse.storage.values.schema import Column, ValueSchema

SCHEMA = ValueSchema((Column("id", "BIGINT"), Column("m", "MAP<STRING, INT>")), None)

keys = st.sampled_from(["a", "b", "ü", "x y", ""])
good_value = st.integers(-(2**31), 2**31 - 1)
bad_value = st.sampled_from(["text", 2**40, 1.5, [1], {"a": 1}, True])
entries = st.dictionaries(keys, good_value | st.none(), max_size=4)


@st.composite
def rows(draw: st.DrawFn) -> tuple[bytes | None, dict[str, Any] | None, bool]:
    """(value, expected m or None, whether the value is bad)."""
    kind = draw(st.sampled_from(["object", "entries", "bad", "absent", "null", "tombstone"]))
    if kind == "tombstone":
        return None, None, False
    if kind == "absent":
        return b'{"id": 1}', None, False
    if kind == "null":
        return b'{"id": 1, "m": null}', None, False
    m = draw(entries)
    if kind == "bad":
        m = {**m, draw(keys): draw(bad_value)}
    if kind == "entries":
        spelled: Any = [{"key": k, "value": v} for k, v in m.items()]
        expected = dict(m)  # an explicit null value is an entry here
    else:
        spelled = m
        expected = {k: v for k, v in m.items() if v is not None}  # a null value reads as absent
    return json.dumps({"id": 1, "m": spelled}).encode(), expected, kind == "bad"


@settings(max_examples=60, deadline=None)
@given(st.lists(rows(), min_size=1, max_size=12))
def test_plain_objects_and_entry_arrays_decode_as_json_reads_them(batch: list[Any]) -> None:
    values = pa.array([v for v, _, _ in batch], pa.binary())
    decoded = decode_json_values(values, SCHEMA)
    assert decoded.table.schema == SCHEMA.arrow_schema()
    assert list(decoded.bad_rows) == [i for i, (_, _, bad) in enumerate(batch) if bad]
    for got, (_, expected, bad) in zip(decoded.table.column("m").to_pylist(), batch, strict=True):
        if bad or expected is None:
            assert got is None
        else:
            assert got is not None and dict(got) == expected and len(got) == len(expected)
    first_bad = next((i for i, (_, _, bad) in enumerate(batch) if bad), None)
    if first_bad is None:
        check_values(values, SCHEMA)  # the produce check agrees: nothing refused
    else:
        with pytest.raises(InvalidValueError) as caught:
            check_values(values, SCHEMA)
        assert caught.value.index == first_bad and "'m'" in str(caught.value)


tricky = st.text(alphabet='ab"\\,:{}[] \n', max_size=5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | tricky,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["m", "id", "a", 'q"', "x\\"]) | tricky, json_values), max_size=5))
def test_blanking_keeps_exactly_the_named_members(objects: list[dict[str, Any]]) -> None:
    """The map columns' copy (json_members.py) parses to the kept members of every value, with
    keys and strings full of quotes, escapes, commas, colons and brackets."""
    names = ("m", 'q"', "a")
    lines = b"".join(b'{"v":' + json.dumps(o, indent=None).encode() + b"}\n" for o in objects)
    out = keep_members(np.frombuffer(lines, np.uint8), ("m", "a"))
    assert len(out) == len(lines)
    got = [json.loads(line)["v"] for line in out.tobytes().decode().splitlines()]
    assert got == [{k: v for k, v in o.items() if k in names[::2]} for o in objects]


def test_key_types_nested_maps_and_reasons() -> None:
    schema = ValueSchema(
        (
            Column("byid", "MAP<INT, DOUBLE>"),
            Column("flags", "MAP<BOOLEAN, STRING>"),
            Column("r", "ROW<name STRING, attrs MAP<STRING, ROW<q DOUBLE, tags ARRAY<STRING>>>>"),
            Column("l", "ARRAY<MAP<STRING, BIGINT>>"),
        ),
        None,
    )
    good = {
        "byid": {"1": 2.5, "-7": 3},
        "flags": {"true": "y"},
        "r": {"name": "n", "attrs": {"k": {"q": 1, "tags": ["t"], "extra": 0}, "j": {}}},
        "l": [{"a": 1}, {}, {"b": 2, "c": 3}],
    }
    decoded = decode_json_values(pa.array([json.dumps(good).encode()]), schema)
    assert len(decoded.bad_rows) == 0
    row = decoded.table.to_pylist()[0]
    assert dict(row["byid"]) == {1: 2.5, -7: 3.0}
    assert row["flags"] == [(True, "y")]
    assert dict(row["r"]["attrs"]) == {"k": {"q": 1.0, "tags": ["t"]}, "j": {"q": None, "tags": None}}
    assert [dict(m) for m in row["l"]] == [{"a": 1}, {}, {"b": 2, "c": 3}]

    bad_key = json.dumps({"byid": {"one": 1.0}}).encode()
    with pytest.raises(InvalidValueError) as caught:
        check_values(pa.array([json.dumps(good).encode(), bad_key]), schema)
    assert caught.value.index == 1 and "'byid'" in str(caught.value)
    assert "keys INT, values DOUBLE" in str(caught.value)


def test_runs_longer_than_one_object_run_with_distinct_keys() -> None:
    """Every value a key of its own: decoded in runs, so the inferred struct stays narrow."""
    n = OBJECT_RUN_ROWS * 2 + 5
    values = pa.array([json.dumps({"id": i, "m": {f"k{i}": i, "all": 1}}).encode() for i in range(n)])
    table = check_values(values, SCHEMA)
    assert table is not None and table.num_rows == n
    maps = table.column("m").to_pylist()
    assert all(dict(m) == {f"k{i}": i, "all": 1} for i, m in enumerate(maps))


def test_json_schema_additional_properties_is_a_map() -> None:
    schema = {
        "type": "object",
        "properties": {
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "free": {"type": "object", "additionalProperties": True},  # free-form: not mapped
            "points": {"type": "object", "additionalProperties": {"$ref": "#/$defs/P"}},
        },
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    fields = {f.name: f.type for f in object_fields(json.dumps(schema))}
    assert fields == {
        "counts": pa.map_(pa.string(), pa.int64()),
        "points": pa.map_(pa.string(), pa.struct([pa.field("x", pa.float64())])),
    }


def test_sql_reads_map_keys_of_a_json_topic(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC prefs (id BIGINT, m MAP<STRING, INT>) WITH (partitions = 1)")
        sh.sql(
            "CREATE TOPIC lenient (id BIGINT, m MAP<STRING, INT>) WITH (partitions = 1, 'json.ignore-errors' = 'true')"
        )
        first = [{"id": 1, "m": {"a": 1, "b": 2}}, {"id": 2, "m": [{"key": "a", "value": 5}]}]
        sh.produce_batch("prefs", first, partition=0, acks="durable")  # a segment
        sh.produce("prefs", {"id": 3, "m": {"b": 7}}, partition=0)  # the unflushed buffer
        with pytest.raises(InvalidValueError) as caught:
            sh.produce("prefs", {"id": 4, "m": {"a": "seven"}}, partition=0)
        assert "'m'" in str(caught.value)
        rows = sh.sql("SELECT id, m['a'] AS a, m['b'] AS b, cardinality(m) AS n FROM prefs ORDER BY id").to_pylist()
        assert rows == [
            {"id": 1, "a": 1, "b": 2, "n": 2},
            {"id": 2, "a": 5, "b": None, "n": 1},
            {"id": 3, "a": None, "b": 7, "n": 1},
        ]
        described = {r["column"]: r["type"] for r in sh.sql("DESCRIBE prefs").to_pylist()}
        assert described["m"] == "MAP<STRING, INT>"

        sh.produce_batch("lenient", [{"id": 1, "m": {"a": "x"}}, {"id": 2, "m": {"a": 2}}], partition=0)
        lenient = sh.sql("SELECT id, m['a'] AS a FROM lenient ORDER BY _offset").to_pylist()
        assert lenient == [{"id": None, "a": None}, {"id": 2, "a": 2}]  # a bad value: a row of nulls
