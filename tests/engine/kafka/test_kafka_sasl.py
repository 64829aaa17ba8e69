"""Kafka SASL on the listener (engine/kafka/sasl/), with real clients: confluent-kafka
(librdkafka) over PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, kafka-python and aiokafka. No
credentials, a wrong secret, a revoked key and an expired key are refused (the metric counts
each reason under front "kafka") and write nothing; only the right key produces and consumes.

One embedded engine per module (its SQLite store holds the keys) with a Kafka listener that has
an Authenticator; raw sockets with the project's codec check the protocol's own edges:
ApiVersions advertising, requests before the login, handshake v0 bare tokens, limits, and
session lifetimes with KIP-368 re-authentication.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

import streamhouse
from streamhouse.auth import Authenticator
from streamhouse.auth.admin import AuthAdmin, CreatedKey
from streamhouse.client.client import Client
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.kafka.protocol.api import Api, decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import API_VERSIONS, METADATA
from streamhouse.kafka.protocol.messages_sasl import SASL_AUTHENTICATE, SASL_HANDSHAKE
from streamhouse.kafka.server import KafkaServer

TOPIC = "secured"


@dataclass
class Secured:
    sh: Client
    transport: EmbeddedTransport
    server: KafkaServer
    registry: CollectorRegistry
    good: CreatedKey

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def run(self, coro: Any) -> Any:
        return self.transport._run(coro)  # the engine's own loop (tests only)

    def key(self, **kw: Any) -> CreatedKey:
        return self.run(AuthAdmin(self.transport.service.metadata).create_key("acme", "alice", admin=True, **kw))  # type: ignore[no-any-return]

    def failures(self, reason: str) -> float:
        labels = {"front": "kafka", "reason": reason}
        return self.registry.get_sample_value("streamhouse_auth_failures_total", labels) or 0.0

    def stored(self) -> list[bytes]:
        return list(self.sh.read(TOPIC).column("value").to_pylist())


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    sh = streamhouse.open(str(tmp_path_factory.mktemp("sasl") / "data"))
    transport = sh.transport
    assert isinstance(transport, EmbeddedTransport)
    registry = CollectorRegistry()
    authenticator = Authenticator(transport.service.metadata, registry=registry)
    server = KafkaServer(transport.service, port=0, authenticator=authenticator)
    transport._run(server.start())
    transport.kafka_servers.append(server)  # sh.close() stops it first
    try:
        transport._run(AuthAdmin(transport.service.metadata).create_org("acme"))
        sh.create_topic(TOPIC, 1)
        good = transport._run(AuthAdmin(transport.service.metadata).create_key("acme", "alice", admin=True))
        yield Secured(sh, transport, server, registry, good)
    finally:
        sh.close()


def _sasl(mechanism: str, key: CreatedKey | None = None, secret: str | None = None) -> dict[str, Any]:
    if key is None:
        return {"security.protocol": "PLAINTEXT"}
    key_id, real = key.token.split(".")
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism, "sasl.username": key_id,
            "sasl.password": secret or real}  # fmt: skip


def _produce_refused(secured: Secured, config: dict[str, Any], value: bytes) -> list[str]:
    """Produces with `config` until librdkafka reports the refusal; returns its errors."""
    errors: list[str] = []
    producer = Producer(
        {"bootstrap.servers": secured.bootstrap, "message.timeout.ms": 10_000, "reconnect.backoff.ms": 200,
         "error_cb": lambda err: errors.append(err.str()), **config}
    )  # fmt: skip
    producer.produce(TOPIC, value=value)
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        producer.poll(0.05)
    producer.purge()
    producer.flush(0)
    return errors


def _produce_and_consume(secured: Secured, config: dict[str, Any], values: list[bytes]) -> list[bytes]:
    producer = Producer({"bootstrap.servers": secured.bootstrap, "acks": "all", **config})
    for v in values:
        producer.produce(TOPIC, value=v)
    assert producer.flush(15) == 0
    start = len(secured.stored()) - len(values)
    consumer = Consumer({"bootstrap.servers": secured.bootstrap, "group.id": "g-" + config["sasl.mechanism"], **config})
    consumer.assign([TopicPartition(TOPIC, 0, start)])
    got: list[bytes] = []
    deadline = time.monotonic() + 15
    while len(got) < len(values) and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_librdkafka_only_the_right_key_produces_and_consumes(secured: Secured, mechanism: str) -> None:
    revoked = secured.key()
    secured.run(AuthAdmin(secured.transport.service.metadata).revoke(revoked.key.key_id))
    expired = secured.key(expires_in_ms=1)
    time.sleep(0.01)
    before = secured.stored()
    counts = {r: secured.failures(r) for r in ("wrong_secret", "revoked", "expired", "unknown_key")}
    refusals = {
        "wrong_secret": _sasl(mechanism, secured.good, secret="x" * 43),
        "revoked": _sasl(mechanism, revoked),
        "expired": _sasl(mechanism, expired),
        "unknown_key": dict(_sasl(mechanism, secured.good), **{"sasl.username": "shk_0123456789abcdef"}),
    }
    messages = set()
    for reason, config in refusals.items():
        errors = _produce_refused(secured, config, f"{mechanism}-{reason}".encode())
        assert any("SASL authentication error" in e for e in errors), errors
        # One message for every reason: a client cannot tell an unknown key id from a wrong secret.
        messages.update(e.split("SASL authentication error: ")[1].split(" (after")[0] for e in errors if "SASL" in e)
        assert secured.failures(reason) > counts[reason], reason
    assert messages == {"invalid credential: the API key is unknown, wrong, revoked or expired"}
    assert secured.stored() == before  # nothing a refused client sent was written
    values = [f"{mechanism}-{i}".encode() for i in range(5)]
    assert _produce_and_consume(secured, _sasl(mechanism, secured.good), values) == values


def test_a_client_without_credentials_is_closed_and_changes_nothing(secured: Secured) -> None:
    before, topics, missing = secured.stored(), secured.sh.topics(), secured.failures("missing")
    errors = _produce_refused(secured, _sasl("PLAIN"), b"anonymous")
    assert errors  # librdkafka sees the connection closed after its Metadata request
    assert secured.stored() == before and secured.sh.topics() == topics
    assert secured.failures("missing") > missing


def test_kafka_python_and_aiokafka_log_in(secured: Secured, caplog: pytest.LogCaptureFixture) -> None:
    key_id, secret = secured.good.token.split(".")
    producer = KafkaProducer(
        bootstrap_servers=secured.bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=key_id, sasl_plain_password=secret,
    )  # fmt: skip
    producer.send(TOPIC, b"kafka-python").get(timeout=15)
    producer.close()
    with caplog.at_level(logging.WARNING, "kafka"), pytest.raises(KafkaTimeoutError, match="bootstrap"):
        KafkaProducer(
            bootstrap_servers=secured.bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
            sasl_plain_username=key_id, sasl_plain_password="y" * 43, bootstrap_timeout_ms=1500,
        )  # fmt: skip
    assert "SaslAuthenticationFailedError: invalid credential" in caplog.text  # retried, refused each time

    async def aio() -> list[bytes]:
        auth = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": key_id, "sasl_plain_password": secret}  # fmt: skip
        producer = AIOKafkaProducer(bootstrap_servers=secured.bootstrap, **auth)
        await producer.start()
        await producer.send_and_wait(TOPIC, b"aiokafka")
        await producer.stop()
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=secured.bootstrap, auto_offset_reset="earliest", **auth)
        await consumer.start()
        got: list[bytes] = []
        async with asyncio.timeout(15):
            while b"aiokafka" not in got:
                batch = await consumer.getmany(timeout_ms=500)
                got += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        await consumer.stop()
        return got

    got = asyncio.run(aio())
    assert b"kafka-python" in got and b"aiokafka" in got


# -- raw protocol --------------------------------------------------------------------------------
def _read_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _call(s: socket.socket, api: Api, version: int, body: dict[str, Any], correlation_id: int = 1) -> dict[str, Any]:
    s.sendall(encode_request(api, version, correlation_id, "raw", body))
    (size,) = struct.unpack(">i", _read_exactly(s, 4))
    cid, answer = decode_response(api, version, _read_exactly(s, size))
    assert cid == correlation_id
    return dict(answer)


def _closed(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def _connect(secured: Secured) -> socket.socket:
    return socket.create_connection(("127.0.0.1", secured.server.port), timeout=10)


def _plain_login(s: socket.socket, key: CreatedKey, version: int = 1) -> dict[str, Any]:
    key_id, secret = key.token.split(".")
    assert _call(s, SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})["error_code"] == 0
    return _call(s, SASL_AUTHENTICATE, version, {"auth_bytes": f"\x00{key_id}\x00{secret}".encode()}, 2)


def _metadata(s: socket.socket, correlation_id: int = 3) -> dict[str, Any]:
    return _call(s, METADATA, 9, {"topics": [{"name": TOPIC}]}, correlation_id)


def test_api_versions_advertise_sasl_and_nothing_else_passes_before_the_login(secured: Secured) -> None:
    with _connect(secured) as s:
        keys = {k["api_key"]: k for k in _call(s, API_VERSIONS, 3, {})["api_keys"]}
        assert (keys[17]["min_version"], keys[17]["max_version"]) == (0, 1)
        assert (keys[36]["min_version"], keys[36]["max_version"]) == (0, 2)
        s.sendall(encode_request(METADATA, 9, 2, "raw", {"topics": None}))
        assert _closed(s)  # Kafka's answer to a request before the login: the connection closes
    with _connect(secured) as s:
        answer = _call(s, SASL_HANDSHAKE, 1, {"mechanism": "GSSAPI"})
        assert answer["error_code"] == 33 and answer["mechanisms"] == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        assert _closed(s)
    with _connect(secured) as s:  # SaslAuthenticate without a handshake
        s.sendall(encode_request(SASL_AUTHENTICATE, 1, 1, "raw", {"auth_bytes": b"\x00a\x00b"}))
        assert _closed(s)
    with _connect(secured) as s:  # one failed attempt per connection
        key_id = secured.good.key.key_id
        answer = _call(s, SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})
        answer = _call(s, SASL_AUTHENTICATE, 2, {"auth_bytes": f"\x00{key_id}\x00{'z' * 43}".encode()}, 2)
        assert answer["error_code"] == 58 and "invalid credential" in answer["error_message"]
        assert _closed(s)
    with _connect(secured) as s:  # the right key: Metadata is answered
        answer = _plain_login(s, secured.good, version=2)
        assert answer["error_code"] == 0 and answer["session_lifetime_ms"] == 0
        assert _metadata(s)["topics"][0]["name"] == TOPIC


def test_without_auth_the_sasl_apis_are_neither_advertised_nor_served(tmp_path: Path) -> None:
    with streamhouse.open(str(tmp_path / "open"), kafka_port=0) as sh:
        assert sh.kafka_bootstrap is not None
        host, port = sh.kafka_bootstrap.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            keys = {k["api_key"] for k in _call(s, API_VERSIONS, 3, {})["api_keys"]}
            assert 17 not in keys and 36 not in keys and 3 in keys
            assert _metadata(s)["topics"][0]["name"] == TOPIC  # no login asked for
            s.sendall(encode_request(SASL_HANDSHAKE, 1, 4, "raw", {"mechanism": "PLAIN"}))
            assert _closed(s)


def test_handshake_v0_carries_bare_tokens(secured: Secured) -> None:
    key_id, secret = secured.good.token.split(".")
    with _connect(secured) as s:
        assert _call(s, SASL_HANDSHAKE, 0, {"mechanism": "PLAIN"})["error_code"] == 0
        token = f"\x00{key_id}\x00{secret}".encode()
        s.sendall(struct.pack(">i", len(token)) + token)
        assert _read_exactly(s, 4) == b"\x00\x00\x00\x00"  # PLAIN's empty reply, bare
        assert _metadata(s)["topics"][0]["error_code"] == 0
    with _connect(secured) as s:  # a refusal in v0 has no answer: the connection closes
        assert _call(s, SASL_HANDSHAKE, 0, {"mechanism": "PLAIN"})["error_code"] == 0
        token = f"\x00{key_id}\x00{'q' * 43}".encode()
        s.sendall(struct.pack(">i", len(token)) + token)
        assert _closed(s)


def test_limits_and_malformed_frames_before_the_login_close_only_that_connection(secured: Secured) -> None:
    cases = [
        struct.pack(">i", 65 * 1024) + b"\x00" * 16,  # a frame over the 64 KiB pre-login limit, refused unread
        struct.pack(">i", 7) + b"\x00\x11\x00\x01\x00\x00\x00",  # a SaslHandshake cut in its header
        encode_request(SASL_HANDSHAKE, 1, 1, None, {"mechanism": "PLAIN"})
        + encode_request(SASL_AUTHENTICATE, 2, 2, None, {"auth_bytes": b"\x01" * 40_000}),  # oversize PLAIN token
        encode_request(SASL_HANDSHAKE, 1, 1, None, {"mechanism": "SCRAM-SHA-256"})
        + encode_request(SASL_AUTHENTICATE, 2, 2, None, {"auth_bytes": b"n,,n=\xff\x00,r="}),  # malformed SCRAM
        encode_request(SASL_HANDSHAKE, 1, 1, None, {"mechanism": "PLAIN"}) * 2,  # a second handshake
        encode_request(API_VERSIONS, 0, 1, None, {}) * 9,  # over the pre-login request limit
    ]
    for data in cases:
        with _connect(secured) as s:
            s.sendall(data)
            s.settimeout(5)
            while s.recv(65536):  # answers before the refusal may come first, then the close
                pass
    with _connect(secured) as s:  # the listener still serves a proper login
        assert _plain_login(s, secured.good)["error_code"] == 0
    assert secured.server.sasl is not None
    secured.server.sasl.pre_auth_timeout_s = 0.3
    try:
        with _connect(secured) as s, _connect(secured) as t:  # a connection that never logs in is closed
            _call(s, API_VERSIONS, 3, {})
            assert _plain_login(t, secured.good)["error_code"] == 0
            start = time.monotonic()
            assert _closed(s) and time.monotonic() - start < 2
            time.sleep(0.3)
            assert _metadata(t)["topics"][0]["error_code"] == 0  # a logged-in one has no such limit
    finally:
        secured.server.sasl.pre_auth_timeout_s = 30.0


def test_sessions_end_with_their_lifetime_unless_re_authenticated(secured: Secured) -> None:
    assert secured.server.sasl is not None
    secured.server.sasl.max_reauth_ms = 1000
    try:
        with _connect(secured) as s, _connect(secured) as t:
            assert 0 < _plain_login(s, secured.good)["session_lifetime_ms"] <= 1000
            assert _plain_login(t, secured.good)["session_lifetime_ms"] <= 1000
            time.sleep(0.6)
            assert _plain_login(t, secured.good)["error_code"] == 0  # re-authenticated (KIP-368): a new session
            time.sleep(0.6)
            assert _metadata(t)["topics"][0]["error_code"] == 0
            s.sendall(encode_request(METADATA, 9, 3, "raw", {"topics": None}))
            assert _closed(s)  # its session ended
        revoked = secured.key()
        with _connect(secured) as s:
            assert _plain_login(s, revoked)["error_code"] == 0
            secured.run(AuthAdmin(secured.transport.service.metadata).revoke(revoked.key.key_id))
            secured.run(asyncio.sleep(0))
            secured.server.sasl.authenticator.forget(revoked.key.key_id)  # as a revoke through this agent does
            answer = _plain_login(s, revoked)
            assert answer["error_code"] == 58  # re-authentication with a revoked key is refused
            assert _closed(s)
    finally:
        secured.server.sasl.max_reauth_ms = 0
    expiring = secured.key(expires_in_ms=1500)
    with _connect(secured) as s:
        assert 0 < _plain_login(s, expiring)["session_lifetime_ms"] <= 1500  # the key's expiry bounds it


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_librdkafka_re_authenticates_on_its_connection_without_losing_a_record(secured: Secured) -> None:
    """Sessions of 500 ms over a 2 s producer run: librdkafka re-authenticates (KIP-368) on the
    same connection before each ends, and every record is written once."""
    assert secured.server.sasl is not None
    secured.server.sasl.max_reauth_ms = 500
    lines = _Lines()
    logger = logging.getLogger("test-sasl-librdkafka")
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    try:
        producer = Producer({"bootstrap.servers": secured.bootstrap, "acks": "all", "linger.ms": 5,
                             "debug": "security,broker", "logger": logger,
                             **_sasl("SCRAM-SHA-256", secured.good)})  # fmt: skip
        values = [b"reauth-%d" % i for i in range(40)]
        for v in values:  # 2 s: four sessions' worth
            producer.produce(TOPIC, value=v)
            producer.poll(0)
            time.sleep(0.05)
        assert producer.flush(15) == 0
        producer.poll(0)
    finally:
        secured.server.sasl.max_reauth_ms = 0
        logger.removeHandler(lines)
    stored = secured.stored()
    assert [v for v in stored if v.startswith(b"reauth-")] == values
    assert sum("Received REAUTH op" in line for line in lines.lines) >= 3, lines.lines[:5]
    assert sum("Received session lifetime 500 ms" in line for line in lines.lines) >= 4
