"""Two agent processes on one PostgreSQL + SeaweedFS: leader routing, failover after kill -9,
and a leader that freezes (SIGSTOP) past its lease and then wakes up (SIGCONT).

What it proves:
- NOT_LEADER routing is invisible: a client that only knows the non-leader still produces;
- after kill -9 of the leader the other agent takes the partitions over once the lease
  expires, and a producer with retries on just continues;
- a frozen leader that wakes after losing its lease acknowledges nothing (its pending produce
  fails and is never written) and commits nothing itself; the records it had acknowledged
  before are produced again to the new leader (issue 20), once each;
- across all of it, no acknowledged (acks=durable) record is lost, moved or duplicated.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import SegmentInfo
from tests.agent_process import (
    AgentLauncher,
    AgentProcess,
    Ledger,
    Producer,
    check_ledger,
    read_log,
    wait_until,
)

TOPIC = "failover"
PARTITIONS = 2
TTL_MS = 2000
RENEW_MS = 500


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    """Agents of one test, killed at its end. Tests list it after pg_url/s3_url so it is torn
    down first: a database dropped under live agents only makes noise in their logs."""
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def produce(client: Client, ledger: Ledger, payload: bytes, partition: int) -> None:
    """One acks=durable record, recorded in the ledger once acknowledged."""
    with ledger.lock:
        ledger.attempted.add(payload)
    md = client.produce(TOPIC, payload, partition=partition, acks="durable")
    assert md.partition == partition
    ledger.ack([payload], partition, md.offset)


def leaders(client: Client) -> dict[int, str]:
    return {p.partition: p.leader for p in client.describe(TOPIC).partitions}


def led_partitions(agent: AgentProcess) -> float:
    """The agent's own view of how many partitions it leads (its metrics gauge)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^streamhouse_led_partitions (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match[1])


def committed_segments(metadata_url: str) -> dict[int, list[SegmentInfo]]:
    """The segment rows in metadata, per partition, read directly (not through an agent)."""

    async def read() -> dict[int, list[SegmentInfo]]:
        store = await open_metadata_store(metadata_url)
        try:
            return {p: await store.list_segments(TOPIC, p) for p in range(PARTITIONS)}
        finally:
            await store.close()

    return asyncio.run(read())


