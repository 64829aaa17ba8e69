"""The Kafka request/response codec (engine/kafka/protocol) against a real third-party
implementation, kafka-python 3.x (whose messages are generated from Kafka's own JSON
schemas): every implemented API, every version we advertise, requests and responses,
byte for byte in both directions — flexible versions and tagged fields included. Then
the hostile side: truncated, oversized, garbage and fuzzed frames only ever raise our
typed KafkaProtocolError, and always terminate.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import random
import struct
import uuid
from typing import Any

import kafka.protocol
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.api_message import ApiMessage

from streamhouse.kafka.errors import FrameTooLargeError, KafkaProtocolError, UnsupportedVersionError
from streamhouse.kafka.protocol.api import (
    APIS,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    frame_size,
    lookup,
    unsupported_api_versions_response,
)
from streamhouse.kafka.protocol.codec import decode_struct, encode_struct
from streamhouse.kafka.protocol.messages_data import API_VERSIONS, FETCH, METADATA, PRODUCE
from streamhouse.kafka.protocol.primitives import Reader, Writer
from streamhouse.kafka.protocol.schema import Api, Field
from streamhouse.storage.errors import StreamHouseError


def _peer_classes() -> dict[tuple[int, str], Any]:
    found: dict[tuple[int, str], Any] = {}
    for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # optional SASL/GSSAPI helpers; the message modules import fine
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ApiMessage) and getattr(value, "_json", None):
                found[(value.API_KEY, value.type)] = value
    return found


PEER = _peer_classes()
CASES = [(api, v) for api in APIS.values() for v in range(api.min_version, api.max_version + 1)]
IDS = [f"{api.name}-v{v}" for api, v in CASES]

# ---------------------------------------------------------------- random values from our schema

_INT_RANGES = {"int8": 7, "int16": 15, "int32": 31, "int64": 63}


def _value(rng: random.Random, f: Field, version: int, depth: int = 0) -> Any:
    if version in f.nullable and rng.random() < 0.25:
        return None
    if f.is_array:
        n = rng.randint(0, 2 if depth < 2 else 1)
        if not f.element:
            return [_struct(rng, f.fields, version, depth + 1) for _ in range(n)]
        return [_primitive(rng, f.element) for _ in range(n)]
    if f.type == "{}":
        return _struct(rng, f.fields, version, depth + 1)
    return _primitive(rng, f.type)


def _primitive(rng: random.Random, type_: str) -> Any:
    if type_ in _INT_RANGES:
        bits = _INT_RANGES[type_]
        return rng.choice([0, -1, 1, (1 << bits) - 1, -(1 << bits), rng.randint(-(1 << bits), (1 << bits) - 1)])
    if type_ == "uint16":
        return rng.randint(0, 65535)
    if type_ == "bool":
        return rng.random() < 0.5
    if type_ == "string":
        return rng.choice(["", "t", "topic-ü", "x" * 200])
    if type_ in ("bytes", "records"):
        return rng.choice([b"", b"\x00\x01", bytes(range(256)) * 2])
    if type_ == "uuid":
        return uuid.UUID(int=rng.getrandbits(128))
    raise AssertionError(type_)


def _struct(rng: random.Random, fields: tuple[Field, ...], version: int, depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        if version in f.versions:
            out[f.name] = _value(rng, f, version, depth)
        else:
            out[f.name] = f.default()
    return out


def _plain(value: Any) -> Any:
    """Decoded values with memoryviews made bytes, so they compare with what was encoded."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _body(fields: tuple[Field, ...], value: dict[str, Any], version: int, flexible: bool) -> bytes:
    w = Writer()
    encode_struct(w, fields, value, version, flexible)
    return w.getvalue()


# ---------------------------------------------------------------- byte compatibility with kafka-python


@pytest.mark.parametrize(("api", "version"), CASES, ids=IDS)
@pytest.mark.parametrize("kind", ["request", "response"])
def test_bodies_match_kafka_python_byte_for_byte(api: Api, version: int, kind: str) -> None:
    peer = PEER[(api.key, kind)]
    fields = api.request if kind == "request" else api.response
    flexible = api.is_flexible(version)
    rng = random.Random(f"{api.name}/{version}/{kind}")
    for _ in range(12):
        value = _struct(rng, fields, version)
        if api is API_VERSIONS and kind == "response":
            value["error_code"] = 0  # an error is always in v0 format (test_api_versions_error_is_v0)
        ours = _body(fields, value, version, flexible)
        theirs = peer.decode(ours, version=version)
        theirs._header = None  # decode() skips __init__; some of their encode() overrides read it
        assert bytes(theirs.encode()) == ours  # they read ours exactly as written
        back = decode_struct(Reader(ours, api=api.name, version=version), fields, version, flexible)
        assert _plain(back) == value


