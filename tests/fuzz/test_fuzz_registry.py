"""Fuzz of the schema-registry decoders: framed Avro, Protobuf and JSON Schema values decoded
into a topic's declared columns (storage/values/*_decode.py over storage/schemas/), as produce
does for every batch, and schema texts as the registry parses them (engine/registry/kinds.py:
validate + normalise; the formats' column derivation). Damaged values decode or raise a
StreamHouseError (SchemaValidationError / WireFormatError) naming the record; damaged schema texts
are accepted or raise a StreamHouseError (InvalidSchemaError and kin), never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streamhouse.registry import avro_encode, json_schema_encode, protobuf_encode
from streamhouse.registry.kinds import KINDS
from streamhouse.storage.errors import InvalidValueError, StreamHouseError
from streamhouse.storage.values.registry_formats import FORMATS
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import hostile

SCHEMA_ID = 7
AVRO_SCHEMA = json.dumps({
    "type": "record", "name": "Order", "namespace": "fz",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "name", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "at", "type": {"type": "record", "name": "At", "fields": [
            {"name": "x", "type": "float"}, {"name": "y", "type": ["null", "long", "string"]}]}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "fx", "type": {"type": "fixed", "name": "Fx", "size": 3}},
    ],
})  # fmt: skip
AVRO_ROWS: list[Any] = [
    {"id": 1, "qty": -3, "price": 1.5, "ok": True, "name": "ü", "blob": b"\x00\xff", "note": None,
     "tags": ["a", "bb"], "attrs": {"k": 2**40}, "kind": "B", "at": {"x": 0.5, "y": "s"}, "ts": 1_700_000_000_000,
     "fx": b"abc"},
    {"id": -(2**63), "qty": 2**31 - 1, "price": -0.0, "ok": False, "name": "", "blob": b"", "note": "n",
     "tags": [], "attrs": {}, "kind": "A", "at": {"x": -1.0, "y": 5}, "ts": 0, "fx": b"\x00\x00\x00"},
    None,
]  # fmt: skip
PROTO_SCHEMA = """
syntax = "proto3";
package fz;
import "google/protobuf/timestamp.proto";
message Order {
  int64 id = 1;
  sint32 qty = 2;
  double price = 3;
  bool ok = 4;
  string name = 5;
  bytes blob = 6;
  repeated int32 nums = 7;
  repeated string tags = 8;
  map<string, int64> attrs = 9;
  enum Kind { A = 0; B = 1; }
  Kind kind = 10;
  message At { float x = 1; fixed64 y = 2; }
  At at = 11;
  google.protobuf.Timestamp ts = 12;
  oneof choice { string s = 13; uint32 u = 14; }
}
"""
PROTO_ROWS: list[Any] = [
    {"id": "5", "qty": -7, "price": 2.5, "ok": True, "name": "ü", "blob": "AP8=", "nums": [1, -1, 2**31 - 1],
     "tags": ["a", ""], "attrs": {"k": "9"}, "kind": "B", "at": {"x": 1.5, "y": "18446744073709551615"},
     "ts": "2024-01-01T00:00:00.001Z", "s": "one"},
    {"u": 4},
    None,
]  # fmt: skip
JSON_SCHEMA = json.dumps({
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "price": {"type": "number"}, "ok": {"type": "boolean"},
        "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
        "at": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "string"}}},
    },
})  # fmt: skip
JSON_ROWS: list[Any] = [
    {"id": 1, "price": 1.5, "ok": True, "name": "ü", "tags": ["a"], "at": {"x": 1, "y": "z"}},
    {"id": -(2**63), "name": ""},
    None,
]


def _framed(payloads: pa.Array[Any], index: bytes = b"") -> list[bytes | None]:
    prefix = b"\x00" + SCHEMA_ID.to_bytes(4, "big") + index
    return [None if p is None else prefix + p for p in payloads.to_pylist()]


VALUES: dict[str, list[bytes | None]] = {
    "avro": _framed(avro_encode.encode(AVRO_SCHEMA, AVRO_ROWS)),
    "protobuf": _framed(protobuf_encode.encode(PROTO_SCHEMA, PROTO_ROWS), protobuf_encode.index_path()),
    "json-schema": _framed(json_schema_encode.encode(JSON_SCHEMA, "fz-value", JSON_ROWS)),
}
TEXTS = {"avro": AVRO_SCHEMA, "protobuf": PROTO_SCHEMA, "json-schema": JSON_SCHEMA}


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[bytes | None]]:
    """A format and a batch of its framed values, some of them damaged."""
    name = draw(st.sampled_from(sorted(VALUES)))
    valid = [v for v in VALUES[name] if v is not None]
    values = draw(
        st.lists(
            st.one_of(st.none(), st.sampled_from(valid), hostile(st.sampled_from(valid), max_ops=3, max_random=64)),
            min_size=1,
            max_size=4,
        )
    )
    return name, values


# Found by this fuzz: a Protobuf string field (singular or repeated) holding invalid UTF-8 let
# pyarrow's ArrowInvalid out of the decoder (a produce to a Protobuf topic failed untyped).
@example(("protobuf", [b"\x00\x00\x00\x00\x07\x00*\x02\xff\xbc"]))
@example(("protobuf", [None, b"\x00\x00\x00\x00\x07\x00B\x02okB\x01\xfe"]))
@fuzz(300)
@given(batches())
def test_damaged_framed_values_decode_or_raise_defined_errors(case: tuple[str, list[bytes | None]]) -> None:
    name, values = case
    fmt = FORMATS[name]
    schema = fmt.columns(TEXTS[name], "fz-value")
    with bounded():
        try:
            table = fmt.decode(pa.array(values, pa.binary()), schema, {SCHEMA_ID: TEXTS[name]})
        except StreamHouseError:
            return
    assert table.num_rows == len(values)
    table.validate(full=True)
    table.to_pylist()  # what a Python client does with it: a TIMESTAMP past year 9999 cannot be shown


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


def _proto_ts(seconds: int) -> bytes:
    # An Order holding only `ts` (field 12, length-delimited): a Timestamp with `seconds` (field 1).
    inner = b"\x08" + _varint(seconds)
    return b"\x00" + SCHEMA_ID.to_bytes(4, "big") + protobuf_encode.index_path() + b"\x62" + bytes([len(inner)]) + inner


# Found by this fuzz: serializers accept any long for an Avro timestamp-millis or a Protobuf
# Timestamp's seconds, Arrow stores it, and every later read in Python/pandas/SQL fails on it
# (datetime ends at 9999-12-31). A Protobuf seconds * 1000 could also wrap into a plausible time.
@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("avro", _framed(avro_encode.encode(AVRO_SCHEMA, [{**AVRO_ROWS[0], "ts": 2**62}]))[0]),
        ("avro", _framed(avro_encode.encode(AVRO_SCHEMA, [{**AVRO_ROWS[0], "ts": -(2**62)}]))[0]),
        ("protobuf", _proto_ts(2**62)),
        ("protobuf", _proto_ts(2**64 // 1000 + 1_700_000_000)),  # * 1000 wrapped to ~1970 before
    ],
    ids=["avro-2**62", "avro--2**62", "protobuf-2**62", "protobuf-wrapping"],
)
def test_timestamps_outside_years_1_to_9999_are_refused_naming_record_and_column(name: str, bad: bytes) -> None:
    fmt = FORMATS[name]
    values = pa.array([VALUES[name][0], None, bad], pa.binary())
    with pytest.raises(InvalidValueError, match="outside years 1-9999") as refused:
        fmt.decode(values, fmt.columns(TEXTS[name], "fz-value"), {SCHEMA_ID: TEXTS[name]})
    assert (refused.value.index, refused.value.column) == (2, "ts")


SCHEMA_TYPES = {"avro": "AVRO", "protobuf": "PROTOBUF", "json-schema": "JSON"}
# Deep nesting is the classic parser killer (recursion limits); the registry takes texts from clients.
deep = st.integers(1, 5000).map(lambda n: "[" * n + "]" * n)
deep_objects = st.integers(1, 3000).map(lambda n: '{"type":' * n + '"string"' + "}" * n)


@st.composite
def schema_texts(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[name].encode()
    damaged = draw(
        st.one_of(hostile(st.just(text), max_ops=3, max_random=64), deep.map(str.encode), deep_objects.map(str.encode))
    )
    return name, damaged.decode("utf-8", errors="replace")


# Found by this fuzz: the registry's Avro parser let RecursionError out (a 500 to a client
# registering it) for nesting past Python's stack, in json.loads and in avro's own parser.
@example(("avro", "[" * 5000 + "]" * 5000))
@example(("avro", '{"type":"array","items":' * 900 + '"string"' + "}" * 900))
@fuzz(200)
@given(schema_texts())
def test_damaged_schema_texts_are_accepted_or_refused_with_defined_errors(case: tuple[str, str]) -> None:
    """What the registry does with a text a client registers (kinds.py), then what a topic does
    with a text the registry accepted (its columns; the decoders never see an unregistered text)."""
    name, text = case
    with bounded():
        try:
            normalised = KINDS[SCHEMA_TYPES[name]].normalise(text, {})
        except StreamHouseError:
            return
        with contextlib.suppress(StreamHouseError):
            FORMATS[name].columns(normalised, "fz-value")
