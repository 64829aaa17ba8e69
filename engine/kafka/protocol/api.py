"""The registry of implemented APIs, and whole frames: header + body, with size prefix.

A server reads the 4-byte size, refuses it if over its limit (`frame_size`), reads that
many bytes and calls `decode_request`; it answers with `encode_response`. The client
side (`encode_request`, `decode_response`) exists for tests and tools.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from streamhouse.kafka.errors import FrameTooLargeError, KafkaProtocolError, UnsupportedVersionError
from streamhouse.kafka.protocol.codec import Struct, decode_struct, encode_struct
from streamhouse.kafka.protocol.messages_acl import ACL_APIS
from streamhouse.kafka.protocol.messages_admin import ADMIN_APIS
from streamhouse.kafka.protocol.messages_data import API_VERSIONS, DATA_APIS
from streamhouse.kafka.protocol.messages_groups import GROUP_APIS
from streamhouse.kafka.protocol.messages_sasl import SASL_APIS
from streamhouse.kafka.protocol.messages_txn import TXN_APIS
from streamhouse.kafka.protocol.primitives import Buffer, Reader, Writer
from streamhouse.kafka.protocol.schema import Api

APIS: Mapping[int, Api] = {a.key: a for a in (*DATA_APIS, *GROUP_APIS, *ADMIN_APIS, *ACL_APIS, *SASL_APIS, *TXN_APIS)}
_SIZE = struct.Struct(">i")
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes


@dataclass(frozen=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(frozen=True)
class Request:
    header: RequestHeader
    api: Api
    body: Struct
    trailing: int = 0  # bytes after the body, ignored (see decode_request)


def lookup(api_key: int, version: int) -> Api:
    """The API for a key and version, or UnsupportedVersionError (Kafka answers
    UNSUPPORTED_VERSION; for ApiVersions itself, in the v0 response format)."""
    api = APIS.get(api_key)
    if api is None:
        raise UnsupportedVersionError(f"API key {api_key} is not implemented", api=f"api key {api_key}")
    if not api.supports(version):
        raise UnsupportedVersionError(
            f"version {version} outside the implemented {api.min_version}-{api.max_version}",
            api=api.name,
            version=version,
        )
    return api


def api_version_ranges(keys: Collection[int] | None = None) -> list[dict[str, int]]:
    """The `api_keys` entries of an ApiVersions response: the codec's APIs, or only `keys`
    (what a server actually answers: advertise only what is implemented)."""
    return [
        {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
        for a in sorted(APIS.values(), key=lambda a: a.key)
        if keys is None or a.key in keys
    ]


def frame_size(prefix: Buffer, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> int:
    """The size in a 4-byte frame prefix, refused before anything is read if negative or
    beyond `max_bytes`."""
    if len(prefix) != 4:
        raise KafkaProtocolError("a frame prefix is 4 bytes", field="size", position=0)
    (size,) = _SIZE.unpack(prefix)
    if size < 0 or size > max_bytes:
        raise FrameTooLargeError(f"frame of {size} bytes (limit {max_bytes})", field="size", position=0)
    return int(size)


def decode_request_header(frame: Buffer) -> tuple[RequestHeader, int]:
    """Header fields common to v1 and v2 (every implemented API uses one of them) and the
    position after them; the v2 tagged section is read by `decode_request`."""
    r = Reader(frame, api="RequestHeader")
    key = r.int16("request_api_key")
    version = r.int16("request_api_version")
    correlation_id = r.int32("correlation_id")
    # client_id stays a classic nullable string even in header v2 (a Kafka quirk).
    client_id = r.string("client_id", compact=False)
    return RequestHeader(key, version, correlation_id, client_id), r.pos


def decode_request(frame: Buffer) -> Request:
    """One request frame (without its size prefix) → header, API and body.

    Raises KafkaProtocolError (or its UnsupportedVersionError) on anything malformed. Bytes
    left over after a whole body are ignored, as a Kafka broker ignores them (its generated
    readers never check what remains): librdkafka 2.x sends three extra bytes after an
    all-topics Metadata v12 request, and Kafka answers it. The frame itself is bounded, so
    nothing unbounded is kept; `Request.trailing` says how many there were."""
    header, pos = decode_request_header(frame)
    api = lookup(header.api_key, header.api_version)
    version = header.api_version
    flexible = api.is_flexible(version)
    r = Reader(frame, api=api.name, version=version, start=pos)
    if flexible:
        decode_struct(r, (), version, True, "header.")
    body = decode_struct(r, api.request, version, flexible)
    return Request(header, api, body, r.remaining)


def _framed(w: Writer) -> bytes:
    data = w.getvalue()
    return _SIZE.pack(len(data)) + data


def encode_response(api: Api, version: int, correlation_id: int, body: Mapping[str, Any]) -> bytes:
    """A size-prefixed response frame. Flexible versions use response header v1 (with a
    tagged section) except ApiVersions, whose response header is always v0 so a client
    can read it before it knows what we support; an ApiVersions error is all v0."""
    if api.key == API_VERSIONS.key and body.get("error_code", 0) != 0:
        version = 0  # clients read an ApiVersions error in v0 format, whatever they asked for
    flexible = api.is_flexible(version)
    w = Writer()
    w.int32(correlation_id)
    if flexible and api.key != API_VERSIONS.key:
        w.uvarint(0)
    encode_struct(w, api.response, body, version, flexible)
    return _framed(w)


def encode_request(
    api: Api, version: int, correlation_id: int, client_id: str | None, body: Mapping[str, Any]
) -> bytes:
    """A size-prefixed request frame (header v1, or v2 for flexible versions)."""
    flexible = api.is_flexible(version)
    w = Writer()
    w.int16(api.key)
    w.int16(version)
    w.int32(correlation_id)
    w.string(client_id, compact=False)
    if flexible:
        w.uvarint(0)
    encode_struct(w, api.request, body, version, flexible)
    return _framed(w)


def decode_response(api: Api, version: int, frame: Buffer) -> tuple[int, Struct]:
    """A response frame (without its size prefix) → correlation id and body."""
    r = Reader(frame, api=api.name, version=version)
    correlation_id = r.int32("correlation_id")
    if api.key == API_VERSIONS.key and r.remaining >= 2 and r.int16("error_code") != 0:
        version = 0  # the v0 error format (see encode_response)
    r.pos = 4
    flexible = api.is_flexible(version)
    if flexible and api.key != API_VERSIONS.key:
        decode_struct(r, (), version, True, "header.")
    body = decode_struct(r, api.response, version, flexible)
    if r.remaining:
        raise r.error(f"{r.remaining} bytes after the end of the response", "<end>")
    return correlation_id, body


def unsupported_api_versions_response(correlation_id: int, keys: Collection[int] | None = None) -> bytes:
    """The answer to an ApiVersions request of a version we do not know: v0 format,
    UNSUPPORTED_VERSION, with our ranges so the client retries with one we do."""
    from streamhouse.kafka.errors import UNSUPPORTED_VERSION

    body = {"error_code": UNSUPPORTED_VERSION, "api_keys": api_version_ranges(keys)}
    return encode_response(API_VERSIONS, 0, correlation_id, body)
