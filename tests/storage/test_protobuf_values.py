"""Protobuf values decoded into Arrow by the vectorised wavefront decoder (issue 13), checked
against google.protobuf's own parsing of the same bytes: hypothesis draws batches of messages of
one .proto covering every scalar kind, enums, nested and repeated messages, packed and unpacked
repeated scalars, maps, oneofs and proto3 optional fields; the decoder must give what the
generated class reads. Then the topic plumbing: framed values of two schema ids (a field added)
decoded into the declared columns (the older rows read the new column as NULL), a bad record
named, and what the mapping refuses."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.schemas.errors import SchemaValidationError, WireFormatError
from streamhouse.storage.schemas.protobuf_arrow import UnsupportedProtobufSchemaError, parse_proto
from streamhouse.storage.schemas.wire import buffers
from streamhouse.storage.values.protobuf_decode import ProtobufValueError, decode_protobuf_values, protobuf_columns
from streamhouse.storage.values.protobuf_wire import decode_messages

PROTO = """syntax = "proto3";
package demo;
message Click {
  string user = 1;
  int64 n = 2;
  optional double score = 3;
  repeated int32 tags = 4;
  Inner inner = 5;
  Color color = 6;
  repeated Inner items = 7;
  map<string, int64> counts = 8;
  sint32 delta = 9;
  uint64 big = 10;
  fixed32 f32 = 11;
  sfixed64 sf64 = 12;
  float ratio = 13;
  bool ok = 14;
  bytes blob = 15;
  repeated string names = 16;
  int32 small = 17;
  oneof choice { string a = 18; int64 b = 19; }
  repeated double ds = 20;
  repeated sint64 zs = 21 [packed = false];
  uint32 u32 = 22;
  sfixed32 sf32 = 23;
  fixed64 f64 = 24;
  sint64 s64 = 25;
  message Inner { string k = 1; int32 v = 2; repeated Color cs = 3; }
  enum Color { RED = 0; GREEN = 1; BLUE = 2; }
}
"""
# v1 of an evolving subject; v2 adds `country`.
V1 = 'syntax = "proto3";\nmessage Visit {\n  string page = 1;\n  int64 ms = 2;\n}\n'
V2 = 'syntax = "proto3";\nmessage Visit {\n  string page = 1;\n  int64 ms = 2;\n  string country = 3;\n}\n'


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The .proto compiled by protoc (grpc_tools) into a module of generated classes."""
    out = tmp_path_factory.mktemp("proto")
    (out / "click.proto").write_text(PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}", "click.proto"], check=True
    )
    spec = importlib.util.spec_from_file_location("click_pb2", out / "click_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
f32 = st.floats(width=32, allow_nan=False)
f64 = st.floats(allow_nan=False)
text = st.text(max_size=8)
color = st.integers(0, 2)
inner = st.fixed_dictionaries({"k": text, "v": i32, "cs": st.lists(color, max_size=3)})
message = st.fixed_dictionaries(
    {
        "user": text,
        "n": i64,
        "tags": st.lists(i32, max_size=4),
        "color": color,
        "items": st.lists(inner, max_size=3),
        "counts": st.dictionaries(text, i64, max_size=3),
        "delta": i32,
        "big": u64,
        "f32": u32,
        "sf64": i64,
        "ratio": f32,
        "ok": st.booleans(),
        "blob": st.binary(max_size=6),
        "names": st.lists(text, max_size=3),
        "small": i32,
        "ds": st.lists(f64, max_size=3),
        "zs": st.lists(i64, max_size=3),
        "u32": u32,
        "sf32": i32,
        "f64": u64,
        "s64": i64,
    },
    optional={"score": f64, "inner": inner, "a": text, "b": i64},
)


def _google(m: Any) -> dict[str, Any]:
    """What the generated class reads, in the decoder's Arrow terms."""
    colors = type(m).Color.Name
    out: dict[str, Any] = {}
    for field in m.DESCRIPTOR.fields:
        name = field.name
        value = getattr(m, name)
        if name == "counts":
            out[name] = dict(value)
        elif name == "items":
            out[name] = [{"k": i.k, "v": i.v, "cs": [colors(c) for c in i.cs]} for i in value]
        elif name == "inner":
            out[name] = {"k": value.k, "v": value.v, "cs": [colors(c) for c in value.cs]} if m.HasField(name) else None
        elif name in ("score", "a", "b"):
            out[name] = value if m.HasField(name) else None
        elif name == "color":
            out[name] = colors(value)
        elif name in ("big", "f64"):
            out[name] = Decimal(value)
        elif field.is_repeated:
            out[name] = list(value)
        else:
            out[name] = value
    return out


def _fields_reversed(m: Any) -> bytes:
    """The message's fields written last to first (valid Protobuf; no serialiser does it), so the
    decoder's general path, not its in-order fast path, reads them."""
    parts = []
    for fd, value in m.ListFields():
        single = type(m)()
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            getattr(single, fd.name).update(dict(value))
        elif fd.is_repeated:
            getattr(single, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(single, fd.name).CopyFrom(value)
        else:
            setattr(single, fd.name, value)
        parts.append(single.SerializeToString())
    return b"".join(reversed(parts))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.none(), message), max_size=12), st.booleans())
