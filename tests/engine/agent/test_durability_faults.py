"""Durability under injected faults (issue 20), each fault placed on purpose:

1. a metadata COMMIT that is applied but whose reply is lost (the store below is the real
   SQLite/PostgreSQL store; the wrapper only raises AFTER the real commit returned);
2. one WAL holding two leaderships of a partition at the same offsets: the latest wins, and the
   older leadership's acknowledged records are appended again, not dropped;
3. (subprocess agents) acks=leader records of an agent that was taken over come back after its
   restart, counted in streamhouse_wal_recovered_records_total;
4. (subprocess agent) retries=False with two addresses, the first dead: produce moves on.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.devservices.ports import free_port
from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog
from streamhouse.storage.wal.recovery import plan_recovery
from tests.agent_process import AgentLauncher, AgentProcess, read_log, wait_until

TOPIC = "chaos"


class LostReply:
    """The real metadata store, except that chosen calls raise a connection error after the
    real call returned (the COMMIT was applied; its reply never arrived)."""

    def __init__(self, inner: MetadataStore) -> None:
        self.inner = inner
        self.lose_commit_replies = 0
        self.fail_reads = 0  # list_segments calls that fail before reaching the store
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit_segment(self, segment: SegmentInfo, holder: str, epoch: int) -> None:
        self.commits += 1
        await self.inner.commit_segment(segment, holder, epoch)
        if self.lose_commit_replies:
            self.lose_commit_replies -= 1
            raise StorageUnavailableError("connection lost after COMMIT was sent (injected)")

    async def list_segments(self, topic: str, partition: int, start: int = 0, end: int | None = None) -> Any:
        if self.fail_reads:
            self.fail_reads -= 1
            raise StorageUnavailableError("metadata store unreachable (injected)")
        return await self.inner.list_segments(topic, partition, start, end)


@dataclass
class Env:
    metadata: MetadataStore
    store: ObjectStore
    wal: WriteAheadLog
    topic: TopicInfo
    wal_dir: Path

    async def reopen_wal(self) -> list[WalEntry]:
        """What a restarted agent does: open the WAL directory again and replay it."""
        await self.wal.close()
        self.wal = await WriteAheadLog.open(self.wal_dir, fsync="never")
        return list((await self.wal.replay()).entries)

    async def leader(
        self, holder: str, replayed: list[WalEntry] | None = None, metadata: Any = None
    ) -> PartitionWriter:
        lease = await self.metadata.acquire_lease(partition_resource(TOPIC, 0), holder, 30_000)
        return await PartitionWriter.recover(
            self.topic,
            0,
            holder=holder,
            epoch=lease.epoch,
            metadata=metadata or self.metadata,
            store=self.store,
            wal=self.wal,
            replayed=replayed or [],
        )

    async def hand_over(self, old: PartitionWriter) -> None:
        """The old holder's lease lapses (as if it were paused past its TTL)."""
        await self.metadata.release_lease(partition_resource(TOPIC, 0), old.holder, old.epoch)


@pytest.fixture
async def env(metadata_store: MetadataStore, object_store: ObjectStore, tmp_path: Path) -> AsyncIterator[Env]:
    topic = await metadata_store.create_topic(TOPIC, 1)
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    e = Env(metadata_store, object_store, wal, topic, tmp_path / "wal")
    yield e
    await e.wal.close()


def batch(tag: str, n: int, start: int = 0) -> pa.RecordBatch:
    return make_batch(
        [f"{tag}{i}".encode() for i in range(start, start + n)],
        keys=[b"k"] * n,
        timestamps=[1000 + i for i in range(start, start + n)],
    )


def values(table: pa.Table) -> list[bytes | None]:
    return table.column("value").to_pylist()


async def read_all(env: Env) -> list[bytes | None]:
    return values(await PartitionReader(env.metadata, env.store).read(TOPIC, 0, 0))


