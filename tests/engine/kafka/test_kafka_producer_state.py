"""The idempotent producer's state survives an agent restart and a leader move (docs/DESIGN.md
§10), against real `streamhouse serve` subprocesses on PostgreSQL + SeaweedFS.

Requests are crafted at the protocol level with the project's own IO-free codec (a test
client, so a retry carries exactly the producer id, epoch and sequences of the original):
batches are acknowledged, the agent is SIGKILLed and restarted (or the partition's leader is
killed and the other agent takes over), the same batches are sent again and must be answered
with their original offsets without being stored twice; the sequence rules still hold after
the restart; producer ids never collide between agents.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.devservices.ports import free_port
from streamhouse.kafka.protocol.messages_admin import INIT_PRODUCER_ID
from streamhouse.kafka.protocol.messages_data import PRODUCE
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.records.schema import make_batch
from tests.agent_process import AgentLauncher, AgentProcess, read_log
from tests.engine.kafka.raw_kafka import ask

TOPIC = "once-only"
NOT_LEADER = 6
OUT_OF_ORDER = 45
INVALID_EPOCH = 47
UNKNOWN_PRODUCER = 59
TTL = ("--lease-ttl-ms", "3000", "--renew-interval-ms", "500")


class Agents:
    """Agents on one PostgreSQL + SeaweedFS, each with its own data dir (WAL) and Kafka port."""

    def __init__(self, launcher: AgentLauncher, tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> None:
        self.launcher, self.tmp_path, self.pg_url, self.s3_url = launcher, tmp_path, pg_url, s3_url

    def start(self, name: str) -> tuple[AgentProcess, int]:
        url, endpoint = self.s3_url
        port = free_port()
        process = self.launcher.start(
            *("--data-dir", str(self.tmp_path / name), "--metadata", self.pg_url, "--object-store", url),
            *("--s3-endpoint", endpoint, "--kafka-port", str(port), "--agent-id", f"agent-{name}", *TTL),
            name=name,
        )
        return process, port


@pytest.fixture
def agents(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[Agents]:
    with AgentLauncher(tmp_path) as launcher:
        yield Agents(launcher, tmp_path, pg_url, s3_url)


def _producer_id(port: int) -> int:
    body = ask(port, INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000})
    assert body["error_code"] == 0 and body["producer_epoch"] == 0
    return int(body["producer_id"])


def _batch(values: list[bytes], pid: int, sequence: int, epoch: int = 0) -> bytes:
    records = make_batch(values, timestamps=[1_700_000_000_000] * len(values))
    return encode_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=sequence)


def _produce(port: int, batch: bytes, acks: int) -> tuple[int, int]:
    """(error code, base offset) of one idempotent batch to partition 0."""
    body = ask(port, PRODUCE, 9, {"acks": acks, "timeout_ms": 30_000, "topic_data": [
        {"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}]})  # fmt: skip
    answer = body["responses"][0]["partition_responses"][0]
    return int(answer["error_code"]), int(answer["base_offset"])


def _produce_at_leader(port: int, batch: bytes, acks: int, timeout_s: float = 60) -> tuple[int, int]:
    """As _produce, retried while the partition's old leader's lease has not lapsed yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        code, base = _produce(port, batch, acks)
        if code != NOT_LEADER or time.monotonic() > deadline:
            return code, base
        time.sleep(0.3)


def _values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


def test_retries_after_a_restart_get_their_original_offsets(agents: Agents) -> None:
    a, port = agents.start("a")
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, 1)
    pid = _producer_id(port)
    sent = [
        (_values("durable", 3), 0, -1),  # acks=all: in a committed segment, with the producer state
        (_values("leader", 2), 3, 1),  # acks=1: in the WAL only
        (_values("more", 4), 5, 1),
    ]
    batches = [(_batch(values, pid, seq), acks) for values, seq, acks in sent]
    assert [_produce(port, b, acks) for b, acks in batches] == [(0, 0), (0, 3), (0, 5)]

    a.kill()
    a, port = agents.start("a")  # same WAL: the acks=1 batches come back from its replay
    # The same batches again, same producer id and sequences: answered, not stored twice.
    assert [_produce(port, b, acks) for b, acks in batches] == [(0, 0), (0, 3), (0, 5)]
    # The sequence goes on where it was; a gap and a stale epoch are refused as before.
    assert _produce(port, _batch([b"next"], pid, 9), -1) == (0, 9)
    assert _produce(port, _batch([b"gap"], pid, 20), 1)[0] == OUT_OF_ORDER
    assert _produce(port, _batch([b"fresh"], pid, 0, epoch=1), 1) == (0, 10)
    assert _produce(port, _batch([b"stale"], pid, 10, epoch=0), 1)[0] == INVALID_EPOCH
    assert _produce(port, _batch([b"lost"], pid + 1000, 7), 1)[0] == UNKNOWN_PRODUCER
    with streamhouse.connect(a.address) as client:
        log = read_log(client, TOPIC)[0]
    assert log == [*(v for values, _, _ in sent for v in values), b"next", b"fresh"]


