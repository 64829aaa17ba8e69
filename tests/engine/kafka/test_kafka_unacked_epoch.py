"""An idempotent producer's new epoch voids its older batches the leader never acknowledged
(engine/kafka/unacked.py; issue 19, the duplicates of the 42-minute fault runs).

One agent (SQLite, a file object store whose segment commits fail while a file blocks the
partition's directory). A batch is written under epoch 0 with acks=all and cannot be
acknowledged; its producer gives up, bumps its epoch and sends the same records again from
sequence 0 of epoch 1, as librdkafka does once a message's delivery timeout passes. Once the
store is back, both copies are committed, and read_committed readers (the SDK, SQL, a real
librdkafka read_committed consumer) must see the records once. An acknowledged batch is never
voided. Requests are crafted with the project's own codec so each carries exactly the
producer id, epoch and sequence of the scenario.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import streamhouse
from streamhouse.kafka.protocol.api import encode_request
from streamhouse.kafka.protocol.messages_admin import INIT_PRODUCER_ID
from streamhouse.kafka.protocol.messages_data import PRODUCE
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.records.schema import make_batch
from tests.agent_process import AgentLauncher, AgentProcess, free_port, wait_until
from tests.engine.kafka.raw_kafka import ask, read_answer, read_committed_values

TOPIC = "epoch_bumps"
REQUEST_TIMED_OUT = 7
INVALID_EPOCH = 47
NOT_ENOUGH_REPLICAS = 19


def _request(
    values: list[bytes], pid: int, epoch: int, sequence: int, timeout_ms: int, partition: int = 0
) -> dict[str, Any]:
    """A Produce (acks=all) of one batch (idempotent unless pid is -1) to `partition`."""
    records = make_batch(values, timestamps=[1_700_000_000_000] * len(values))
    batch = encode_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=sequence)
    return {"acks": -1, "timeout_ms": timeout_ms, "topic_data": [
        {"name": TOPIC, "partition_data": [{"index": partition, "records": batch}]}]}  # fmt: skip


def _produce(port: int, values: list[bytes], pid: int, epoch: int, sequence: int) -> tuple[int, int]:
    """(error code, base offset) of one acks=all idempotent batch to partition 0, answered
    REQUEST_TIMED_OUT after 0.8 s while its segment commit cannot happen."""
    body = ask(port, PRODUCE, 9, _request(values, pid, epoch, sequence, 1000))
    answer = body["responses"][0]["partition_responses"][0]
    return int(answer["error_code"]), int(answer["base_offset"])


def _start(launcher: AgentLauncher, tmp_path: Path, port: int, partitions: int = 1) -> tuple[AgentProcess, int]:
    """One agent on a file object store under tmp_path/objects, the topic, and a producer id."""
    agent = launcher.start(
        *("--data-dir", str(tmp_path / "a"), "--object-store", f"file://{tmp_path / 'objects'}"),
        *("--kafka-advertised", f"127.0.0.1:{port}"),
        kafka_port=port,
    )
    with streamhouse.connect(agent.address) as client:
        client.create_topic(TOPIC, partitions)
    body = ask(port, INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000})
    return agent, int(body["producer_id"])


def _block(objects: Path, partition: int) -> Path:
    """A file where the partition's directory goes: every roll of it fails until it is removed."""
    blocker = objects / "topics" / TOPIC / f"{partition:05d}"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    return blocker