# -- 1. lost COMMIT reply -------------------------------------------------------------------------
async def test_a_commit_whose_reply_is_lost_keeps_its_segment(env: Env) -> None:
    faulty = LostReply(env.metadata)
    writer = await env.leader("agent-a", metadata=faulty)
    await writer.append(batch("x", 5))
    faulty.lose_commit_replies = 1
    info = await writer.flush()  # the read-back finds the row: success, not an error
    assert info is not None and (info.base_offset, info.end_offset) == (0, 5)
    assert not writer.fenced and writer.durable_end == 5 and writer.buffered_bytes == 0
    assert await env.store.get(info.object_key)  # the object the row points to exists
    assert await writer.append(batch("y", 2)) == 5  # no offset is reused
    await writer.flush()
    assert await read_all(env) == [b"x0", b"x1", b"x2", b"x3", b"x4", b"y0", b"y1"]


async def test_a_retried_commit_refused_because_it_already_applied_is_success(env: Env) -> None:
    """The issue's sequence: the reply is lost AND the read-back fails, so the writer retries;
    the retry is refused (the durable end already moved, by its own first commit). That
    refusal must resolve to success: no fencing, no deleted object, no dropped buffer."""
    faulty = LostReply(env.metadata)
    writer = await env.leader("agent-a", metadata=faulty)
    await writer.append(batch("x", 5))
    faulty.lose_commit_replies, faulty.fail_reads = 1, 1
    with pytest.raises(StorageUnavailableError):
        await writer.flush()
    assert not writer.fenced and writer.buffered_bytes > 0  # outcome unknown: nothing dropped
    await writer.append(batch("y", 3))  # buffered behind the uncertain cut
    await writer.flush()  # retry: refused as OffsetConflict, read back, found ours → success
    assert faulty.commits == 3  # the lost one, the refused retry, the round for "y"
    assert not writer.fenced and writer.durable_end == 8
    segments = await env.metadata.list_segments(TOPIC, 0)
    assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 5), (5, 8)]
    for s in segments:
        assert await env.store.get(s.object_key)
    assert await read_all(env) == [b"x0", b"x1", b"x2", b"x3", b"x4", b"y0", b"y1", b"y2"]


async def test_a_truly_fenced_commit_leaves_the_object_and_is_reported(env: Env) -> None:
    old = await env.leader("agent-a")
    await old.append(batch("a", 3))
    await env.hand_over(old)
    new = await env.leader("agent-b")
    await new.append(batch("b", 2))
    await new.flush()
    with pytest.raises(Exception, match="fenced"):
        await old.flush()
    assert old.fenced
    assert await read_all(env) == [b"b0", b"b1"]


# -- 2. two leaderships in one WAL -----------------------------------------------------------------
async def test_replay_keeps_the_latest_leadership_per_offset_and_reappends_the_older(env: Env) -> None:
    """A leads (epoch 1) and acknowledges X at 0..4; B takes over (epoch 2) and dies without
    committing; A leads again (epoch 3, live process: its WAL entries of epoch 1 are not
    re-buffered) and acknowledges Y at 0..4; A crashes and restarts with nobody else leading."""
    a1 = await env.leader("agent-a")
    await a1.append(batch("X", 5))
    await env.hand_over(a1)
    b = await env.leader("agent-b")
    await env.hand_over(b)
    a3 = await env.leader("agent-a")  # a fresh writer of a live process: replayed=[]
    assert a3.epoch == a1.epoch + 2
    await a3.append(batch("Y", 5))
    replayed = await env.reopen_wal()
    assert sorted((e.epoch, e.base_offset) for e in replayed) == [(a1.epoch, 0), (a3.epoch, 0)]
    await env.hand_over(a3)
    again = await env.leader("agent-a", replayed=replayed)
    # Offsets 0..4 hold Y (the latest leadership); X is appended again after it, not lost.
    assert again.next_offset == 10 and again.recovered_records == 5 and again.replayed_records == 5
    await again.flush()
    assert await read_all(env) == [b"Y0", b"Y1", b"Y2", b"Y3", b"Y4", b"X0", b"X1", b"X2", b"X3", b"X4"]
    # X keeps its original timestamps.
    table = await PartitionReader(env.metadata, env.store).read(TOPIC, 0, 5)
    assert table.column("timestamp").cast(pa.int64()).to_pylist() == [1000, 1001, 1002, 1003, 1004]