def test_committed_state_survives_losing_the_wal(agents: Agents, tmp_path: Path) -> None:
    """After a flush the producer state is in the metadata store with the segment: a new
    agent without the old one's disk still recognises the retry."""
    a, port = agents.start("a")
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, 1)
    pid = _producer_id(port)
    first, second = _batch(_values("x", 5), pid, 0), _batch(_values("y", 2), pid, 5)
    assert _produce(port, first, -1) == (0, 0)
    assert _produce(port, second, -1) == (0, 5)
    a.kill()
    shutil.rmtree(tmp_path / "a")  # the WAL disk is gone; the lease lapses after its TTL
    b, b_port = agents.start("b")
    assert _produce_at_leader(b_port, second, -1) == (0, 5)
    assert _produce(b_port, first, 1) == (0, 0)
    assert _produce(b_port, _batch([b"z"], pid, 7), -1) == (0, 7)
    with streamhouse.connect(b.address) as client:
        assert read_log(client, TOPIC)[0] == [*_values("x", 5), *_values("y", 2), b"z"]


def test_a_retry_to_the_new_leader_is_deduplicated(agents: Agents) -> None:
    """Leader A is SIGKILLed after acknowledging (acks=all); the client's retry of the last
    batch reaches B, which takes the partition over and answers it with A's offsets. A batch
    A acknowledged with acks=1 only (its WAL) is written by B on retry, and when A comes back
    and hands its WAL records to B, B does not store them a second time."""
    (a, a_port), (b, b_port) = agents.start("a"), agents.start("b")
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, 1)
    pid = _producer_id(a_port)
    first, last = _batch(_values("p", 3), pid, 0), _batch(_values("q", 2), pid, 3)
    assert _produce(a_port, first, -1) == (0, 0)
    assert _produce(a_port, last, -1) == (0, 3)
    leader_only = _batch(_values("r", 4), pid, 5)
    assert _produce(a_port, leader_only, 1) == (0, 5)
    assert _produce(b_port, last, -1)[0] == NOT_LEADER  # A still holds the lease

    a.kill()
    assert _produce_at_leader(b_port, last, -1) == (0, 3)
    # A's acks=1 batch is only in A's WAL: B writes it when the client retries it...
    assert _produce(b_port, leader_only, -1) == (0, 5)
    # ...and when A restarts, its WAL take-over hands the same batch to B, which knows it.
    a, a_port = agents.start("a")
    expected = [*_values("p", 3), *_values("q", 2), *_values("r", 4)]
    deadline = time.monotonic() + 30
    with streamhouse.connect(b.address) as client:
        while time.monotonic() < deadline and "handed" not in _takeover_done(a):
            time.sleep(0.3)
        assert "handed" in _takeover_done(a), a.log_tail()
        assert read_log(client, TOPIC)[0] == expected
    assert _produce(b_port, _batch([b"s"], pid, 9), -1) == (0, 9)


def _takeover_done(agent: AgentProcess) -> str:
    """'handed' once the agent's log says it produced its held WAL records to the leader."""
    return "handed" if "were produced again to the leader" in agent.log_tail(400) else ""


def test_producer_ids_never_collide_between_agents(agents: Agents) -> None:
    (_, a_port), (_, b_port) = agents.start("a"), agents.start("b")
    ids = [_producer_id(port) for _ in range(20) for port in (a_port, b_port)]
    assert len(set(ids)) == len(ids) and min(ids) >= 1


def test_a_log_append_time_topic_keeps_the_producer_state(agents: Agents) -> None:
    """The agent re-stamps such a topic's timestamps: the batch's producer tag must survive
    that, or its retry would be written again after the restart."""
    a, port = agents.start("a")
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, 1, config={"message.timestamp.type": "LogAppendTime"})
    pid = _producer_id(port)
    batches = [_batch(_values("t", 3), pid, 0), _batch(_values("u", 2), pid, 3)]
    assert [_produce(port, b, 1) for b in batches] == [(0, 0), (0, 3)]
    a.kill()
    a, port = agents.start("a")
    assert [_produce(port, b, -1) for b in reversed(batches)] == [(0, 3), (0, 0)]
    with streamhouse.connect(a.address) as client:
        assert read_log(client, TOPIC)[0] == [*_values("t", 3), *_values("u", 2)]