def test_routing_failover_and_a_frozen_leader(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    url, endpoint = s3_url
    # Rolls happen only for durable acks and on shutdown, so acks=none records stay unflushed.
    common = [
        *("--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint),
        *("--lease-ttl-ms", str(TTL_MS), "--renew-interval-ms", str(RENEW_MS)),
        *("--durable-flush-ms", "50", "--roll-age-ms", "60000"),
    ]
    a = agents.start("--data-dir", str(tmp_path / "a"), *common, name="a", http_port=0)
    b = agents.start("--data-dir", str(tmp_path / "b"), *common, name="b", http_port=0)
    ledger = Ledger()

    # -- routing: A leads both partitions; clients that know only B still produce ------------
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, PARTITIONS)
        for p in range(PARTITIONS):
            produce(client, ledger, f"seed-{p}".encode(), p)
    with streamhouse.connect(b.address) as only_b:
        assert leaders(only_b) == {0: a.address, 1: a.address}
        for i in range(4):
            produce(only_b, ledger, f"via-b-{i}".encode(), i % PARTITIONS)
    with streamhouse.connect(b.address, retries=False) as only_b_no_retries:
        # Following a NOT_LEADER redirect is routing, not a retry: nothing was written by the
        # agent that refused, so even an at-most-once client goes on to the named leader.
        produce(only_b_no_retries, ledger, b"via-b-no-retries", 1)
    with streamhouse.connect(f"{b.address},{a.address}") as both:
        for i in range(6):
            produce(both, ledger, f"via-both-{i}".encode(), i % PARTITIONS)
        assert leaders(both) == {0: a.address, 1: a.address}
        epochs_a = {p.partition: p.leader_epoch for p in both.describe(TOPIC).partitions}

    # -- kill -9 the leader mid-stream: B takes over, the producer carries on -------------------
    producer = Producer(
        "stream",
        f"{a.address},{b.address}",
        ledger,
        topic=TOPIC,
        partitions=PARTITIONS,
        acks="durable",
        retries=True,
        timeout_s=5,
        retry_for_s=30,
    )
    producer.start()
    wait_until(lambda: producer.acked_here >= 20, timeout_s=30, what="20 acks before the kill")
    a.kill()
    # The batch in flight now can only be answered once B leads (a lease TTL away), so this is
    # exactly the one batch that A may have committed without answering and the SDK retries:
    # the only records allowed to appear twice.
    may_repeat = frozenset(producer.in_flight)
    killed_at = producer.acked_here
    wait_until(lambda: producer.acked_here >= killed_at + 20, timeout_s=30, what="20 acks through B after the kill")
    producer.stopping.set()
    producer.join(60)
    assert not producer.is_alive() and producer.failure is None, producer.failure
    with streamhouse.connect(b.address) as client:
        described = client.describe(TOPIC).partitions
        assert all(p.leader == b.address and p.leader_epoch > epochs_a[p.partition] for p in described), described
        check_ledger(read_log(client, TOPIC), ledger, may_repeat=may_repeat)

    # -- SIGSTOP the leader (B) past its lease; A (restarted on its WAL) takes over ------------
    a = agents.start("--data-dir", str(tmp_path / "a"), *common, name="a", http_port=0)
    unflushed = [f"unflushed-{i}".encode() for i in range(3)]
    stale = b"stale-ack"
    with ledger.lock:
        ledger.attempted.update([*unflushed, stale])
    outcome: list[pb.ProduceResponse | grpc.RpcError] = []
    with grpc.insecure_channel(b.address) as channel, streamhouse.connect(a.address) as via_a:
        stub = pbg.ProduceStub(channel)
        # B's end, not the ledger's: restarted A hands B the batch it had in flight when it was
        # killed (issue 20; the may_repeat batch, so at most twice in the log).
        with streamhouse.connect(b.address) as via_b:
            end_before = via_b.describe(TOPIC).partitions[0].end_offset
        # acks=none records sit in B's buffer, acknowledged to nobody and not yet committed.
        stub.Produce(
            pb.ProduceRequest(
                topic=TOPIC,
                partition=0,
                acks=pb.ACKS_NONE,
                records=pb.RecordList(records=[pb.Record(value=v) for v in unflushed]),
            ),
            timeout=10,
        )
        with streamhouse.connect(b.address) as via_b:
            state = wait_until(
                lambda: (s := via_b.describe(TOPIC).partitions[0]).end_offset == end_before + len(unflushed) and s,
                what="B to buffer the acks=none records",
            )
        assert state.durable_end_offset == end_before  # buffered, not committed

        b.pause()
        paused_at = time.monotonic()

        def stale_produce() -> None:
            # Straight at B, no SDK routing or retries: B alone decides what this caller hears.
            try:
                outcome.append(
                    stub.Produce(
                        pb.ProduceRequest(
                            topic=TOPIC,
                            partition=0,
                            acks=pb.ACKS_LEADER,
                            records=pb.RecordList(records=[pb.Record(value=stale)]),
                        ),
                        timeout=60,
                    )
                )
            except grpc.RpcError as err:
                outcome.append(err)

        pending = threading.Thread(target=stale_produce, name="stale-produce", daemon=True)
        pending.start()

        # B's lease lapses by the database clock (no renewals from a stopped process).
        wait_until(
            lambda: set(leaders(via_a).values()) == {""}, timeout_s=15, what="B's leases to expire while it is frozen"
        )
        assert time.monotonic() - paused_at >= (TTL_MS - RENEW_MS) / 1000 * 0.9
        for p in range(PARTITIONS):
            produce(via_a, ledger, f"after-takeover-{p}".encode(), p)
        assert leaders(via_a) == {0: a.address, 1: a.address}
        assert not outcome, "B answered while frozen"

        b.resume()
        pending.join(30)
        assert not pending.is_alive(), "the stale produce never finished"
        [answer] = outcome
        # Refused (fenced: ABORTED, or already dropped: NOT_LEADER naming A), never acknowledged.
        assert isinstance(answer, grpc.RpcError), f"a stale leader acknowledged a produce: {answer}"
        assert answer.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION), answer
        # B notices on its own: its renewals are refused and it drops both partitions.
        wait_until(lambda: led_partitions(b) == 0, what="B to give up the partitions it lost")

    # -- B is healthy again and routes to A; nothing of B's stale leadership ever shows ------------
    with streamhouse.connect(b.address) as via_b:
        produce(via_b, ledger, b"via-b-after-wakeup", 0)
        assert leaders(via_b) == {0: a.address, 1: a.address}
        wait_until(
            lambda: set(unflushed) <= set(read_log(via_b, TOPIC)[0]),
            what="B to hand its acknowledged acks=none records to the new leader",
        )
    assert b.stop() == 0 and a.stop() == 0  # graceful: whatever A buffered is now in segments
    final = agents.start("--data-dir", str(tmp_path / "final"), *common, name="final")
    with streamhouse.connect(final.address) as client:
        log = read_log(client, TOPIC)
        everything = {v for values in log.values() for v in values}
        # B's acks=none records were acknowledged on receipt: B hands them to the new leader once
        # fenced (issue 20: acknowledged means kept), once each. The refused produce never appears.
        assert stale not in everything, "a stale leader's refused record was committed"
        assert sorted(v for v in log[0] if v in unflushed) == sorted(unflushed)
        check_ledger(log, ledger, may_repeat=may_repeat)
        assert len(ledger.acked) >= 50
    # Segments tile each partition with no gap or overlap, and epochs never go down along the
    # offsets: a commit by a leader whose lease had been taken over would break that.
    for p, segments in committed_segments(pg_url).items():
        assert [s.base_offset for s in segments] == [0, *(s.end_offset for s in segments[:-1])], segments
        assert segments[-1].end_offset == len(log[p])
        epochs = [s.epoch for s in segments]
        # At least A's first epoch and its epoch after the takeover (B's, if B committed here).
        assert epochs == sorted(epochs) and len(set(epochs)) >= 2, epochs
