"""An idempotent Kafka producer through a metadata-store outage writes nothing twice (issue 19).

End to end: a librdkafka idempotent producer (acks=all) writes to three partitions of an agent
whose PostgreSQL is reached through a TCP fault proxy; the proxy resets every connection for
a few seconds (a PostgreSQL restart). While the store is away, no segment can commit, so the
written batches wait for their acknowledgement, and whatever needs the store fails. The agent
answered such failures UNKNOWN_SERVER_ERROR, which librdkafka treats as permanent: it failed
those messages and bumped its producer epoch by itself, then sent every message waiting for
a retry again from sequence 0 of the new epoch, including messages the agent had already
written under the old one: each bump wrote them once more (the chaos run's values in the log
2-7 times, back to back). A Kafka broker answers such conditions with retriable codes (the
leader moved, storage error, timeout), which the client retries under the same epoch and
sequence, so the agent's sequence check deduplicates them.

Then the rule behind the second cause, on the idempotence layer with no agent: a batch that
arrives behind one refused without being written (a stall's NOT_ENOUGH_REPLICAS, a lost
leadership, a store outage) was answered OUT_OF_ORDER_SEQUENCE_NUMBER (UNKNOWN_PRODUCER_ID for
a producer the leader did not know yet), on which librdkafka bumps its epoch the same way
("skipped sequence numbers"). It is now refused retriably too, and the producer's retries, in
order, are written once each.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from confluent_kafka import Producer

import streamhouse
from streamhouse.chaos.proxy import FaultProxy
from streamhouse.kafka.ack_stalls import NOT_ENOUGH_REPLICAS, AcksStalledError
from streamhouse.kafka.idempotence import ProducerStates, SequenceError
from streamhouse.storage.errors import StorageUnavailableError, StreamHouseError
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from tests.agent_process import AgentLauncher, free_port, read_log

TOPIC = "store-outage"
PARTITIONS = 3


def _through(proxy: FaultProxy, pg_url: str) -> str:
    parts = urlsplit(pg_url)
    netloc = parts.netloc.rsplit("@", 1)
    auth = netloc[0] + "@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{proxy.port}"))


def test_an_idempotent_producer_through_a_store_outage_writes_nothing_twice(tmp_path: Path, pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        with AgentLauncher(tmp_path) as launcher:
            port = free_port()
            agent = launcher.start(
                *("--data-dir", str(tmp_path / "a"), "--metadata", _through(proxy, pg_url)),
                *("--object-store", f"file://{tmp_path / 'objects'}", "--kafka-advertised", f"127.0.0.1:{port}"),
                kafka_port=port,
            )
            with streamhouse.connect(agent.address) as client:
                client.create_topic(TOPIC, PARTITIONS)
            acked: list[bytes] = []
            errors: Counter[str] = Counter()

            def report(err: object, msg: object) -> None:
                if err is None:
                    acked.append(msg.value())  # type: ignore[attr-defined]
                else:
                    errors[str(err)[:80]] += 1

            producer = Producer(
                {"bootstrap.servers": f"127.0.0.1:{port}", "enable.idempotence": True, "acks": "all",
                 "request.timeout.ms": 3000, "message.timeout.ms": 60000, "retry.backoff.ms": 100,
                 "linger.ms": 5}
            )  # fmt: skip
            n = 0

            def send_for(seconds: float) -> None:
                nonlocal n
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    producer.produce(TOPIC, value=f"v-{n}".encode(), partition=n % PARTITIONS, on_delivery=report)
                    n += 1
                    producer.poll(0.005)

            send_for(2.0)
            assert producer.flush(30) == 0 and acked, "nothing acknowledged before the outage"
            for _ in range(3):
                proxy.set("reset")  # PostgreSQL restarting
                send_for(4.0)
                proxy.set("pass")
                send_for(2.0)
            assert producer.flush(60) == 0
            with streamhouse.connect(agent.address) as client:
                copies = Counter(v for p in range(PARTITIONS) for v in read_log(client, TOPIC)[p])
            twice = sorted(v for v, c in copies.items() if c > 1)
            assert twice == [], f"{len(twice)} values written more than once, e.g. {twice[:3]}; errors {errors}"
            assert set(acked) <= set(copies), "an acknowledged value is not in the log"
            assert not errors, f"messages failed although the store came back: {errors}"
    finally:
        proxy.close()


class _Leader:
    """The writer's side of ProducerStates.write: the producer's state and the batches written."""

    def __init__(self, state: ProducerState | None) -> None:
        self.state = state
        self.written: list[tuple[int, int]] = []  # (epoch, first sequence)

    async def lookup(self) -> ProducerState | None:
        return self.state

    def append(self, epoch: int, first: int, count: int) -> Callable[[int], Awaitable[int]]:
        async def append(skip: int) -> int:
            base = 100 + len(self.written)
            batch = ProducerBatch(7, epoch, first, first + count - 1, base, count)
            self.state = ProducerState(7, epoch, (batch,)) if self.state is None else self.state.with_batch(batch)
            self.written.append((epoch, first))
            return base

        return append


async def _stalled() -> None:
    raise AcksStalledError("t/0", 9.0)


async def _store_down(skip: int) -> int:
    raise StorageUnavailableError("metadata store: connection refused")


@pytest.mark.parametrize("known", [True, False], ids=["known-producer", "new-producer"])
@pytest.mark.parametrize("refusal", ["stall", "store-down"])
async def test_a_batch_behind_a_refused_one_is_refused_retriably_not_out_of_order(known: bool, refusal: str) -> None:
    states = ProducerStates()
    leader = _Leader(ProducerState(7, 0, (ProducerBatch(7, 0, 0, 4, 100, 5),)) if known else None)
    head = 5 if known else 0
    # The producer's next batch is refused and not written; two more are in flight behind it.
    with pytest.raises(StreamHouseError) as refused:
        if refusal == "stall":
            await states.write("t", 0, 7, 0, head, 1, leader.lookup, leader.append(0, head, 1), admit=_stalled)
        else:
            await states.write("t", 0, 7, 0, head, 1, leader.lookup, _store_down)
    assert not isinstance(refused.value, SequenceError)
    for first in (head + 1, head + 2):
        with pytest.raises(SequenceError) as behind:
            await states.write("t", 0, 7, 0, first, 1, leader.lookup, leader.append(0, first, 1))
        assert behind.value.error_code == NOT_ENOUGH_REPLICAS, behind.value  # was 45 (or 59 for a new producer)
    # The client retries in order, under the same epoch: each batch is written once.
    for first in (head, head + 1, head + 2):
        await states.write("t", 0, 7, 0, first, 1, leader.lookup, leader.append(0, first, 1))
    assert leader.written == [(0, head), (0, head + 1), (0, head + 2)]
    # A gap nobody refused is still out of order, as at a Kafka broker.
    with pytest.raises(SequenceError) as gap:
        await states.write("t", 0, 7, 0, head + 9, 1, leader.lookup, leader.append(0, head + 9, 1))
    assert gap.value.error_code == 45
