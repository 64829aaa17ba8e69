"""Hypothesis strategies for Kafka request bodies, walked from the codec's own schemas
(engine/kafka/protocol/schema.py): any API key and version the codec implements, with values a
client could send (names of the fuzz topic and others, boundary integers, valid record batches
or random bytes in `records`). Shared by the frame fuzz and its long runs."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st

from streamhouse.kafka.protocol.api import APIS, encode_request
from streamhouse.kafka.protocol.schema import Api, Field
from streamhouse.kafka.record.compression import NAMES
from streamhouse.kafka.record.encode import encode_batch
from tests.strategies import record_batches

TOPIC = "fz"
NAMES_SEEN = st.sampled_from((TOPIC, "fz-other", "", "__consumer_offsets", "g", "fz.with.dots"))
INTS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
# Fields whose value is a time the request may wait: kept short so a wait is not a hang.
WAITS = ("timeout", "wait")


def _int(type_: str, name: str) -> st.SearchStrategy[int]:
    lo, hi = INTS[type_]
    if any(w in name for w in WAITS):
        return st.integers(-1, 200)
    edges = st.sampled_from(sorted({lo, -1, 0, 1, hi}))
    if "partition" in name or "offset" in name or "epoch" in name:
        # Mostly values that reach the handlers' real work (the fuzz topic's partitions and records).
        return st.one_of(st.integers(-2, 3), st.integers(-2, 3), edges)
    return st.one_of(st.integers(-2, 5), edges, st.integers(lo, hi))


_records = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.builds(
        lambda b, c: encode_batch(b, compression=c),
        record_batches(max_records=4, allow_big=False).filter(lambda b: b.num_rows > 0),
        st.sampled_from(sorted(NAMES)),
    ),
)


def _primitive(type_: str, name: str, nullable: bool) -> st.SearchStrategy[Any]:
    if type_ in INTS:
        base: st.SearchStrategy[Any] = _int(type_, name)
    elif type_ == "bool":
        base = st.booleans()
    elif type_ == "float64":
        base = st.floats(allow_nan=True)
    elif type_ == "uuid":
        base = st.one_of(st.just(uuid.UUID(int=0)), st.uuids())
    elif type_ == "string":
        base = st.one_of(NAMES_SEEN, st.text(max_size=12))
    elif type_ == "records":
        return _records
    else:
        base = st.binary(max_size=32)
    return st.one_of(st.none(), base) if nullable else base


def _value(f: Field, version: int) -> st.SearchStrategy[Any]:
    nullable = version in f.nullable
    if f.is_array:
        element = f.element
        item = _primitive(element, f.name, False) if element else _struct(f.fields, version)
        items = st.lists(item, max_size=3)
        return st.one_of(st.none(), items) if nullable else items
    if f.type == "{}":
        return _struct(f.fields, version)
    return _primitive(f.type, f.name, nullable)


def _struct(fields: tuple[Field, ...], version: int) -> st.SearchStrategy[dict[str, Any]]:
    present = [f for f in fields if version in f.versions]
    return st.fixed_dictionaries({f.name: _value(f, version) for f in present})


def api_versions() -> list[tuple[Api, int]]:
    return [(a, v) for a in sorted(APIS.values(), key=lambda a: a.key) for v in range(a.min_version, a.max_version + 1)]


@st.composite
def request_frames(draw: st.DrawFn) -> bytes:
    """One valid request frame (without its size prefix) of any implemented API and version."""
    api, version = draw(st.sampled_from(api_versions()))
    body = draw(_struct(api.request, version))
    client_id = draw(st.one_of(st.none(), st.just("fuzz"), st.text(max_size=8)))
    return encode_request(api, version, draw(st.integers(0, 2**31 - 1)), client_id, body)[4:]


def waits_long(value: Any, name: str = "", limit_ms: int = 1_000) -> bool:
    """Whether a decoded body asks to wait longer than `limit_ms` anywhere (a damaged frame may)."""
    if isinstance(value, dict):
        return any(waits_long(v, k, limit_ms) for k, v in value.items())
    if isinstance(value, list):
        return any(waits_long(v, name, limit_ms) for v in value)
    return isinstance(value, int) and any(w in name for w in WAITS) and value > limit_ms
