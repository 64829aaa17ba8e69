"""Kafka transactions end to end (issue 18): real confluent-kafka transactional producers and
read_committed / read_uncommitted consumers against a `streamhouse serve --kafka-port`
subprocess on PostgreSQL + SeaweedFS.

One agent, one story: a committed transaction is seen by both kinds of reader, an aborted one
only by read_uncommitted; an open transaction holds read_committed readers at its first
record (the last stable offset) while records behind it wait; a second producer of the same
transactional id fences the first (its open transaction is aborted and its commit refused); a
consume-transform-produce step commits its input offsets with its output; and a producer that
abandons its transaction is aborted after its timeout, releasing what waited behind it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

import streamhouse
from tests.agent_process import AgentProcess, kafka_agent, wait_until

TRANSFORM = Path(__file__).with_name("txn_transform.py")
KILLS = 20


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, str]]:
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        yield process, f"127.0.0.1:{port}"


def _producer(bootstrap: str, tid: str, timeout_ms: int = 30_000) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                         "transaction.timeout.ms": timeout_ms, "linger.ms": 5})  # fmt: skip
    producer.init_transactions(20)
    return producer


def _read(
    bootstrap: str, topic: str, partitions: int, isolation: str, expect: int, wait_s: float = 15.0
) -> list[bytes]:
    """Every value of `topic` a fresh consumer of `isolation` gets, once it has `expect` of them
    (or `wait_s` passed: then what it had)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "isolation.level": isolation, "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[bytes] = []
    deadline = time.monotonic() + wait_s
    try:
        while len(got) < expect and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message.value())
    finally:
        consumer.close()
    return sorted(got)


def _high_watermark(bootstrap: str, topic: str, partition: int, isolation: str) -> int:
    """ListOffsets LATEST as a consumer of `isolation` asks it (read_committed: the last stable offset)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks", "isolation.level": isolation})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1])
    finally:
        consumer.close()


def _send(producer: Producer, topic: str, values: list[bytes]) -> None:
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=i % 2)
    assert producer.flush(20) == 0


def test_transactions_commit_abort_fence_timeout(agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic("tx-out", 2)
        client.create_topic("tx-in", 1)
        client.produce_batch("tx-in", [b"i0", b"i1", b"i2"], partition=0)

    first = _producer(bootstrap, "app")
    first.begin_transaction()
    committed = [b"c%d" % i for i in range(6)]
    _send(first, "tx-out", committed)
    first.commit_transaction(20)
    first.begin_transaction()
    _send(first, "tx-out", [b"aborted-%d" % i for i in range(4)])
    first.abort_transaction(20)
    assert _read(bootstrap, "tx-out", 2, "read_committed", 6) == sorted(committed)
    assert len(_read(bootstrap, "tx-out", 2, "read_uncommitted", 10)) == 10

    # An open transaction holds read_committed readers at its first record, also for
    # committed records written behind it by another producer.
    first.begin_transaction()
    _send(first, "tx-out", [b"zombie-0", b"zombie-1"])
    other = _producer(bootstrap, "other")
    other.begin_transaction()
    _send(other, "tx-out", [b"behind-0", b"behind-1"])
    other.commit_transaction(20)
    assert _read(bootstrap, "tx-out", 2, "read_committed", 8, wait_s=3) == sorted(committed)
    with streamhouse.connect(process.address) as client:  # our SDK reads committed too
        assert sorted(client.read("tx-out").column("value").to_pylist()) == sorted(committed)
    stable = _high_watermark(bootstrap, "tx-out", 0, "read_committed")
    # c0 c2 c4, its COMMIT marker, 2 aborted, its ABORT marker: the open transaction starts at 7
    assert stable == 7 < _high_watermark(bootstrap, "tx-out", 0, "read_uncommitted")

    # A new instance of "app" fences the old one: its open transaction is aborted, its commit refused.
    second = _producer(bootstrap, "app")
    with pytest.raises(KafkaException) as refused:
        first.commit_transaction(20)
    assert refused.value.args[0].fatal() or "fenced" in str(refused.value).lower()
    assert _read(bootstrap, "tx-out", 2, "read_committed", 8) == sorted([*committed, b"behind-0", b"behind-1"])

    # Consume-transform-produce: the input offsets are committed with the output, atomically.
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": "transform", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})  # fmt: skip
    try:
        second.begin_transaction()
        _send(second, "tx-out", [b"t-i0", b"t-i1"])
        second.send_offsets_to_transaction([TopicPartition("tx-in", 0, 2)], group.consumer_group_metadata(), 20)
        with streamhouse.connect(process.address) as client:
            assert client.committed("transform", "tx-in")[0].committed_offset == -1  # not before the commit
        second.commit_transaction(20)
    finally:
        group.close()
    with streamhouse.connect(process.address) as client:
        assert client.committed("transform", "tx-in")[0].committed_offset == 2
    assert len(_read(bootstrap, "tx-out", 2, "read_committed", 10)) == 10

    # A producer that abandons its transaction: aborted after its timeout, never visible, and
    # what was committed behind it becomes visible then.
    abandoned = _producer(bootstrap, "abandoned", timeout_ms=2000)
    abandoned.begin_transaction()
    _send(abandoned, "tx-out", [b"lost-0", b"lost-1"])
    second.begin_transaction()
    _send(second, "tx-out", [b"after-0", b"after-1"])
    second.commit_transaction(20)
    wait_until(lambda: len(_read(bootstrap, "tx-out", 2, "read_committed", 12, wait_s=2)) == 12, timeout_s=20,
               what="the abandoned transaction to time out")  # fmt: skip
    values = _read(bootstrap, "tx-out", 2, "read_committed", 12)
    assert b"after-0" in values and not any(v.startswith((b"lost", b"zombie", b"aborted")) for v in values)
    second.flush(5)

    # Consume-transform-produce killed with SIGKILL again and again: each next instance aborts
    # what the last left open, resumes from the offsets committed with the output, and the
    # output is every input record exactly once, in order.
    total = 120
    with streamhouse.connect(process.address) as client:
        client.create_topic("ctp-in", 1)
        client.create_topic("ctp-out", 1)
        client.produce_batch("ctp-in", [b"%03d" % i for i in range(total)], partition=0)
    command = [sys.executable, str(TRANSFORM), bootstrap, "ctp-in", "ctp-out", str(total)]
    rng = random.Random(18)
    for _ in range(KILLS):
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.25, 0.7))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert subprocess.run(command, timeout=120, capture_output=True).returncode == 0
    expected = [b"out-%03d" % i for i in range(total)]
    assert _read(bootstrap, "ctp-out", 1, "read_committed", total, wait_s=20) == expected
    with streamhouse.connect(process.address) as client:
        assert client.committed("transform", "ctp-in")[0].committed_offset == total
        assert client.read("ctp-out").column("value").to_pylist() == expected  # the SDK skips the aborted
