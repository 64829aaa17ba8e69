"""The Kafka listener on two agents sharing PostgreSQL + SeaweedFS.

Metadata names each partition's lease holder as its leader, with a stable node id and the
agent's advertised Kafka address (engine/kafka/registry.py), whichever agent the client
asked; a produce sent to the wrong agent gets NOT_LEADER_OR_FOLLOWER. librdkafka,
bootstrapped at one agent only, writes to a partition the other leads; after that agent is
SIGKILLed, its lease lapses and the client's metadata refresh finds the survivor, which
takes the partition over with nothing acknowledged lost. A consumer group has one
coordinator (lease kafka-group/<id>); the other agent answers NOT_COORDINATOR and names the
holder, and when the coordinator dies the group moves and goes on consuming.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

import streamhouse
from streamhouse.devservices.ports import free_port
from streamhouse.kafka.protocol.api import decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import PRODUCE
from streamhouse.kafka.protocol.messages_groups import FIND_COORDINATOR, HEARTBEAT
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.kafka.registry import node_id
from streamhouse.storage.records.schema import make_batch
from tests.agent_process import AgentLauncher, AgentProcess, read_log
from tests.engine.kafka.raw_kafka import ask

TOPIC = "spread"


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[list[tuple[AgentProcess, int]]]:
    url, endpoint = s3_url
    with AgentLauncher(tmp_path) as launcher:
        agents = []
        for name in ("a", "b"):
            port = free_port()
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
    request = {
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [
            {
                "name": TOPIC,
                "partition_data": [{"index": 1, "records": encode_batch(make_batch([b"x"], timestamps=[1]))}],
            }
        ],
    }
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


def test_a_group_has_one_coordinator_and_moves_when_it_dies(cluster: list[tuple[AgentProcess, int]]) -> None:
    (a, a_port), (_, b_port) = cluster
    with streamhouse.connect(a.address) as via_a:
        via_a.create_topic(TOPIC, 2)
    found = ask(a_port, FIND_COORDINATOR, 1, {"key": "g", "key_type": 0}, timeout_s=20)
    assert (found["error_code"], found["node_id"], found["port"]) == (0, node_id("agent-a"), a_port)
    # B knows A coordinates g: it says so, and refuses g's group requests.
    assert ask(b_port, FIND_COORDINATOR, 1, {"key": "g", "key_type": 0}, timeout_s=20)["node_id"] == node_id("agent-a")
    beat = ask(b_port, HEARTBEAT, 1, {"group_id": "g", "generation_id": 1, "member_id": "m"}, timeout_s=20)
    assert beat["error_code"] == 16  # NOT_COORDINATOR

    seen: list[bytes] = []
    stop = threading.Event()

    def consume() -> None:
        consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{a_port},127.0.0.1:{b_port}", "group.id": "g",
                             "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                             "heartbeat.interval.ms": 500, "enable.auto.commit": False})  # fmt: skip
        consumer.list_topics(TOPIC, timeout=20)  # topic metadata before subscribing (see the README note)
        consumer.subscribe([TOPIC])
        try:
            while not stop.is_set():
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    seen.append(msg.value())
                    with contextlib.suppress(KafkaException):  # during the move a commit may fail
                        consumer.commit(message=msg, asynchronous=False)
        finally:
            consumer.close()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        before = [f"before-{i}".encode() for i in range(6)]
        for i, value in enumerate(before):
            _produce(b_port, [value], i % 2)
        _wait(lambda: len(seen) >= 6, "the group to consume through A's coordination")
        a.kill()
        after = [f"after-{i}".encode() for i in range(6)]
        for i, value in enumerate(after):
            _produce(b_port, [value], i % 2)
        _wait(lambda: set(after) <= set(seen), "the group to move to B and go on", timeout=90)
    finally:
        stop.set()
        thread.join(30)
    assert set(seen) == set(before) | set(after)
    assert ask(b_port, FIND_COORDINATOR, 1, {"key": "g", "key_type": 0}, timeout_s=20)["node_id"] == node_id("agent-b")


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