@pytest.mark.parametrize(("api", "version"), CASES, ids=IDS)
def test_request_frames_match_kafka_python(api: Api, version: int) -> None:
    """Whole frames: size prefix, request header v1/v2 (client_id stays a classic string
    even in v2), body; and our server-side decoder reads their frame back."""
    peer = PEER[(api.key, "request")]
    value = _struct(random.Random(version), api.request, version)
    ours = encode_request(api, version, 1234, "client-ü", value)
    msg = peer.decode(_body(api.request, value, version, api.is_flexible(version)), version=version)
    msg.with_header(correlation_id=1234, client_id="client-ü")
    theirs = bytes(msg.encode(header=True, framed=True))
    assert theirs == ours
    request = decode_request(theirs[4:])
    assert (request.header.api_key, request.header.api_version) == (api.key, version)
    assert (request.header.correlation_id, request.header.client_id) == (1234, "client-ü")
    assert _plain(request.body) == value


@pytest.mark.parametrize(("api", "version"), CASES, ids=IDS)
def test_response_frames_round_trip(api: Api, version: int) -> None:
    """Response header v1 for flexible versions, v0 for ApiVersions always."""
    value = _struct(random.Random(-version), api.response, version)
    if api is API_VERSIONS:
        value["error_code"] = 0
    frame = encode_response(api, version, 99, value)
    assert struct.unpack(">i", frame[:4])[0] == len(frame) - 4
    body_len = len(_body(api.response, value, version, api.is_flexible(version)))
    header_len = len(frame) - 4 - body_len
    assert header_len == (5 if api.is_flexible(version) and api is not API_VERSIONS else 4)
    correlation_id, body = decode_response(api, version, frame[4:])
    assert correlation_id == 99
    assert _plain(body) == value


def test_tagged_fields_are_written_when_set_and_skipped_when_unknown() -> None:
    """A tagged field at its default costs one byte (the empty tag section); a set one is
    written and read back; an unknown tag from a newer peer is skipped by its size."""
    base = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": []}
    plain = _body(FETCH.response, base, 12, True)
    assert plain.endswith(b"\x00")
    partition = {"partition_index": 3, "records": None, "current_leader": {"leader_id": 7, "leader_epoch": 2}}
    body = dict(base, responses=[{"topic": "t", "partitions": [partition]}])
    data = _body(FETCH.response, body, 12, True)
    back = decode_struct(Reader(data), FETCH.response, 12, True)
    assert back["responses"][0]["partitions"][0]["current_leader"] == {"leader_id": 7, "leader_epoch": 2}
    assert back["responses"][0]["partitions"][0]["diverging_epoch"] == {"epoch": -1, "end_offset": -1}
    # An unknown tag 9 carrying 3 bytes, appended to the top-level tagged section.
    future = plain[:-1] + b"\x01\x09\x03abc"
    assert decode_struct(Reader(future), FETCH.response, 12, True)["responses"] == []


def test_fields_outside_a_version_decode_to_their_defaults() -> None:
    value = {"topics": [{"name": "t"}]}
    request = decode_request(encode_request(METADATA, 1, 1, None, value)[4:])
    assert request.body["allow_auto_topic_creation"] is True  # v4+ field, Kafka's default
    assert request.header.client_id is None
    produce = decode_request(encode_request(PRODUCE, 3, 1, "c", {"acks": -1, "topic_data": []})[4:])
    assert produce.body["transactional_id"] is None


# ---------------------------------------------------------------- hostile input


def _sample_frames() -> list[bytes]:
    frames = []
    for api, version in CASES:
        value = _struct(random.Random(f"frame/{api.name}/{version}"), api.request, version)
        frames.append(encode_request(api, version, 5, "c", value)[4:])
    return frames


SAMPLES = _sample_frames()


def test_every_truncation_of_every_request_is_a_typed_error() -> None:
    for frame in SAMPLES:
        for cut in range(len(frame)):
            with pytest.raises(KafkaProtocolError):
                decode_request(frame[:cut])


def test_trailing_bytes_after_a_whole_body_are_ignored_as_kafka_does() -> None:
    whole = decode_request(SAMPLES[0])
    padded = decode_request(SAMPLES[0] + b"\x01\x00\x00")
    assert padded.body == whole.body and (whole.trailing, padded.trailing) == (0, 3)


