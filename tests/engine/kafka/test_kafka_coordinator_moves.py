"""A group's coordinator agent restarts (kill -9, then the same data dir and agent id), with a
lease TTL long enough to tell "at once" from "after the old lease lapsed" (engine/kafka/
group_leases.py, registry.py). Two agents on PostgreSQL + SeaweedFS; the client is bootstrapped
at the other agent, so it finds the coordinator through FindCoordinator there.

Before the fix a new member waited a full TTL: the store still named the dead run as holder,
the other agent sent clients to it (at its old address, or at its new one, which refused the
group as NOT_COORDINATOR because it had not taken the lease). Now the restarted agent takes
its earlier run's registration and group leases back at once, and a group request claims the
lease before refusing.

A paused coordinator (SIGSTOP past the TTL, its lease taken by the other agent meanwhile) does
not answer for the group when it wakes up, even before its renewal loop has run: a lease not
confirmed within half its TTL is renewed before it is acted on, and the refusal drops the group.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

import streamhouse
from streamhouse.devservices.ports import free_port
from streamhouse.kafka.protocol.api import decode_response, encode_request
from streamhouse.kafka.protocol.messages_groups import FIND_COORDINATOR, HEARTBEAT
from streamhouse.kafka.registry import node_id
from tests.agent_process import AgentLauncher, AgentProcess
from tests.engine.kafka.raw_kafka import ask

TOPIC = "moves"
TTL_MS = 20_000  # the old run's leases would hold this long: far above what the checks allow
QUICK_S = 8.0
UNKNOWN_MEMBER_ID, NOT_COORDINATOR = 25, 16


class Pair:
    """Agents A and B sharing one metadata store and bucket; A can be restarted."""

    def __init__(
        self, launcher: AgentLauncher, tmp_path: Path, pg_url: str, s3_url: tuple[str, str], ttl_ms: int = TTL_MS
    ) -> None:
        self.launcher, self.tmp_path, self.pg_url, self.s3_url = launcher, tmp_path, pg_url, s3_url
        self.ttl_ms = ttl_ms
        self.a_port, self.b_port = free_port(), free_port()
        self.a = self.start("a", self.a_port)
        self.b = self.start("b", self.b_port)

    def start(self, name: str, kafka_port: int) -> AgentProcess:
        url, endpoint = self.s3_url
        return self.launcher.start(
            *("--data-dir", str(self.tmp_path / name), "--metadata", self.pg_url, "--object-store", url),
            *("--s3-endpoint", endpoint, "--kafka-port", str(kafka_port), "--agent-id", f"agent-{name}"),
            *("--lease-ttl-ms", str(self.ttl_ms), "--renew-interval-ms", str(min(1000, self.ttl_ms // 6))),
            name=name,
        )


@pytest.fixture
def pair(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[Pair]:
    with AgentLauncher(tmp_path) as launcher:
        agents = Pair(launcher, tmp_path, pg_url, s3_url)
        with streamhouse.connect(agents.b.address) as client:
            client.create_topic(TOPIC, 1)
            client.produce_batch(TOPIC, [b"r0", b"r1"], partition=0, acks="durable")  # B leads the partition
        yield agents


def _coordinator(port: int) -> tuple[int, int, int]:
    found = ask(port, FIND_COORDINATOR, 1, {"key": "g", "key_type": 0}, timeout_s=20)
    return found["error_code"], found["node_id"], found["port"]


def _first_poll_s(bootstrap_port: int) -> float:
    """Seconds from subscribe to a new member's first record (FindCoordinator, JoinGroup,
    SyncGroup, then a fetch)."""
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{bootstrap_port}", "group.id": "g",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 500, "enable.auto.commit": False})  # fmt: skip
    try:
        consumer.list_topics(TOPIC, timeout=20)  # topic metadata before subscribing (see the README note)
        started = time.monotonic()
        consumer.subscribe([TOPIC])
        while time.monotonic() - started < 60:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                return time.monotonic() - started
        raise AssertionError("no record within 60 s")
    finally:
        consumer.close()


@pytest.mark.parametrize("same_port", [True, False], ids=["same-port", "new-port"])
def test_a_restarted_coordinator_coordinates_at_once(pair: Pair, same_port: bool) -> None:
    assert _coordinator(pair.a_port) == (0, node_id("agent-a"), pair.a_port)  # A takes g
    assert _first_poll_s(pair.b_port) < QUICK_S

    pair.a.kill()  # no release: the store names the dead run for up to TTL_MS
    a_port = pair.a_port if same_port else free_port()
    pair.a = pair.start("a", a_port)
    restarted = time.monotonic()
    # B sends clients to A at A's new address (A took its registration back at once) ...
    assert _coordinator(pair.b_port) == (0, node_id("agent-a"), a_port)
    # ... and A answers for g instead of NOT_COORDINATOR: it claims the lease of its earlier run.
    beat = ask(a_port, HEARTBEAT, 1, {"group_id": "g", "generation_id": 1, "member_id": "gone"}, timeout_s=20)
    assert beat["error_code"] == UNKNOWN_MEMBER_ID
    assert _coordinator(pair.b_port) == (0, node_id("agent-a"), a_port)
    # A new member, bootstrapped at B, gets its records without waiting out the old lease.
    assert _first_poll_s(pair.b_port) < QUICK_S
    assert time.monotonic() - restarted < TTL_MS / 1000


def test_another_agents_group_is_still_refused(pair: Pair) -> None:
    """Claiming never takes a live lease from another agent: B's group requests for A's
    group stay NOT_COORDINATOR while A lives."""
    assert _coordinator(pair.a_port)[1] == node_id("agent-a")
    beat = ask(pair.b_port, HEARTBEAT, 1, {"group_id": "g", "generation_id": 1, "member_id": "m"}, timeout_s=20)
    assert beat["error_code"] == NOT_COORDINATOR
    assert _coordinator(pair.b_port) == (0, node_id("agent-a"), pair.a_port)


@pytest.fixture
def short_pair(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[Pair]:
    """A and B with a 3 s lease TTL: a pause outlives it quickly."""
    with AgentLauncher(tmp_path) as launcher:
        yield Pair(launcher, tmp_path, pg_url, s3_url, ttl_ms=3000)


def test_a_paused_coordinator_does_not_answer_for_a_group_it_lost(short_pair: Pair) -> None:
    pair = short_pair
    assert _coordinator(pair.a_port) == (0, node_id("agent-a"), pair.a_port)  # A takes g
    pair.a.pause()
    try:
        time.sleep(pair.ttl_ms / 1000 + 1)  # A's lease lapses; B takes g when asked
        assert _coordinator(pair.b_port) == (0, node_id("agent-b"), pair.b_port)
        # Sent while A is still frozen, so A reads it as soon as it wakes, before its renewal
        # loop has told it that g is gone.
        s = socket.create_connection(("127.0.0.1", pair.a_port), timeout=20)
        s.sendall(encode_request(HEARTBEAT, 1, 1, "raw", {"group_id": "g", "generation_id": 1, "member_id": "m"}))
    finally:
        pair.a.resume()
    with s:
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        beat = decode_response(HEARTBEAT, 1, s.recv(size, socket.MSG_WAITALL))[1]
    assert beat["error_code"] == NOT_COORDINATOR  # not UNKNOWN_MEMBER_ID: A no longer coordinates g
    assert _coordinator(pair.a_port) == (0, node_id("agent-b"), pair.b_port)