async def test_recovery_is_idempotent_across_repeated_crashes(env: Env) -> None:
    """A restart carries the records over (writes them again under its epoch); crashing again
    before anything is committed, and again after, must neither lose nor duplicate them."""
    a1 = await env.leader("agent-a")
    await a1.append(batch("X", 3))
    await env.hand_over(a1)
    b = await env.leader("agent-b")
    await b.append(batch("B", 2))
    await b.flush()  # B committed other records at 0..1: X's offsets are taken
    await env.hand_over(b)
    for _ in range(2):  # crash right after recovering, twice
        replayed = await env.reopen_wal()
        w = await env.leader("agent-a", replayed=replayed)
        assert w.next_offset == 5
        await env.hand_over(w)
    replayed = await env.reopen_wal()
    w = await env.leader("agent-a", replayed=replayed)
    await w.flush()
    await env.hand_over(w)
    replayed = await env.reopen_wal()  # after the commit: nothing more to do
    w = await env.leader("agent-a", replayed=replayed)
    assert w.next_offset == 5 and w.recovered_records == 0 and w.replayed_records == 0
    assert await read_all(env) == [b"B0", b"B1", b"X0", b"X1", b"X2"]


def test_plan_recovery_orders_tail_and_orphans() -> None:
    def entry(epoch: int, base: int, n: int, tag: bytes) -> WalEntry:
        return WalEntry(1, 0, epoch, base, n, tag * n)

    def seg(base: int, end: int, epoch: int) -> SegmentInfo:
        return SegmentInfo(TOPIC, 0, base, end, 0, 0, 1, f"k{base}", epoch, 0, 0)

    x1, y3, z3 = entry(1, 0, 5, b"x"), entry(3, 0, 5, b"y"), entry(3, 5, 2, b"z")
    plan = plan_recovery([x1, y3, z3], 0, [])
    assert [(p.entry, p.start, p.end) for p in plan.tail] == [(y3, 0, 5), (z3, 5, 7)]
    assert [(p.entry, p.start, p.end) for p in plan.orphans] == [(x1, 0, 5)]
    # Committed by the same leadership: nothing to do. By another one: an orphan.
    assert plan_recovery([x1], 5, [seg(0, 5, 1)]).idle
    other = plan_recovery([x1], 5, [seg(0, 5, 2)])
    assert other.orphan_records == 5 and not other.tail
    # A copy of x1 rewritten under epoch 4 (carried over) supersedes it: no orphan twice.
    carried = plan_recovery([x1, entry(4, 9, 5, b"x")], 9, [seg(0, 9, 2)])
    assert carried.carried == 5 and carried.tail_records == 5 and not carried.orphans
    # A gap after the committed end: what follows it is appended again, not dropped.
    gap = plan_recovery([entry(2, 3, 2, b"g")], 0, [])
    assert gap.orphan_records == 2 and not gap.tail
    # Below the log start (retention removed [0, 5)): past retention, dropped, not appended again.
    expired = plan_recovery([x1], 10, [seg(5, 10, 2)])
    assert expired.idle and expired.expired == 5 and expired.committed == 0
    straddling = plan_recovery([entry(1, 3, 5, b"s")], 10, [seg(5, 10, 1)])
    assert straddling.idle and straddling.expired == 2 and straddling.committed == 3


