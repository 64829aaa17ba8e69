"""A batch its leader committed and could not answer is voided by the producer's next epoch even
when another agent leads the partition by then (issue 19, finding 6: 496 values twice in a fault
run, after the leader that had committed them into closed connections was killed).

Two `streamhouse serve` agents on one PostgreSQL and one file object store (a file blocking the
partition's directory holds its segment commits back). The client sends an acks=all idempotent
batch to agent a and closes the connection before the commit, as librdkafka does when a request
times out; the commit then happens with nobody to answer. Agent a is killed, b takes the
partition, and the client either comes back under a new epoch with the same records (they must
be read once) or retries under the old one (answered with the original offsets, and then that
batch is acknowledged: the next epoch must not void it). Requests are crafted with the
project's own codec so each carries exactly the producer id, epoch and sequence of the scenario.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.devservices.ports import free_port
from streamhouse.kafka.protocol.api import encode_request
from streamhouse.kafka.protocol.messages_admin import INIT_PRODUCER_ID
from streamhouse.kafka.protocol.messages_data import PRODUCE
from tests.agent_process import AgentLauncher, AgentProcess, wait_until
from tests.engine.kafka.raw_kafka import ask, read_committed_values
from tests.engine.kafka.test_kafka_unacked_epoch import TOPIC, _request

NOT_LEADER = 6
TTL = ("--lease-ttl-ms", "2000", "--renew-interval-ms", "400")


class Agents:
    """Agents on one PostgreSQL and one file object store, each with its own WAL and Kafka port."""

    def __init__(self, launcher: AgentLauncher, tmp_path: Path, pg_url: str) -> None:
        self.launcher, self.tmp_path, self.pg_url = launcher, tmp_path, pg_url
        self.objects = tmp_path / "objects"

    def start(self, name: str) -> tuple[AgentProcess, int]:
        port = free_port()
        process = self.launcher.start(
            *("--data-dir", str(self.tmp_path / name), "--metadata", self.pg_url),
            *("--object-store", f"file://{self.objects}", "--agent-id", f"agent-{name}", *TTL),
            name=name,
            kafka_port=port,
        )
        return process, port


@pytest.fixture
def agents(tmp_path: Path, pg_url: str) -> Iterator[Agents]:
    with AgentLauncher(tmp_path) as launcher:
        yield Agents(launcher, tmp_path, pg_url)


def _produce(port: int, values: list[bytes], pid: int, epoch: int, timeout_s: float = 60) -> tuple[int, int]:
    """(error code, base offset) of one acks=all idempotent batch at sequence 0, retried while
    the partition's old leader's lease has not lapsed yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = ask(port, PRODUCE, 9, _request(values, pid, epoch, 0, 10_000))
        answer = body["responses"][0]["partition_responses"][0]
        code, base = int(answer["error_code"]), int(answer["base_offset"])
        if code != NOT_LEADER or time.monotonic() > deadline:
            return code, base
        time.sleep(0.3)


def _committed_unanswered(agents: Agents, sent: list[bytes]) -> tuple[AgentProcess, int, int]:
    """Agent a commits `sent` (producer epoch 0, sequence 0) after its client closed the
    connection; returns (a, a's Kafka port, the producer id)."""
    a, port = agents.start("a")
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, 1)
    body = ask(port, INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000})
    pid = int(body["producer_id"])
    blocker = agents.objects / "topics" / TOPIC / "00000"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(encode_request(PRODUCE, 9, 1, "raw", _request(sent, pid, 0, 0, 60_000)))
        time.sleep(0.5)  # written at 0..4, waiting for its commit; then the client gives up
    blocker.unlink()
    with streamhouse.connect(a.address) as client:
        wait_until(lambda: client.describe(TOPIC).partitions[0].end_offset >= 5, timeout_s=60, what="the commit")
    time.sleep(1.0)  # a made its success answer into the closed connection, and kept the batch
    return a, port, pid


def test_the_next_leader_voids_a_batch_the_old_one_committed_unanswered(agents: Agents) -> None:
    sent = [f"record-{i}".encode() for i in range(5)]
    a, _, pid = _committed_unanswered(agents, sent)
    b, port = agents.start("b")
    a.kill()  # what a knew in memory is gone; the store still has it
    # The client's next epoch sends the same records again, to the partition's new leader.
    assert _produce(port, sent, pid, 1) == (0, 5)
    with streamhouse.connect(b.address) as client:
        table = client.read(TOPIC)
        assert table.column("value").to_pylist() == sent  # once (the old code: twice, at 0..4 too)
        assert table.column("offset").to_pylist() == [5, 6, 7, 8, 9]
        assert client.sql(f"SELECT count(*) AS n FROM {TOPIC}").column("n").to_pylist() == [5]
    assert read_committed_values(f"127.0.0.1:{port}", TOPIC, 5) == sent
    assert "committed and left unanswered by an earlier leader are known" in b.log_tail(400)


def test_a_kept_batch_answered_by_a_retry_is_never_voided(agents: Agents) -> None:
    """The retry under the old epoch is answered with the original offsets at the new leader:
    from then on that batch is acknowledged, and the producer's next epoch leaves it alone."""
    sent = [f"record-{i}".encode() for i in range(5)]
    a, _, pid = _committed_unanswered(agents, sent)
    b, port = agents.start("b")
    a.kill()
    assert _produce(port, sent, pid, 0) == (0, 0)  # the retry: the original's offsets, acknowledged
    more = [b"next-epoch"]
    assert _produce(port, more, pid, 1) == (0, 5)
    b.kill()  # and after another move, the next leader does not void it either
    c, port = agents.start("c")
    assert _produce(port, [b"third"], pid, 2) == (0, 6)
    with streamhouse.connect(c.address) as client:
        assert client.read(TOPIC).column("value").to_pylist() == [*sent, *more, b"third"]
