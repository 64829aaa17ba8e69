"""The Kafka listener on two agents sharing PostgreSQL + SeaweedFS.

Metadata names each partition's lease holder as its leader, with a stable node id and the
agent's advertised Kafka address (engine/kafka/registry.py), whichever agent the client
asked; a produce sent to the wrong agent gets NOT_LEADER_OR_FOLLOWER. librdkafka,
bootstrapped at one agent only, writes to a partition the other leads; after that agent is
SIGKILLed, its lease lapses and the client's metadata refresh finds the survivor, which
takes the partition over with nothing acknowledged lost.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import streamhouse
from streamhouse.kafka.protocol.api import decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import PRODUCE
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.kafka.registry import node_id
from streamhouse.storage.records import make_batch
from tests.agent_process import AgentLauncher, AgentProcess, read_log

TOPIC = "spread"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[list[tuple[AgentProcess, int]]]:
    url, endpoint = s3_url
    with AgentLauncher(tmp_path) as launcher:
        agents = []
        for name in ("a", "b"):
            port = _free_port()
            process = launcher.start(
                *("--data-dir", str(tmp_path / name), "--metadata", pg_url, "--object-store", url),
                *("--s3-endpoint", endpoint, "--kafka-port", str(port), "--agent-id", f"agent-{name}"),
                *("--lease-ttl-ms", "3000", "--renew-interval-ms", "500"),
                name=name,
            )
            agents.append((process, port))
        yield agents


def _produce(port: int, values: list[bytes], partition: int) -> list[int]:
    offsets: list[int] = []
    errors: list[object] = []
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "message.timeout.ms": 60000})
    for value in values:
        producer.produce(
            TOPIC, value=value, partition=partition,
            on_delivery=lambda err, msg: errors.append(err) if err else offsets.append(msg.offset()),
        )  # fmt: skip
    assert producer.flush(90) == 0
    assert errors == []
    return offsets


def test_leaders_are_lease_holders_and_a_dead_leader_is_replaced(cluster: list[tuple[AgentProcess, int]]) -> None:
    (a, a_port), (b, b_port) = cluster
    with streamhouse.connect(a.address) as via_a:
        via_a.create_topic(TOPIC, 2)
        via_a.produce_batch(TOPIC, [b"a0"], partition=0, acks="durable")
    with streamhouse.connect(b.address) as via_b:
        via_b.produce_batch(TOPIC, [b"b0"], partition=1, acks="durable")

    # Asked at A, Metadata names B for partition 1, with B's own Kafka address.
    metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{a_port}"}).list_topics(TOPIC, timeout=20)
    assert {n: (br.host, br.port) for n, br in metadata.brokers.items()} == {
        node_id("agent-a"): ("127.0.0.1", a_port), node_id("agent-b"): ("127.0.0.1", b_port)}  # fmt: skip
    leaders = {p: m.leader for p, m in metadata.topics[TOPIC].partitions.items()}
    assert leaders == {0: node_id("agent-a"), 1: node_id("agent-b")}

    # A produce for partition 1 sent to A is refused: A does not lead it.
    request = {"acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": TOPIC, "partition_data": [{"index": 1, "records": encode_batch(make_batch([b"x"], timestamps=[1]))}]}]}
    with socket.create_connection(("127.0.0.1", a_port), timeout=20) as s:
        s.sendall(encode_request(PRODUCE, 9, 1, "raw", request))
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        _, body = decode_response(PRODUCE, 9, s.recv(size, socket.MSG_WAITALL))
    assert body["responses"][0]["partition_responses"][0]["error_code"] == 6  # NOT_LEADER_OR_FOLLOWER

    # Bootstrapped at A only, the client writes partition 1 at B.
    first = [f"via-a-{i}".encode() for i in range(10)]
    assert _produce(a_port, first, 1) == list(range(1, 11))

    b.kill()  # no lease release, no deregistration: only the TTL tells
    later = [f"after-kill-{i}".encode() for i in range(10)]
    assert _produce(a_port, later, 1) == list(range(11, 21))
    with streamhouse.connect(a.address) as via_a:
        assert read_log(via_a, TOPIC) == {0: [b"a0"], 1: [b"b0", *first, *later]}
    metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{a_port}"}).list_topics(TOPIC, timeout=20)
    assert metadata.topics[TOPIC].partitions[1].leader == node_id("agent-a")
    assert set(metadata.brokers) == {node_id("agent-a")}