def test_decoder_matches_google_protobuf(pb: ModuleType, rows: list[dict[str, Any] | None], shuffled: bool) -> None:
    messages = [None if r is None else pb.Click(**r) for r in rows]
    write = _fields_reversed if shuffled else (lambda m: m.SerializeToString())
    payloads = pa.array([None if m is None else write(m) for m in messages], pa.binary())
    messages = [None if m is None else pb.Click.FromString(write(m)) for m in messages]
    starts, ends, data = buffers(payloads)
    live = np.asarray(payloads.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    got = decode_messages(data, starts, ends, live, parse_proto(PROTO).at((0,)), "test").to_pylist()
    for decoded, m in zip(got, messages, strict=True):
        if m is None:
            assert decoded is None
            continue
        assert decoded is not None
        decoded["counts"] = dict(decoded["counts"])  # a MAP reads as (key, value) pairs
        assert decoded == _google(m)


def _framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + b"\x00" + body  # message indexes [0]


def test_two_schema_ids_line_up_and_old_rows_read_the_new_column_as_null(tmp_path: Path) -> None:
    v1 = bytes([0x0A, 1]) + b"a" + bytes([0x10, 5])  # page="a", ms=5
    v2 = bytes([0x0A, 1]) + b"b" + bytes([0x10, 6, 0x1A, 2]) + b"nl"
    schema = protobuf_columns(V2, "visits-value")
    declared = [(c.name, c.sql_type) for c in schema.columns]
    assert declared == [("page", "STRING"), ("ms", "BIGINT"), ("country", "STRING")]
    values = pa.array([_framed(1, v1), _framed(2, v2), None, _framed(1, b"")], pa.binary())
    table = decode_protobuf_values(values, schema, {1: V1, 2: V2})
    assert table.column_names == ["v.page", "v.ms", "v.country"]
    assert table.to_pylist() == [
        {"v.page": "a", "v.ms": 5, "v.country": None},
        {"v.page": "b", "v.ms": 6, "v.country": "nl"},
        {"v.page": None, "v.ms": None, "v.country": None},
        {"v.page": "", "v.ms": 0, "v.country": None},  # proto3: absent scalars are their zero value
    ]


def test_a_bad_record_is_named() -> None:
    schema = protobuf_columns(V1, "visits-value")
    good = _framed(1, bytes([0x0A, 1]) + b"a")
    truncated = _framed(1, bytes([0x0A, 9]) + b"ab")  # a string of 9 bytes with 2 left
    with pytest.raises(ProtobufValueError, match="record 2") as info:
        decode_protobuf_values(pa.array([good, good, truncated], pa.binary()), schema, {1: V1})
    assert info.value.index == 2
    with pytest.raises(ProtobufValueError, match="record 1"):
        decode_protobuf_values(pa.array([good, b"\x01\x00\x00\x00\x01\x00"], pa.binary()), schema, {1: V1})
    with pytest.raises(SchemaValidationError, match="schema id 7 is not registered"):
        decode_protobuf_values(pa.array([_framed(7, b"")], pa.binary()), schema, {1: V1})


def test_what_the_mapping_refuses() -> None:
    with pytest.raises(UnsupportedProtobufSchemaError, match="recursive"):
        parse_proto('syntax = "proto3"; message Tree { repeated Tree kids = 1; }')
    with pytest.raises(UnsupportedProtobufSchemaError, match=r"other\.Thing"):
        parse_proto('syntax = "proto3"; import "other.proto"; message A { other.Thing t = 1; }')
    stamp = parse_proto(
        'syntax = "proto3"; import "google/protobuf/timestamp.proto"; message A { google.protobuf.Timestamp at = 1; }'
    )
    assert stamp.at((0,)).arrow_type == pa.struct([pa.field("at", pa.timestamp("ms", tz="UTC"))])
    assert [c.sql_type for c in protobuf_columns(PROTO, "s").columns][:3] == ["STRING", "BIGINT", "DOUBLE"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=6))
def test_garbage_is_refused_or_decoded_never_a_crash(pb: ModuleType, blobs: list[bytes]) -> None:
    """Any bytes: either a typed error naming a record that google.protobuf cannot parse either,
    or a decode; never an IndexError or a wrong row count."""
    payloads = pa.array(blobs, pa.binary())
    starts, ends, data = buffers(payloads)
    live = np.ones(len(blobs), dtype=bool)
    try:
        got = decode_messages(data, starts, ends, live, parse_proto(PROTO).at((0,)), "fuzz")
    except WireFormatError as exc:
        with pytest.raises(DecodeError):
            pb.Click.FromString(blobs[exc.index])
        return
    assert len(got) == len(blobs)