def test_a_new_epoch_voids_the_unacknowledged_copies_of_its_records(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        agent, pid = _start(launcher, tmp_path, port)
        early = [f"early-{i}".encode() for i in range(3)]
        # Acknowledged under epoch 0 while the store works: never voided by what follows.
        assert _produce(port, early, pid, 0, 0) == (0, 0)

        # The partition's directory moved aside and a file in its place: every roll fails.
        blocker = objects / "topics" / TOPIC / "00000"
        blocker.rename(blocker.with_name("aside"))
        blocker.write_bytes(b"in the way")
        sent = [f"record-{i}".encode() for i in range(5)]
        assert _produce(port, sent, pid, 0, 3)[0] == REQUEST_TIMED_OUT  # written at 3..7, unanswered
        # The client gives up on it and sends the same records again under epoch 1.
        assert _produce(port, sent, pid, 1, 0)[0] == REQUEST_TIMED_OUT  # written at 8..12
        blocker.unlink()
        blocker.with_name("aside").rename(blocker)

        with streamhouse.connect(agent.address) as client:
            wait_until(lambda: client.describe(TOPIC).partitions[0].end_offset >= 13, timeout_s=60, what="the commits")
            committed = client.read(TOPIC)
            assert committed.column("value").to_pylist() == [*early, *sent]
            assert committed.column("offset").to_pylist() == [0, 1, 2, 8, 9, 10, 11, 12]
            # read_uncommitted sees both copies, as it sees an aborted transaction's records.
            everything = client.read(TOPIC, isolation="read_uncommitted")
            assert everything.column("value").to_pylist() == [*early, *sent, *sent]
            assert client.sql(f"SELECT count(*) AS n FROM {TOPIC}").column("n").to_pylist() == [8]

        # The old epoch's retry is fenced, not answered with the voided offsets; the new one's
        # retry gets its original offsets.
        assert _produce(port, sent, pid, 0, 3) == (INVALID_EPOCH, -1)
        assert _produce(port, sent, pid, 1, 0) == (0, 8)
        assert read_committed_values(f"127.0.0.1:{port}", TOPIC, 8) == [*early, *sent]


def test_a_success_answer_into_a_closed_connection_is_not_an_acknowledgement(tmp_path: Path) -> None:
    """librdkafka closes the connection when a request times out; the agent's success answer
    made after that is never read, so the batch stays voidable by the client's next epoch."""
    objects = tmp_path / "objects"
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        agent, pid = _start(launcher, tmp_path, port)
        blocker = _block(objects, 0)
        sent = [f"record-{i}".encode() for i in range(5)]
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(encode_request(PRODUCE, 9, 1, "raw", _request(sent, pid, 0, 0, 60_000)))
            time.sleep(0.5)  # written at 0..4, waiting for its commit; then the client gives up
        blocker.unlink()
        with streamhouse.connect(agent.address) as client:
            wait_until(lambda: client.describe(TOPIC).partitions[0].end_offset >= 5, timeout_s=60, what="the commit")
            time.sleep(1.0)  # the agent has made its success answer, into the closed connection
            assert _produce(port, sent, pid, 1, 0) == (0, 5)  # the client's next epoch sends them again
            assert client.read(TOPIC).column("offset").to_pylist() == [5, 6, 7, 8, 9]
            assert client.read(TOPIC).column("value").to_pylist() == sent


def _answers(s: socket.socket, count: int) -> list[tuple[int, int]]:
    """(error code, base offset) of the next `count` Produce answers on `s`, in order."""
    out = []
    for _ in range(count):
        answer = read_answer(s, PRODUCE, 9)[1]["responses"][0]["partition_responses"][0]
        out.append((int(answer["error_code"]), int(answer["base_offset"])))
    return out


def test_an_answer_made_after_a_newer_epoch_arrived_is_not_an_acknowledgement(tmp_path: Path) -> None:
    """librdkafka times out a request in flight when its first message's timeout runs out, keeps
    the connection open, bumps its epoch and sends the other messages again. A success answer
    the agent writes after the new epoch's request arrived, but before that request got to void
    anything, is discarded by the client; counted as an acknowledgement, it kept the batch from
    being voided: 892 values twice in the twenty-third fault run (finding 8). Here the new
    epoch's request waits on the partition's acks=all stall while the first batch commits."""
    objects = tmp_path / "objects"
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        agent, pid = _start(launcher, tmp_path, port)
        blocker = _block(objects, 0)  # no roll until it goes
        sent = [f"record-{i}".encode() for i in range(5)]
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(encode_request(PRODUCE, 9, 1, "raw", _request(sent, pid, 0, 0, 60_000)))  # written at 0..4
            time.sleep(2.5)  # past the 2 s stall limit of a 10 s request: new acks=all batches wait
            # The client gave up on the first request without closing, and sends its records again.
            s.sendall(encode_request(PRODUCE, 9, 2, "raw", _request(sent, pid, 1, 0, 10_000)))
            time.sleep(0.5)
            blocker.unlink()  # the first batch commits and is answered; the stall ends
            first, second = _answers(s, 2)
        assert first == (INVALID_EPOCH, -1)  # not an acknowledgement: it is voided below
        assert second == (NOT_ENOUGH_REPLICAS, -1)  # refused while stalled: nothing written
        assert _produce(port, sent, pid, 1, 0) == (0, 5)  # the retry voids the first copy
        with streamhouse.connect(agent.address) as client:
            assert client.read(TOPIC).column("offset").to_pylist() == [5, 6, 7, 8, 9]
            assert client.read(TOPIC).column("value").to_pylist() == sent
        assert read_committed_values(f"127.0.0.1:{port}", TOPIC, 5) == sent


def test_a_success_answer_queued_behind_a_slower_one_counts_only_once_sent(tmp_path: Path) -> None:
    """Answers go out in request order: a batch committed at once may wait to be answered behind
    an earlier request of the connection that waits longer (another partition's commit). If the
    client closes the connection meanwhile, that success answer is never sent, so the batch was
    never acknowledged and the producer's next epoch voids it (the fifth 42-min run's 839
    duplicates: the answer counted as made when the handler ended, not when it was written)."""
    objects = tmp_path / "objects"
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        agent, pid = _start(launcher, tmp_path, port, partitions=2)
        blocker = _block(objects, 1)  # partition 1 cannot roll; partition 0 can
        slow = _request([b"slow"], -1, -1, -1, 60_000, partition=1)
        sent = [f"record-{i}".encode() for i in range(5)]
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(encode_request(PRODUCE, 9, 1, "raw", slow))
            s.sendall(encode_request(PRODUCE, 9, 2, "raw", _request(sent, pid, 0, 0, 60_000)))
            with streamhouse.connect(agent.address) as client:
                # Partition 0's batch is committed (its answer made) while the first waits.
                wait_until(lambda: client.describe(TOPIC).partitions[0].end_offset >= 5, timeout_s=30, what="commit")
            time.sleep(0.5)
        blocker.unlink()  # the first answer, then the second, go to the closed connection
        time.sleep(1.0)
        with streamhouse.connect(agent.address) as client:
            assert _produce(port, sent, pid, 1, 0) == (0, 5)  # the client's next epoch sends them again
            assert client.read(TOPIC, partitions=[0]).column("offset").to_pylist() == [5, 6, 7, 8, 9]


def test_a_batch_straddling_what_is_written_has_only_its_tail_written(tmp_path: Path) -> None:
    """The client re-sends, in one batch, messages the partition holds already and new ones (its
    boundaries unlike the written batches': seen after a leader move in the fourteenth fault
    run). A Kafka broker answers OUT_OF_ORDER_SEQUENCE_NUMBER, on which librdkafka bumps its epoch
    and sends everything again; here the tail is written and the batch answered with offset -1."""
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        agent, pid = _start(launcher, tmp_path, port)

        def produce(first: int, n: int) -> tuple[int, int]:
            values = [f"v{i}".encode() for i in range(first, first + n)]
            body = ask(port, PRODUCE, 9, _request(values, pid, 0, first, 10_000))
            answer = body["responses"][0]["partition_responses"][0]
            return int(answer["error_code"]), int(answer["base_offset"])

        assert produce(0, 10) == (0, 0)  # sequences 0..9 at offsets 0..9
        assert produce(6, 8) == (0, -1)  # 6..9 written already: only 10..13 appended
        assert produce(6, 8) == (0, -1)  # its retry: nothing appended
        assert produce(14, 2) == (0, 14)
        with streamhouse.connect(agent.address) as client:
            table = client.read(TOPIC)
            assert table.column("value").to_pylist() == [f"v{i}".encode() for i in range(16)]
            assert table.column("offset").to_pylist() == list(range(16))


@contextlib.contextmanager
def _after_a_late_answer(tmp_path: Path) -> Iterator[tuple[AgentProcess, int, int, list[bytes]]]:
    """One agent, two partitions. Partition 1 cannot roll; an acks=all request to it (timeout_ms
    60 s) goes first, then an idempotent batch to partition 0 with timeout_ms 3 s, committed at
    once. Its answer waits behind the first (answers go out in request order) until partition 1
    rolls, 5 s in: past its 3 s, so it is REQUEST_TIMED_OUT. Yields (agent, port, producer id,
    the batch's values) with the connection closed."""
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        agent, pid = _start(launcher, tmp_path, port, partitions=2)
        sent = [f"record-{i}".encode() for i in range(5)]
        blocker = _block(tmp_path / "objects", 1)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(encode_request(PRODUCE, 9, 1, "raw", _request([b"slow"], -1, -1, -1, 60_000, partition=1)))
            s.sendall(encode_request(PRODUCE, 9, 2, "raw", _request(sent, pid, 0, 0, 3_000)))
            time.sleep(5.0)
            blocker.unlink()
            first, second = _answers(s, 2)
        assert first == (0, 0)
        assert second == (REQUEST_TIMED_OUT, -1)
        yield agent, port, pid, sent


def test_a_success_answer_ready_only_past_the_requests_timeout_is_not_an_acknowledgement(tmp_path: Path) -> None:
    """A client whose own timeout is the request's timeout_ms has given up on the request by
    then, and librdkafka keeps the connection when it does (finding 8): a success answer
    written later is REQUEST_TIMED_OUT instead, so the client's next epoch voids the batch."""
    with _after_a_late_answer(tmp_path) as (agent, port, pid, sent):
        assert _produce(port, sent, pid, 1, 0) == (0, 5)  # the client's next epoch sends them again
        with streamhouse.connect(agent.address) as client:
            table = client.read(TOPIC, partitions=[0])
        assert table.column("offset").to_pylist() == [5, 6, 7, 8, 9]
        assert table.column("value").to_pylist() == sent


def test_a_retry_after_a_late_answer_gets_the_original_offsets_and_acknowledges(tmp_path: Path) -> None:
    """The client that did wait retries under the same epoch: answered with the original offsets,
    an acknowledgement, so its next epoch voids nothing."""
    with _after_a_late_answer(tmp_path) as (agent, port, pid, sent):
        assert _produce(port, sent, pid, 0, 0) == (0, 0)  # the retry: the original offsets
        later = [b"later"]
        assert _produce(port, later, pid, 1, 0) == (0, 5)
        with streamhouse.connect(agent.address) as client:
            table = client.read(TOPIC, partitions=[0])
        assert table.column("offset").to_pylist() == [0, 1, 2, 3, 4, 5]
        assert table.column("value").to_pylist() == [*sent, *later]
