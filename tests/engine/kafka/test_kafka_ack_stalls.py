"""acks=all while segment commits are stalled (engine/kafka/ack_stalls.py).

End to end: an idempotent librdkafka producer writes to an agent whose object store refuses
the topic's rolls, for longer than the client's `message.timeout.ms`. The client then fails
its oldest messages and bumps its producer epoch by itself (KIP-360), sending the rest of its
queue again from sequence 0 of the new epoch, messages the agent may already have written
under the old one included. Before the agent stopped writing new acks=all batches during a
stall (NOT_ENOUGH_REPLICAS once it ends), every bump wrote the queue again: hundreds of values
two to eight times (issue 19, chaos finding 1). Now no value is in the log twice, every
acknowledged value is in it, and the producer is acknowledged again once the store is back.
Then the rule itself, on the idempotence layer with no agent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

import streamhouse
from streamhouse.kafka.ack_stalls import (
    MAX_STALL_S,
    MIN_STALL_S,
    NOT_ENOUGH_REPLICAS,
    AcksStalledError,
    AckStalls,
    stall_limit_s,
)
from streamhouse.kafka.idempotence import ProducerStates
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from tests.agent_process import AgentLauncher, free_port

TOPIC = "stalled-commits"


def test_an_idempotent_producer_outliving_a_stall_writes_nothing_twice(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    with AgentLauncher(tmp_path) as launcher:
        port = free_port()
        agent = launcher.start(
            *("--data-dir", str(tmp_path / "a"), "--object-store", f"file://{objects}"),
            *("--kafka-advertised", f"127.0.0.1:{port}"),
            kafka_port=port,
        )
        with streamhouse.connect(agent.address) as client:
            client.create_topic(TOPIC, 1)
        # Every roll of the topic fails while a file sits where its partition directory goes.
        blocker = objects / "topics" / TOPIC / "00000"
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_bytes(b"in the way")
        acked: list[bytes] = []
        outcomes: Counter[str] = Counter()

        def report(err: object, msg: object) -> None:
            outcomes["ok" if err is None else "failed"] += 1
            if err is None:
                acked.append(msg.value())  # type: ignore[attr-defined]

        producer = Producer(
            {"bootstrap.servers": f"127.0.0.1:{port}", "enable.idempotence": True, "acks": "all",
             "request.timeout.ms": 2000, "message.timeout.ms": 3000, "retry.backoff.ms": 100, "linger.ms": 5}
        )  # fmt: skip
        n = 0

        def send(prefix: str) -> None:
            nonlocal n
            producer.produce(TOPIC, value=f"{prefix}-{n}".encode(), partition=0, on_delivery=report)
            n += 1
            producer.poll(0.01)

        stalled_until = time.monotonic() + 5.0  # past the message timeout: the client bumps its epoch
        while time.monotonic() < stalled_until:
            send("stalled")
        assert outcomes["ok"] == 0, "acknowledged before any segment could commit"
        assert outcomes["failed"] > 0, "no message timed out: the client never bumped its epoch"
        blocker.unlink()
        back_by = time.monotonic() + 30.0  # the flush retries with backoff; then acks flow again
        while outcomes["ok"] == 0 and time.monotonic() < back_by:
            send("after")
        assert producer.flush(30) == 0
        assert outcomes["ok"] > 0, "the producer was never acknowledged after the store came back"
        with streamhouse.connect(agent.address) as client:
            log = client.read(TOPIC).column("value").to_pylist()
            # The batches written before the stall showed and never acknowledged were voided by
            # the epoch bump (engine/kafka/unacked.py): read_committed skips them, their offsets stay.
            offsets = client.read(TOPIC, isolation="read_uncommitted").column("offset").to_pylist()
        assert offsets == list(range(len(offsets))), "offsets not dense"
        copies = Counter(log)
        twice = [v for v, c in copies.items() if c > 1]
        assert twice == [], f"{len(twice)} values written more than once, e.g. {twice[:3]}"
        assert set(acked) <= set(copies), "an acknowledged value is not in the log"


def test_the_stall_limit_is_a_share_of_the_request_timeout_within_bounds() -> None:
    assert stall_limit_s(0) == MIN_STALL_S
    assert stall_limit_s(15_000) == 3.0
    assert stall_limit_s(30_000) == MAX_STALL_S


def test_a_partition_is_stalled_while_its_oldest_ack_waits_too_long() -> None:
    now = [100.0]
    stalls = AckStalls(clock=lambda: now[0])
    with stalls.waiting("t", 0):
        now[0] += 1.0
        with stalls.waiting("t", 0):
            now[0] += 2.0
            assert stalls.waited_s("t", 0) == 3.0  # the oldest one counts
            assert stalls.waited_s("t", 1) == 0.0  # partitions are separate
            assert stalls.stalled("t", 0, 2.5) and not stalls.stalled("t", 0, 3.5)
    assert stalls.waited_s("t", 0) == 0.0 and not stalls.stalled("t", 0, 0.0)  # acknowledged


async def test_a_batch_in_a_stall_is_placed_at_once_and_refused_when_the_stall_ends() -> None:
    stalls = AckStalls()
    placed: list[int] = []
    await stalls.refuse_if_stalled("t", 0, 0.01, stalls.now(), lambda: placed.append(1))  # no stall: goes on
    assert placed == []
    with stalls.waiting("t", 0):
        await asyncio.sleep(0.05)  # a commit that hangs: the partition is stalled past 0.01 s
        with pytest.raises(AcksStalledError) as info:  # still stalled when its answer is due
            await stalls.refuse_if_stalled("t", 0, 0.01, stalls.now() + 0.05, lambda: placed.append(1))
        assert info.value.error_code == NOT_ENOUGH_REPLICAS
        held = asyncio.ensure_future(
            stalls.refuse_if_stalled("t", 0, 0.01, stalls.now() + 30, lambda: placed.append(2))
        )
        await asyncio.sleep(0.02)
        assert placed == [1, 2] and not held.done()  # placed (the connection reads on), not answered
    with pytest.raises(AcksStalledError):  # the commit landed: answered now, to be retried, never written late
        await asyncio.wait_for(held, 1)


async def test_only_batches_written_anew_are_held() -> None:
    states = ProducerStates()
    written = ProducerState(7, 0, (ProducerBatch(7, 0, 0, 4, 100, 5),))
    appends: list[int] = []

    async def lookup() -> ProducerState:
        return written

    async def append(skip: int) -> int:
        appends.append(1)
        return 100

    async def stalled() -> None:  # refuse_if_stalled in a stall, without the wait
        raise AcksStalledError("t/0", 9.0)

    # A retry of the written batch gets its original offsets: refusing it would tell the
    # client "not persisted" about records that are.
    assert await states.write("t", 0, 7, 0, 0, 5, lookup, append, admit=stalled) == 100
    for epoch, first in ((0, 5), (1, 0)):  # the next batch, and sequence 0 of a bumped epoch
        with pytest.raises(AcksStalledError):
            await states.write("t", 0, 7, epoch, first, 3, lookup, append, admit=stalled)
    assert len(appends) == 1
