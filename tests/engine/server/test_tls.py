"""TLS on every port of a real `streamhouse serve` (issue 15), with certificates made at test time
(tls_certs.py): a test CA, a server certificate for 127.0.0.1/localhost, a client certificate,
and an unrelated CA nobody trusts.

- One agent with --tls-cert/--tls-key (SQLite + local files): the SDK over gRPC, HTTP (urllib with
  an ssl context: health, metrics, REST) and a Kafka client (confluent-kafka, security.protocol=SSL)
  work when they trust the CA; a plaintext client, or one trusting only the other CA, is refused.
- Two agents with mutual TLS (--tls-client-ca) on PostgreSQL + S3: no client certificate, or one
  from the other CA, is refused on every port; the right one works. A REST produce to the agent
  that does not lead the partition is forwarded to the leader over gRPC with TLS, the agent
  presenting its own certificate (agents share the CA).
- Kafka SASL_SSL: the SASL login (engine/kafka/sasl/) inside the TLS session of one listener.
- A wrong certificate path, or a key of another certificate: one `error:` line naming the file.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import streamhouse
from streamhouse.api.tls import ClientTls, server_tls
from streamhouse.devservices.ports import free_port
from streamhouse.storage.errors import InvalidInputError, StreamHouseError
from tests.agent_process import AgentLauncher, AgentProcess
from tests.engine.server.tls_certs import Certs, make_certs
from tests.services.postgres import _fresh_database
from tests.services.seaweedfs import S3Server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@dataclass(frozen=True)
class Served:
    agent: AgentProcess
    kafka_port: int

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.agent.http_port}"


@pytest.fixture(scope="module")
def tls_agent(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("tls")
    kafka_port = free_port()
    with AgentLauncher(tmp) as launcher:
        agent = launcher.start(
            *("--data-dir", str(tmp / "a"), "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)),
            http_port=0,
            kafka_port=kafka_port,
        )
        yield Served(agent, kafka_port)


@dataclass(frozen=True)
class MutualPair:
    a: AgentProcess
    b: AgentProcess
    kafka_port: int  # a's


@pytest.fixture(scope="module")
def mutual(
    tmp_path_factory: pytest.TempPathFactory, certs: Certs, postgres_server: str, s3_server: S3Server, s3_bucket: str
) -> Iterator[MutualPair]:
    tmp = tmp_path_factory.mktemp("mtls")
    store = f"s3://{s3_bucket}/{uuid.uuid4().hex[:16]}"
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--tls-client-ca", str(certs.ca))
    kafka_port = free_port()
    for pg_url in _fresh_database(postgres_server):
        with AgentLauncher(tmp) as launcher:
            common = ("--metadata", pg_url, "--object-store", store, "--s3-endpoint", s3_server.endpoint, *tls)
            a = launcher.start("--data-dir", str(tmp / "a"), *common, name="a", http_port=0, kafka_port=kafka_port)
            b = launcher.start("--data-dir", str(tmp / "b"), *common, name="b", http_port=0)
            yield MutualPair(a, b, kafka_port)


def _https(url: str, context: ssl.SSLContext, body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _refused_https(url: str, context: ssl.SSLContext) -> BaseException:
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)) as info:
        _https(url, context)
    return info.value


def _kafka(
    port: int, certs: Certs, *, ca: Path | None = None, client: tuple[Path, Path] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca or certs.ca),
        "socket.timeout.ms": 5000,
        "message.timeout.ms": 10000,
    }
    if client is not None:
        config["ssl.certificate.location"], config["ssl.key.location"] = str(client[0]), str(client[1])
    return config


def _kafka_round_trip(port: int, topic: str, config: dict[str, Any]) -> None:
    producer = Producer(config)
    delivered: list[Any] = []
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode(), key=b"k", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0
    assert delivered == [None] * 20
    consumer = Consumer({**config, "group.id": "tls", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])  # no group join: its rebalance delay is not the point
        values: list[bytes] = []
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
            if len(values) >= 20:
                break
        assert values == [f"v{i}".encode() for i in range(20)]
    finally:
        consumer.close()


def _kafka_refused(config: dict[str, Any]) -> None:
    """No metadata because the connection failed (_TRANSPORT: the handshake), not because it
    was slow (_TIMED_OUT would be a working connection that missed the deadline)."""
    admin = AdminClient({**config, "socket.timeout.ms": 2000, "log_level": 0})
    with pytest.raises(KafkaException) as info:
        admin.list_topics(timeout=1.5)
    assert info.value.args[0].code() == KafkaError._TRANSPORT, info.value


# -- server TLS ---------------------------------------------------------------------------------
def test_sdk_over_tls_and_refused_without_the_ca(tls_agent: Served, certs: Certs) -> None:
    with streamhouse.connect(tls_agent.agent.address, tls_ca=str(certs.ca)) as client:
        client.create_topic("sdk_tls", 1)
        client.produce_batch("sdk_tls", [b"a", b"b", b"c"], acks="durable")
        assert client.read("sdk_tls").column("value").to_pylist() == [b"a", b"b", b"c"]
        assert client.sql("SELECT count(*) AS n FROM sdk_tls").to_pylist() == [{"n": 3}]
    # Plaintext to a TLS port, and TLS trusting only another CA: no answer either way.
    for options in ({}, {"tls_ca": str(certs.other_ca)}):
        with (
            streamhouse.connect(tls_agent.agent.address, connect_timeout_s=1.0, **options) as client,
            pytest.raises(StreamHouseError),
        ):
            client.topics()


def test_http_over_tls_and_a_client_that_does_not_trust_the_ca(tls_agent: Served, certs: Certs) -> None:
    trusting = ClientTls.load(str(certs.ca)).ssl_context()
    assert _https(tls_agent.https + "/health/live", trusting)[0] == 200
    status, body = _https(tls_agent.https + "/metrics", trusting)
    assert status == 200 and b"streamhouse_" in body
    created, _ = _https(tls_agent.https + "/v1/topics", trusting, {"topic_name": "rest_tls", "partitions_count": 1})
    assert created == 201
    produced, answer = _https(tls_agent.https + "/v1/topics/rest_tls/records", trusting, {"values": ["x", "y"]})
    assert produced == 200, answer
    assert _https(tls_agent.https + "/registry/subjects", trusting) == (200, b"[]")
    untrusting = ClientTls.load(str(certs.other_ca)).ssl_context()
    failure = _refused_https(tls_agent.https + "/health/live", untrusting)
    assert "CERTIFICATE_VERIFY_FAILED" in str(failure)
    # And the system's roots do not know the test CA either.
    _refused_https(tls_agent.https + "/health/live", ssl.create_default_context())


def test_kafka_ssl_produces_and_consumes_and_refuses_the_wrong_ca(tls_agent: Served, certs: Certs) -> None:
    with streamhouse.connect(tls_agent.agent.address, tls_ca=str(certs.ca)) as client:
        client.create_topic("kafka_tls", 1)
    _kafka_round_trip(tls_agent.kafka_port, "kafka_tls", _kafka(tls_agent.kafka_port, certs))
    _kafka_refused(_kafka(tls_agent.kafka_port, certs, ca=certs.other_ca))
    plaintext = {"bootstrap.servers": f"127.0.0.1:{tls_agent.kafka_port}", "socket.timeout.ms": 2000}
    _kafka_refused(plaintext)


def test_wal_hand_over_forwarder_connects_over_tls(tls_agent: Served, certs: Certs) -> None:
    """The agent's hook for handing held WAL records to another leader (client/forward.py), as
    the agent server binds it: over TLS with the peer settings (plaintext is refused as the
    SDK's is, test_sdk_over_tls_and_refused_without_the_ca: the same transport)."""
    from streamhouse.client.forward import forward_to_leader
    from streamhouse.storage.records.schema import make_batch

    with streamhouse.connect(tls_agent.agent.address, tls_ca=str(certs.ca)) as client:
        client.create_topic("handover_tls", 1)
        batch = make_batch([b"v1", b"v2"], keys=[b"k1", b"k2"], timestamps=1_700_000_000_000)
        peer = ClientTls.load(str(certs.ca))
        assert asyncio.run(forward_to_leader(tls_agent.agent.address, "handover_tls", 0, batch, tls=peer)) == 0
        assert client.read("handover_tls").column("value").to_pylist() == [b"v1", b"v2"]


def test_cli_client_commands_take_tls_flags(tls_agent: Served, certs: Certs) -> None:
    base = [sys.executable, "-m", "streamhouse.cli", "topic", "list", "--bootstrap", tls_agent.agent.address]
    ok = subprocess.run([*base, "--tls-ca", str(certs.ca)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "sdk_tls" in ok.stdout or "rest_tls" in ok.stdout or "kafka_tls" in ok.stdout


# -- mutual TLS ---------------------------------------------------------------------------------
def test_mutual_tls_needs_a_client_certificate_from_the_ca(mutual: MutualPair, certs: Certs) -> None:
    address = mutual.a.address
    right = {"tls_ca": str(certs.ca), "tls_cert": str(certs.client_cert), "tls_key": str(certs.client_key)}
    stranger = {**right, "tls_cert": str(certs.other_client_cert), "tls_key": str(certs.other_client_key)}
    for options in ({"tls_ca": str(certs.ca)}, stranger):
        with streamhouse.connect(address, connect_timeout_s=1.0, **options) as client, pytest.raises(StreamHouseError):
            client.topics()
    with streamhouse.connect(address, **right) as client:
        client.create_topic("mtls", 1)
        client.produce("mtls", [b"1"], acks="leader")

    https = f"https://127.0.0.1:{mutual.a.http_port}"
    _refused_https(https + "/health/live", ClientTls.load(str(certs.ca)).ssl_context())
    stranger_ctx = ClientTls.load(str(certs.ca), str(certs.other_client_cert), str(certs.other_client_key))
    _refused_https(https + "/health/live", stranger_ctx.ssl_context())
    client_ctx = ClientTls.load(str(certs.ca), str(certs.client_cert), str(certs.client_key)).ssl_context()
    assert _https(https + "/health/live", client_ctx)[0] == 200

    _kafka_refused(_kafka(mutual.kafka_port, certs))
    _kafka_refused(_kafka(mutual.kafka_port, certs, client=(certs.other_client_cert, certs.other_client_key)))
    config = _kafka(mutual.kafka_port, certs, client=(certs.client_cert, certs.client_key))
    with streamhouse.connect(address, **right) as client:
        client.create_topic("kafka_mtls", 1)
    _kafka_round_trip(mutual.kafka_port, "kafka_mtls", config)


def test_rest_produce_is_forwarded_to_the_leader_over_mutual_tls(mutual: MutualPair, certs: Certs) -> None:
    ctx = ClientTls.load(str(certs.ca), str(certs.client_cert), str(certs.client_key)).ssl_context()
    https_a, https_b = (f"https://127.0.0.1:{agent.http_port}" for agent in (mutual.a, mutual.b))
    assert _https(https_a + "/v1/topics", ctx, {"topic_name": "fwd_tls", "partitions_count": 1})[0] == 201
    first = _https(https_a + "/v1/topics/fwd_tls/records?acks=leader", ctx, {"values": [0], "partition_id": 0})
    assert first[0] == 200, first  # a leads partition 0 now
    status, body = _https(
        https_b + "/v1/topics/fwd_tls/records?acks=leader", ctx, {"values": [1, 2], "partition_id": 0}
    )
    assert status == 200, body  # b forwarded it to a over gRPC + mutual TLS
    assert json.loads(body)["partitions"] == [{"partition_id": 0, "base_offset": 1, "record_count": 2}]


# -- startup errors -----------------------------------------------------------------------------
def _serve_error(tmp_path: Path, *flags: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamhouse.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            "0",
            "--http-port",
            "-1",
            "--kafka-port",
            "0",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_bad_certificate_files_are_one_line_naming_the_file(tmp_path: Path, certs: Certs) -> None:
    missing = tmp_path / "missing.pem"
    line = _serve_error(tmp_path, "--tls-cert", str(missing), "--tls-key", str(certs.server_key))
    assert line.startswith("error: ") and str(missing) in line and "--tls-cert" in line
    # The other refusals take the same path (server_tls, before anything is locked or bound):
    # checked in-process, a subprocess each would only pay the imports again.
    with pytest.raises(InvalidInputError) as info:
        server_tls(str(certs.server_cert), str(certs.client_key))
    assert str(info.value) == f"the TLS key {certs.client_key} does not belong to the certificate {certs.server_cert}"
    with pytest.raises(InvalidInputError, match="TLS needs both --tls-cert and --tls-key"):
        server_tls(str(certs.server_cert), "")
    with pytest.raises(InvalidInputError, match="--tls-client-ca needs --tls-cert and --tls-key"):
        server_tls("", "", str(certs.ca))
    with pytest.raises(InvalidInputError, match=f"the TLS key {certs.server_cert} is not a valid PEM private key"):
        server_tls(str(certs.server_cert), str(certs.server_cert))
    with pytest.raises(InvalidInputError, match="holds no PEM certificate"):
        server_tls(str(certs.server_key), str(certs.server_key))


# -- SASL over TLS ------------------------------------------------------------------------------
def test_kafka_sasl_ssl_logs_in_over_tls(tmp_path: Path, certs: Certs) -> None:
    """security.protocol=SASL_SSL: the SASL exchange (engine/kafka/sasl/) runs inside the TLS
    session of the same listener; a wrong secret is still refused, over TLS."""
    from streamhouse.auth import Authenticator
    from streamhouse.auth.admin import AuthAdmin
    from streamhouse.client.embedded import EmbeddedTransport
    from streamhouse.kafka.server import KafkaServer

    tls = server_tls(str(certs.server_cert), str(certs.server_key))
    assert tls is not None
    with streamhouse.open(str(tmp_path / "data")) as sh:
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        metadata = transport.service.metadata
        server = KafkaServer(transport.service, port=0, authenticator=Authenticator(metadata), tls=tls.ssl_context())
        transport._run(server.start())
        transport.kafka_servers.append(server)  # closed first by sh.close()
        transport._run(AuthAdmin(metadata).create_org("acme"))
        key_id, secret = transport._run(AuthAdmin(metadata).create_key("acme", "alice", admin=True)).token.split(".")
        sh.create_topic("sasl_tls", 1)
        sasl = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": key_id}
        _kafka_round_trip(server.port, "sasl_tls", {**_kafka(server.port, certs), **sasl, "sasl.password": secret})
        errors: list[KafkaError] = []
        wrong = {**_kafka(server.port, certs), **sasl, "sasl.password": "wrong", "error_cb": errors.append}
        producer = Producer(wrong)
        producer.produce("sasl_tls", value=b"never")
        for _ in range(100):
            if errors:
                break
            producer.poll(0.05)
        producer.purge()
        assert [e.code() for e in errors][:1] == [KafkaError._AUTHENTICATION], errors
        assert sh.read("sasl_tls").num_rows == 20  # the refused producer wrote nothing


def test_settings_never_show_the_private_key(certs: Certs) -> None:
    tls = server_tls(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    assert tls is not None and b"PRIVATE KEY" in tls.key_pem
    peer = tls.peer_client()
    client = ClientTls.load(str(certs.ca), str(certs.client_cert), str(certs.client_key))
    for value in (tls, peer, client):
        assert "PRIVATE KEY" not in repr(value) and "PRIVATE KEY" not in str(value)