# -- subprocess agents ----------------------------------------------------------------------------
TTL_MS = 2000
RENEW_MS = 300


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def agent_flags(pg_url: str, s3_url: tuple[str, str]) -> list[str]:
    url, endpoint = s3_url
    # No age rolls: acks=leader records stay in the WAL and the buffer only.
    return [
        *("--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint),
        *("--lease-ttl-ms", str(TTL_MS), "--renew-interval-ms", str(RENEW_MS)),
        *("--durable-flush-ms", "50", "--roll-age-ms", "600000"),
    ]


def metric(agent: AgentProcess, name: str, topic: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf'^{name}{{topic="{topic}"}} (\S+)$', text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def leader_of(client: Client, topic: str) -> str:
    return client.describe(topic).partitions[0].leader


def test_acks_leader_records_of_a_taken_over_agent_come_back(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    """A acknowledges acks=leader records, freezes past its lease; B takes the partition over
    and commits its own records at the same offsets; A is killed and restarted on its WAL.
    A's records are produced again to B (the live leader), after B's, and counted; a second
    restart of A (B gone, A leading) neither loses nor repeats them."""
    flags = agent_flags(pg_url, s3_url)
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    b = agents.start("--data-dir", str(tmp_path / "b"), *flags, name="b", http_port=0)
    mine = [f"a-{i}".encode() for i in range(5)]
    with streamhouse.connect(a.address) as via_a:
        via_a.create_topic(TOPIC, 1)
        assert [r.base_offset for r in via_a.produce_batch(TOPIC, mine, partition=0, acks="leader")] == [0]
        assert leader_of(via_a, TOPIC) == a.address
    a.pause()
    with streamhouse.connect(b.address) as via_b:
        wait_until(lambda: leader_of(via_b, TOPIC) == "", what="A's lease to expire while it is frozen")
        theirs = [f"b-{i}".encode() for i in range(3)]
        assert via_b.produce_batch(TOPIC, theirs, partition=0, acks="durable")[0].base_offset == 0
    a.kill()
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    # B leads and is alive: A produces its held records to B (acks=durable) and marks them.
    wait_until(
        lambda: metric(a, "streamhouse_wal_recovered_records_total", TOPIC) == 5,
        what="A to hand its taken-over records to the leader",
    )
    with streamhouse.connect(b.address) as client:
        assert leader_of(client, TOPIC) == b.address
        assert read_log(client, TOPIC)[0] == [*theirs, *mine]
    assert b.stop() == 0
    # Restarting A again neither loses nor repeats them.
    assert a.stop() == 0
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    with streamhouse.connect(a.address) as client:
        assert read_log(client, TOPIC)[0] == [*theirs, *mine]
    assert metric(a, "streamhouse_wal_recovered_records_total", TOPIC) == 0


def test_a_paused_leader_hands_its_acknowledged_records_over_when_it_wakes(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    """No restart at all: A wakes from SIGSTOP after B took over, is fenced with acks=leader
    records it acknowledged in its buffer, and produces them to B instead of dropping them."""
    flags = agent_flags(pg_url, s3_url)
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    b = agents.start("--data-dir", str(tmp_path / "b"), *flags, name="b", http_port=0)
    mine = [f"a-{i}".encode() for i in range(4)]
    with streamhouse.connect(a.address) as via_a:
        via_a.create_topic(TOPIC, 1)
        via_a.produce_batch(TOPIC, mine, partition=0, acks="leader")
    a.pause()
    with streamhouse.connect(b.address) as via_b:
        wait_until(lambda: leader_of(via_b, TOPIC) == "", what="A's lease to expire while it is frozen")
        via_b.produce_batch(TOPIC, [b"b-0", b"b-1"], partition=0, acks="durable")
        a.resume()
        wait_until(
            lambda: metric(a, "streamhouse_wal_recovered_records_total", TOPIC) == 4,
            what="A to hand its records to B after waking",
        )
        assert read_log(via_b, TOPIC)[0] == [b"b-0", b"b-1", *mine]
    # A restart of A afterwards does not hand them over a second time.
    a.kill()
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    assert b.stop() == 0
    with streamhouse.connect(a.address) as client:
        wait_until(lambda: leader_of(client, TOPIC) in ("", a.address), what="B's lease to go")
        assert read_log(client, TOPIC)[0] == [b"b-0", b"b-1", *mine]
    assert metric(a, "streamhouse_wal_recovered_records_total", TOPIC) == 0


def test_a_tail_of_many_batches_is_handed_over_in_one_produce(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    """A's held tail of twelve acks=leader batches goes to B as one acks=durable produce: one
    segment commit instead of twelve, so under churn the tail waits far less on A's disk alone
    (docs/RELIABILITY.md, the disk-loss runs). Merging is off, so B's segments count the
    commits. A restart of A afterwards hands nothing over again (the markers hold)."""
    flags = agent_flags(pg_url, s3_url)
    env = {"STREAMHOUSE_MERGE_INTERVAL_MS": "0"}
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0, env=env)
    b = agents.start("--data-dir", str(tmp_path / "b"), *flags, name="b", http_port=0, env=env)
    batches = [[f"a-{i}-{j}".encode() for j in range(3)] for i in range(12)]
    with streamhouse.connect(a.address) as via_a:
        via_a.create_topic(TOPIC, 1)
        for batch in batches:
            via_a.produce_batch(TOPIC, batch, partition=0, acks="leader")
    a.pause()
    with streamhouse.connect(b.address) as via_b:
        wait_until(lambda: leader_of(via_b, TOPIC) == "", what="A's lease to expire while it is frozen")
        via_b.produce_batch(TOPIC, [b"b-0", b"b-1"], partition=0, acks="durable")
        assert via_b.describe(TOPIC).partitions[0].segments == 1
        a.resume()
        wait_until(
            lambda: metric(a, "streamhouse_wal_recovered_records_total", TOPIC) == 36,
            what="A to hand its records to B after waking",
        )
        assert read_log(via_b, TOPIC)[0] == [b"b-0", b"b-1", *(v for batch in batches for v in batch)]
        assert via_b.describe(TOPIC).partitions[0].segments == 2  # B's own, and the whole tail
    a.kill()
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0, env=env)
    with streamhouse.connect(b.address) as via_b:
        time.sleep(2 * RENEW_MS / 1000)  # a few recovery rounds of the restarted A
        assert len(read_log(via_b, TOPIC)[0]) == 38
    assert metric(a, "streamhouse_wal_recovered_records_total", TOPIC) == 0


def test_two_leaderships_of_one_agent_both_survive_its_restart(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    """The issue's sequence: A leads (epoch 1) and acknowledges X; A is frozen past its lease;
    B takes over (epoch 2); A resumes and B is killed; A leads again and acknowledges Y; A is
    killed and restarted at once on the same WAL with nobody else leading. Before the fix
    offsets 0..4 held X after the restart and Y was lost."""
    flags = agent_flags(pg_url, s3_url)
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    b = agents.start("--data-dir", str(tmp_path / "b"), *flags, name="b")
    x = [f"x-{i}".encode() for i in range(5)]
    y = [f"y-{i}".encode() for i in range(5)]
    with streamhouse.connect(a.address) as via_a:
        via_a.create_topic(TOPIC, 1)
        via_a.produce_batch(TOPIC, x, partition=0, acks="leader")
    a.pause()
    with streamhouse.connect(b.address) as via_b:
        wait_until(lambda: leader_of(via_b, TOPIC) == "", what="A's lease to expire")
        via_b.produce_batch(TOPIC, [b"b-0"], partition=0, acks="leader")  # B leads (epoch 2)
    a.resume()
    b.kill()
    with streamhouse.connect(a.address) as via_a:
        wait_until(lambda: leader_of(via_a, TOPIC) in ("", a.address), what="B's lease to expire")
        via_a.produce_batch(TOPIC, y, partition=0, acks="leader")
    a.kill()
    a = agents.start("--data-dir", str(tmp_path / "a"), *flags, name="a", http_port=0)
    with streamhouse.connect(a.address) as client:
        values = read_log(client, TOPIC)[0]
    # Every acknowledged record of A, exactly once (B's own record is in B's WAL, not here).
    assert sorted(v for v in values if v is not None and not v.startswith(b"b-")) == sorted(x + y)
    assert values[: len(x)] == x or values[: len(y)] == y  # one leadership kept its offsets


def test_retries_off_moves_past_a_dead_address(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    live = agents.start("--data-dir", str(tmp_path / "live"), *agent_flags(pg_url, s3_url), name="live")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with streamhouse.connect([dead, live.address], retries=False, timeout_s=5) as client:
        client.create_topic(TOPIC, 1)
        offsets = [client.produce(TOPIC, f"r{i}".encode(), partition=0).offset for i in range(6)]
        assert offsets == list(range(6))
        assert read_log(client, TOPIC)[0] == [f"r{i}".encode() for i in range(6)]
