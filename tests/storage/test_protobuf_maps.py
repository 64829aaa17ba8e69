"""Protobuf map fields as MAP columns (issue 13), checked against google.protobuf's parsing of
the same bytes: hypothesis writes map entries by hand, as no serialiser does, with keys given
twice (the last value wins), entries missing their key or their value (each reads as its
default, an empty message for a message value) and several key types; the decoder's MAP must
be what the generated class holds. Plus the column type and the declared SQL type."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from decimal import Decimal
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.schemas.protobuf_arrow import parse_proto
from streamhouse.storage.schemas.wire import buffers
from streamhouse.storage.values.protobuf_decode import protobuf_columns
from streamhouse.storage.values.protobuf_wire import decode_messages

PROTO = """syntax = "proto3";
package mp;
message M {
  map<string, int32> si = 1;
  map<int64, Inner> mi = 2;
  map<bool, string> bs = 3;
  map<uint64, double> ud = 4;
  message Inner { int32 a = 1; string b = 2; }
}
"""


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    out = tmp_path_factory.mktemp("proto")
    (out / "maps.proto").write_text(PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}", "maps.proto"], check=True
    )
    spec = importlib.util.spec_from_file_location("maps_pb2", out / "maps_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tag(number: int, wire: int) -> bytes:
    return _VarintBytes(number << 3 | wire)


def _len(number: int, body: bytes) -> bytes:
    return _tag(number, 2) + _VarintBytes(len(body)) + body


def _entry(number: int, key: bytes | None, value: bytes | None) -> bytes:
    """One map entry of field `number`; key and value are already encoded with their tags."""
    return _len(number, (key or b"") + (value or b""))


def _i64(v: int) -> bytes:
    return _VarintBytes(v & (2**64 - 1))


maybe = st.booleans()
small_text = st.sampled_from(["", "a", "b", "ü"])
entry_si = st.tuples(st.none() | small_text, st.none() | st.integers(-(2**31), 2**31 - 1))
entry_mi = st.tuples(
    st.none() | st.integers(-3, 3),
    st.none() | st.tuples(st.integers(-5, 5), small_text),
)
entry_bs = st.tuples(st.none() | st.booleans(), st.none() | small_text)
entry_ud = st.tuples(st.none() | st.sampled_from([0, 1, 2**64 - 1]), st.none() | st.floats(allow_nan=False))
record = st.tuples(
    st.lists(entry_si, max_size=4),
    st.lists(entry_mi, max_size=3),
    st.lists(entry_bs, max_size=3),
    st.lists(entry_ud, max_size=2),
)


def _encode(pb: ModuleType, r: tuple[list[Any], list[Any], list[Any], list[Any]]) -> bytes:
    si, mi, bs, ud = r
    out = b""
    for k, v in si:
        key = None if k is None else _len(1, k.encode())
        out += _entry(1, key, None if v is None else _tag(2, 0) + _i64(v))
    for k, v in mi:
        body = None if v is None else pb.M.Inner(a=v[0], b=v[1]).SerializeToString()
        out += _entry(2, None if k is None else _tag(1, 0) + _i64(k), None if body is None else _len(2, body))
    for k, v in bs:
        key = None if k is None else _tag(1, 0) + _VarintBytes(int(k))
        out += _entry(3, key, None if v is None else _len(2, v.encode()))
    for k, v in ud:
        value = None if v is None else _tag(2, 1) + np.float64(v).tobytes()
        out += _entry(4, None if k is None else _tag(1, 0) + _VarintBytes(k), value)
    return out


def _google(m: Any) -> dict[str, Any]:
    return {
        "si": dict(m.si),
        "mi": {k: {"a": v.a, "b": v.b} for k, v in m.mi.items()},
        "bs": dict(m.bs),
        "ud": {Decimal(k): v for k, v in m.ud.items()},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.none() | record, max_size=10))
def test_maps_match_google_protobuf(pb: ModuleType, rows: list[Any]) -> None:
    payloads = pa.array([None if r is None else _encode(pb, r) for r in rows], pa.binary())
    starts, ends, data = buffers(payloads)
    live = np.asarray(payloads.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    got = decode_messages(data, starts, ends, live, parse_proto(PROTO).at((0,)), "test")
    assert got.type.field("si").type == pa.map_(pa.string(), pa.int32())
    for decoded, payload in zip(got.to_pylist(), payloads.to_pylist(), strict=True):
        if payload is None:
            assert decoded is None
            continue
        pairs = {name: decoded[name] for name in ("si", "mi", "bs", "ud")}
        for name, entries in pairs.items():
            assert len({k for k, _ in entries}) == len(entries)  # one entry per key
            pairs[name] = dict(entries)
        assert pairs == _google(pb.M.FromString(payload))


def test_map_fields_are_declared_map_columns() -> None:
    columns = {c.name: c.sql_type for c in protobuf_columns(PROTO, "s").columns}
    assert columns["si"] == "MAP<STRING, INT>"
    assert columns["mi"] == "MAP<BIGINT, ROW<`a` INT, `b` STRING>>"
    assert columns["ud"] == "MAP<DECIMAL(20, 0), DOUBLE>"


def test_a_repeated_key_keeps_its_last_value_and_a_missing_value_its_default(pb: ModuleType) -> None:
    body = (
        _entry(1, _len(1, b"a"), _tag(2, 0) + _i64(1))
        + _entry(1, _len(1, b"b"), _tag(2, 0) + _i64(2))
        + _entry(1, _len(1, b"a"), _tag(2, 0) + _i64(3))
        + _entry(1, None, None)
        + _entry(2, _tag(1, 0) + _i64(7), None)
    )
    payloads = pa.array([body], pa.binary())
    starts, ends, data = buffers(payloads)
    got = decode_messages(data, starts, ends, np.ones(1, bool), parse_proto(PROTO).at((0,)), "test").to_pylist()[0]
    assert got["si"] == [("b", 2), ("a", 3), ("", 0)]
    assert got["mi"] == [(7, {"a": 0, "b": ""})]
    assert dict(pb.M.FromString(body).si) == {"a": 3, "b": 2, "": 0}
