"""Avro payloads decoded into Arrow columns for a whole batch (storage/schemas/avro_arrow.py),
checked against fastavro's reading of the same bytes record by record: every supported type,
nested records, unions with null, logical types, null payloads, and the typed errors."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import struct

import fastavro
import pyarrow as pa
import pytest

from streamhouse.storage.schemas.avro_arrow import decode, decode_framed
from streamhouse.storage.schemas.errors import AvroDecodeError, SchemaNotFoundError, UnsupportedAvroSchemaError
from streamhouse.storage.schemas.wire import split

SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "demo",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "ok", "type": "boolean"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "H", "size": 4}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "where",
            "type": ["null", {"type": "record", "name": "Place", "fields": [{"name": "x", "type": "double"}]}],
        },
        {"name": "again", "type": ["null", "Place"]},
    ],
}


def encode(schema: object, records: list[object]) -> list[bytes]:
    parsed = fastavro.parse_schema(schema)
    out = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(buf.getvalue())
    return out


def event(rng: random.Random) -> dict[str, object]:
    return {
        "id": rng.randint(-(2**63), 2**63 - 1),
        "small": rng.randint(-(2**31), 2**31 - 1),
        "ok": rng.random() < 0.5,
        "f": struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0],
        "d": rng.uniform(-1e300, 1e300),
        "name": "".join(rng.choice("abcé漢😀") for _ in range(rng.randint(0, 12))),
        "blob": rng.randbytes(rng.randint(0, 9)),
        "maybe": None if rng.random() < 0.4 else "m" * rng.randint(0, 5),
        "kind": rng.choice(["A", "B", "C"]),
        "hash": rng.randbytes(4),
        "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=rng.randint(0, 10**10)),
        "day": dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 10_000)),
        "where": None if rng.random() < 0.5 else {"x": rng.random()},
        "again": None if rng.random() < 0.5 else {"x": rng.random()},
    }


def test_decode_matches_fastavro() -> None:
    rng = random.Random(11)
    records = [event(rng) for _ in range(400)]
    payloads: list[bytes | None] = list(encode(SCHEMA, records))
    payloads[5] = None  # a tombstone
    column = decode(pa.array(payloads, type=pa.binary()), json.dumps(SCHEMA))
    got = column.to_pylist()
    assert got[5] is None
    for i, (want, have) in enumerate(zip(records, got, strict=True)):
        if i == 5:
            continue
        assert have == want, i
    assert column.type.field("at").type == pa.timestamp("ms", tz="UTC")
    assert column.type.field("kind").type == pa.string()


def test_decode_after_the_wire_split() -> None:
    values = [b"\x00" + struct.pack(">I", 3) + p for p in encode("long", [1, -2, 2**40])]
    framed = split(pa.array(values))
    assert decode(framed.payloads, '"long"').to_pylist() == [1, -2, 2**40]


def test_bad_payloads_name_the_record() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "s", "type": "string"}]}
    good = encode(schema, [{"s": "hello"}])[0]
    with pytest.raises(AvroDecodeError, match="record 1") as info:
        decode(pa.array([good, good[:-2]]), json.dumps(schema))
    assert info.value.index == 1
    with pytest.raises(AvroDecodeError, match="record 0: 1 bytes left"):
        decode(pa.array([good + b"\x00"]), json.dumps(schema))
    enum = {"type": "enum", "name": "E", "symbols": ["A"]}
    with pytest.raises(AvroDecodeError, match="enum index 3"):
        decode(pa.array([b"\x00", b"\x06"]), json.dumps(enum))
    # Arrays, maps and unions decode (tests/storage/test_avro_collections.py); a recursive type has
    # no Arrow twin.
    recursive = {"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}
    with pytest.raises(UnsupportedAvroSchemaError, match="recursive"):
        decode(pa.array([b"\x00"]), json.dumps(recursive))


def test_decode_framed_lines_up_an_evolving_subject() -> None:
    """Three writer schemas of one subject in one column (v2 adds a field with a default, v3
    widens int to long), plus a tombstone: one struct column by field name, old rows null in the
    new field, rows in their original order."""
    v1 = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    v2 = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": ""}],
    }
    v3 = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": ""}],
    }
    schemas = {1: json.dumps(v1), 2: json.dumps(v2), 3: json.dumps(v3)}

    def framed(schema_id: int, schema: object, record: object) -> bytes:
        return b"\x00" + struct.pack(">I", schema_id) + encode(schema, [record])[0]

    values = [
        framed(2, v2, {"a": 1, "b": "x"}),
        framed(1, v1, {"a": 2}),
        None,
        framed(3, v3, {"a": 2**40, "b": "y"}),
        framed(1, v1, {"a": 3}),
    ]
    column = decode_framed(pa.array(values), schemas)
    assert column.type == pa.struct([("a", pa.int64()), ("b", pa.string())])
    assert column.to_pylist() == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": None},
        None,
        {"a": 2**40, "b": "y"},
        {"a": 3, "b": None},
    ]
    with pytest.raises(SchemaNotFoundError, match="schema id 3"):
        decode_framed(pa.array(values), {1: schemas[1], 2: schemas[2]})
    clash = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    with pytest.raises(UnsupportedAvroSchemaError):
        decode_framed(pa.array([values[1], framed(4, clash, {"a": "s"})]), {1: schemas[1], 4: json.dumps(clash)})
