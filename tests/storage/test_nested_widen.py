"""Nested schema evolution (issue 13, nested_widen.py): a ROW column (also in ARRAY<ROW> and
MAP<…, ROW>) grows by the fields a newer writer adds inside it, older stored rows read the new
child as NULL (with_null_columns, which every reader goes through), a removed nested field keeps
its child, and a real retype of a nested field stays refused."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from streamhouse.storage.errors import SegmentMergeError
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment.decode import with_null_columns
from streamhouse.storage.segment.format import decode_segment
from streamhouse.storage.segment.merge import merge_segments
from streamhouse.storage.values.avro_decode import avro_columns, decode_avro_values
from streamhouse.storage.values.avro_evolve import ColumnEvolutionError, extends, grown
from streamhouse.storage.values.json_schema_decode import decode_json_schema_values, json_schema_columns
from streamhouse.storage.values.nested_widen import conflict, merged, widens
from streamhouse.storage.values.protobuf_decode import decode_protobuf_values, protobuf_columns
from tests.storage.test_segment_merge import encode

IN1 = pa.struct([("city", pa.string())])
IN2 = pa.struct([("city", pa.string()), ("zip", pa.int64())])
OUT1 = pa.struct([("id", pa.int64()), ("address", IN1)])
OUT2 = pa.struct([("id", pa.int64()), ("address", IN2)])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (OUT1, OUT2),  # ROW in ROW
        (pa.list_(IN1), pa.list_(IN2)),  # ARRAY<ROW>
        (pa.map_(pa.string(), IN1), pa.map_(pa.string(), IN2)),  # MAP<…, ROW>
        (pa.list_(pa.map_(pa.string(), OUT1)), pa.list_(pa.map_(pa.string(), OUT2))),
    ],
)
def test_old_rows_widen_to_the_grown_type_with_null_children(old: pa.DataType, new: pa.DataType) -> None:
    assert merged(old, new) == new and widens(old, new) and not widens(new, old)
    assert merged(new, old) == new  # a writer lacking the child (removed, or older) fits as is
    row = {"city": "Delft"}
    value: Any
    if pa.types.is_struct(old):
        value = {"id": 1, "address": row}
    elif pa.types.is_list(old) and pa.types.is_map(old.value_type):
        value = [[("k", {"id": 1, "address": row})]]
    elif pa.types.is_list(old):
        value = [row, None]
    else:
        value = [("k", row)]
    stored = pa.table({"v.c": pa.array([value, None], old), "v.n": [1, 2]}).slice(0)
    want = pa.schema([("v.c", new), ("v.n", pa.int64()), ("v.added", pa.string())])
    got = with_null_columns(stored, want)
    assert got.schema == want
    assert got.column("v.added").null_count == 2
    widened = json.dumps(got.column("v.c").to_pylist(), default=str)
    assert '"zip": null' in widened and "Delft" in widened
    assert got.column("v.c")[1].as_py() is None  # a null row stays null


def test_a_retyped_nested_field_is_no_widening() -> None:
    retyped = pa.struct([("id", pa.int64()), ("address", pa.struct([("city", pa.int64())]))])
    assert merged(OUT1, retyped) is None
    assert merged(pa.list_(IN1), pa.list_(pa.int64())) is None
    assert merged(pa.map_(pa.string(), IN1), pa.map_(pa.int64(), IN1)) is None
    assert conflict(pa.list_(OUT1), pa.list_(retyped), "trips") == "trips[].address.city"
    assert conflict(pa.map_(pa.string(), IN1), pa.map_(pa.int64(), IN1), "m") == "m"  # the key changed
    # Avro's lossless promotions still fit inside a record.
    assert merged(pa.struct([("n", pa.int64())]), pa.struct([("n", pa.int32())])) == pa.struct([("n", pa.int64())])
    stored = pa.table({"v.c": pa.array([1], pa.int64())})
    assert with_null_columns(stored, pa.schema([("v.c", pa.string())])).column("v.c").type == pa.int64()  # kept


def _record(*fields: dict[str, Any]) -> str:
    inner = {"type": "record", "name": "Address", "fields": list(fields)}
    return json.dumps(
        {
            "type": "record",
            "name": "Order",
            "fields": [
                {"name": "id", "type": "long"},
                {"name": "address", "type": inner},
                {"name": "stops", "type": {"type": "array", "items": "Address"}},
                {"name": "sites", "type": {"type": "map", "values": "Address"}},
            ],
        }
    )


CITY = {"name": "city", "type": "string"}
ZIP = {"name": "zip", "type": ["null", "long"], "default": None}


def test_grown_widens_nested_columns_and_refuses_a_nested_retype() -> None:
    v1 = avro_columns(_record(CITY), "orders-value")
    v2 = grown(v1, _record(CITY, ZIP), topic="orders", schema_id=2, index=0)
    assert v2 is not None and [c.name for c in v2.columns] == ["id", "address", "stops", "sites"]
    assert v2.column("address").arrow_type == IN2
    assert v2.column("stops").arrow_type == pa.list_(IN2)
    assert v2.column("sites").arrow_type == pa.map_(pa.string(), IN2)
    assert extends(v1, v2) and not extends(v2, v1)
    # v3 removes city: the columns keep it (new rows read NULL), nothing to grow.
    assert grown(v2, _record(ZIP), topic="orders", schema_id=3, index=0) is None
    retyped = _record({"name": "city", "type": "long"})
    with pytest.raises(
        ColumnEvolutionError, match=r"field 'address' is ROW<.*inside it: address\.city\).*never retyped"
    ) as caught:
        grown(v1, retyped, topic="orders", schema_id=4, index=7)
    assert caught.value.index == 7


def test_values_of_an_older_and_a_newer_writer_decode_into_the_widened_columns() -> None:
    v1_text, v3_text = _record(CITY), _record(ZIP)
    v2 = grown(avro_columns(v1_text, "o-value"), _record(CITY, ZIP), topic="o", schema_id=2, index=0)
    assert v2 is not None

    def framed(schema_id: int, text: str, row: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(text)), row)
        return b"\0" + struct.pack(">I", schema_id) + out.getvalue()

    old = {"id": 1, "address": {"city": "Delft"}, "stops": [{"city": "Gouda"}], "sites": {"a": {"city": "Ede"}}}
    new = {"id": 2, "address": {"zip": 7}, "stops": [], "sites": {"b": {"zip": 8}}}
    values = pa.array([framed(1, v1_text, old), framed(3, v3_text, new)], pa.binary())
    table = decode_avro_values(values, v2, {1: v1_text, 3: v3_text})
    assert table.column("v.address").to_pylist() == [{"city": "Delft", "zip": None}, {"city": None, "zip": 7}]
    assert table.column("v.stops").to_pylist() == [[{"city": "Gouda", "zip": None}], []]
    assert table.column("v.sites").to_pylist() == [
        [("a", {"city": "Ede", "zip": None})],
        [("b", {"city": None, "zip": 8})],
    ]


def test_a_reader_with_the_older_columns_narrows_a_newer_segment() -> None:
    stored = pa.table({"v.c": pa.array([{"city": "Delft", "zip": 1}, None], IN2)})
    got = with_null_columns(stored, pa.schema([("v.c", IN1)]))
    assert got.column("v.c").to_pylist() == [{"city": "Delft"}, None]


def test_segments_before_and_after_a_nested_widening_read_alike_and_never_merge() -> None:

    def segment(base: int, column: pa.Array[Any]) -> Any:
        records = pa.Table.from_batches([make_batch([b"x"] * len(column), base_offset=base)])
        return encode(records.append_column("v.address", column))

    old = segment(0, pa.array([{"city": "Delft"}, {"city": "Gouda"}], IN1))
    new = segment(2, pa.array([{"city": "Ede", "zip": 9}], IN2))
    want = pa.schema([("v.address", IN2)])
    read = [with_null_columns(decode_segment(footer, data).select(["v.address"]), want) for footer, data in (old, new)]
    assert pa.concat_tables(read).column("v.address").to_pylist() == [
        {"city": "Delft", "zip": None},
        {"city": "Gouda", "zip": None},
        {"city": "Ede", "zip": 9},
    ]
    with pytest.raises(SegmentMergeError, match="other columns"):
        merge_segments([old, new], epoch=1)


def _json_schema(props: dict[str, Any]) -> str:
    row = {"type": "object", "properties": props}
    return json.dumps(
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "address": row, "stops": {"type": "array", "items": row}},
        }
    )


PROTO = 'syntax = "proto3"; message Order {{ int64 id = 1; Address address = 2; }} message Address {{ {} }}'


def test_protobuf_and_json_schema_topics_widen_nested_records_alike() -> None:
    j1 = _json_schema({"city": {"type": "string"}})
    j2 = _json_schema({"city": {"type": "string"}, "zip": {"type": "integer"}})
    s2 = grown(json_schema_columns(j1, "j-value"), j2, topic="j", schema_id=2, index=0, columns_of=json_schema_columns)
    assert s2 is not None and s2.column("stops").arrow_type == pa.list_(IN2)

    def framed(schema_id: int, payload: bytes) -> bytes:
        return b"\0" + struct.pack(">I", schema_id) + payload

    values = pa.array(
        [
            framed(1, json.dumps({"id": 1, "address": {"city": "a"}, "stops": [{"city": "b"}]}).encode()),
            framed(2, json.dumps({"id": 2, "address": {"city": "c", "zip": 5}, "stops": []}).encode()),
        ]
    )
    got = decode_json_schema_values(values, s2, {1: j1, 2: j2})
    assert got.column("v.address").to_pylist() == [{"city": "a", "zip": None}, {"city": "c", "zip": 5}]
    assert got.column("v.stops").to_pylist() == [[{"city": "b", "zip": None}], []]

    p1, p2 = PROTO.format("string city = 1;"), PROTO.format("string city = 1; int64 zip = 2;")
    q2 = grown(protobuf_columns(p1, "p-value"), p2, topic="p", schema_id=2, index=0, columns_of=protobuf_columns)
    assert q2 is not None and q2.column("address").arrow_type == IN2

    def message(i: int, city: str, zip_code: int | None) -> bytes:
        address = (
            b"\x0a" + bytes([len(city)]) + city.encode() + (b"" if zip_code is None else b"\x10" + bytes([zip_code]))
        )
        return b"\0" + b"\x08" + bytes([i]) + b"\x12" + bytes([len(address)]) + address  # message index 0, then fields

    values = pa.array([framed(1, message(1, "a", None)), framed(2, message(2, "c", 5))])
    got = decode_protobuf_values(values, q2, {1: p1, 2: p2})
    assert got.column("v.address").to_pylist() == [{"city": "a", "zip": None}, {"city": "c", "zip": 5}]