def test_unknown_api_and_unsupported_version() -> None:
    header = struct.pack(">hhih", 999, 0, 1, -1)
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(header)
    assert info.value.error_code == 35
    with pytest.raises(UnsupportedVersionError, match="Fetch v3"):
        decode_request(struct.pack(">hhih", FETCH.key, 3, 1, -1))
    with pytest.raises(UnsupportedVersionError):
        lookup(PRODUCE.key, PRODUCE.max_version + 1)


def test_unsupported_api_versions_is_answered_in_v0_format() -> None:
    frame = unsupported_api_versions_response(77)
    correlation_id, body = decode_response(API_VERSIONS, 0, frame[4:])
    assert correlation_id == 77
    assert body["error_code"] == 35
    keys = {entry["api_key"]: (entry["min_version"], entry["max_version"]) for entry in body["api_keys"]}
    assert keys == {a.key: (a.min_version, a.max_version) for a in APIS.values()}
    assert 68 not in keys  # ConsumerGroupHeartbeat (KIP-848) is not advertised


def test_api_versions_error_is_v0_whatever_version_was_asked() -> None:
    body = {"error_code": 35, "api_keys": [{"api_key": 0, "min_version": 3, "max_version": 11}], "throttle_time_ms": 5}
    frame = encode_response(API_VERSIONS, 3, 8, body)
    assert frame == encode_response(API_VERSIONS, 0, 8, body)
    theirs = PEER[(API_VERSIONS.key, "response")].decode(frame[8:], version=3)
    assert theirs.error_code == 35 and theirs.api_keys[0].max_version == 11
    assert decode_response(API_VERSIONS, 3, frame[4:])[1]["throttle_time_ms"] == 0


def test_frame_size_limit_is_checked_before_reading() -> None:
    assert frame_size(struct.pack(">i", 100), 100) == 100
    with pytest.raises(FrameTooLargeError):
        frame_size(struct.pack(">i", 101), 100)
    with pytest.raises(FrameTooLargeError):
        frame_size(struct.pack(">i", -5), 100)
    with pytest.raises(KafkaProtocolError):
        frame_size(b"\x00\x00", 100)


def test_huge_lengths_in_a_small_frame_allocate_nothing() -> None:
    header = struct.pack(">hhih", METADATA.key, 4, 1, -1)
    with pytest.raises(KafkaProtocolError, match="array of 2147483647 elements"):
        decode_request(header + struct.pack(">i", 2**31 - 1))
    with pytest.raises(KafkaProtocolError, match="needs 32767 bytes"):
        decode_request(header + struct.pack(">ih", 1, 32767) + b"ab")
    with pytest.raises(KafkaProtocolError, match="negative length"):
        decode_request(header + struct.pack(">ih", 1, -7))
    # Flexible: compact array count as a varint that never ends / exceeds 32 bits.
    flex = struct.pack(">hhih", METADATA.key, 12, 1, -1) + b"\x00"
    with pytest.raises(KafkaProtocolError, match="varint"):
        decode_request(flex + b"\xff" * 20)
    with pytest.raises(KafkaProtocolError, match="exceeds 32 bits"):
        decode_request(flex + b"\xff\xff\xff\xff\x7f")


def test_errors_name_api_version_field_and_position() -> None:
    header = struct.pack(">hhih", METADATA.key, 4, 1, -1)
    frame = header + struct.pack(">ih", 1, 2) + b"\xff\xfe" + b"\x01"
    with pytest.raises(KafkaProtocolError) as info:
        decode_request(frame)
    err = info.value
    assert isinstance(err, StreamHouseError)
    assert (err.api, err.version, err.field) == ("Metadata", 4, "topics[].name")
    assert err.position == len(header) + 6
    assert "not UTF-8" in str(err) and "Metadata v4" in str(err) and "byte" in str(err)


def test_null_in_a_non_nullable_field_is_refused() -> None:
    header = struct.pack(">hhih", METADATA.key, 0, 1, -1)
    with pytest.raises(KafkaProtocolError, match="null array"):
        decode_request(header + struct.pack(">i", -1))  # topics is nullable only from v1


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_typed_errors(data: bytes) -> None:
    with contextlib.suppress(KafkaProtocolError):
        decode_request(data)


@FUZZ
@given(st.sampled_from(SAMPLES), st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=6))
def test_mutated_requests_only_raise_typed_errors(frame: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(frame)
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    with contextlib.suppress(KafkaProtocolError):
        decode_request(bytes(data))


@FUZZ
@given(st.sampled_from(CASES), st.binary(max_size=256))
def test_random_response_bodies_only_raise_typed_errors(case: tuple[Api, int], data: bytes) -> None:
    api, version = case
    with contextlib.suppress(KafkaProtocolError):
        decode_response(api, version, data)
