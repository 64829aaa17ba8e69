"""Small-segment merging (engine/agent/merger.py) on a real PartitionManager, over SQLite + a local
object store and over PostgreSQL + SeaweedFS: acks=durable trickles end as a handful of
segments, reads (fetch and SQL scans) see the same records at the same offsets before, during
and after the swaps, and replaced objects go only after their grace."""

from __future__ import annotations

import asyncio
import dataclasses

import pyarrow as pa
import pytest

from streamhouse.agent.leases import Leases
from streamhouse.agent.merger import Merger, MergeSettings, merge_resource, plan_runs
from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.errors import ObjectNotFoundError
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.partition.scan import ScanBounds, scan_partition
from streamhouse.storage.records.schema import RECORD_COLUMNS, make_batch

SETTINGS = MergeSettings(interval_s=0.05, small_bytes=8 << 20, target_bytes=64 << 20, min_segments=4, grace_ms=0)


def merger_of(manager: PartitionManager, settings: MergeSettings = SETTINGS, holder: str = "") -> Merger:
    config = manager.config
    holder = holder or config.holder  # another agent id: another agent (not an earlier self)
    leases = Leases(manager.metadata, holder=holder, agent_id=holder.partition("@")[0], ttl_ms=30_000)
    return Merger(manager.metadata, manager.store, leases, settings, lists=None)


async def produce_small(manager: PartitionManager, topic: TopicInfo, start: int, count: int) -> None:
    """`count` acks=durable produces of 10 records each: every one rolls its own segment."""
    for i in range(start, start + count):
        values: list[bytes | None] = [f"r{i}-{j}".encode() if j % 3 else None for j in range(10)]
        keys: list[bytes | None] = [b"" if j == 4 else f"k{j}".encode() for j in range(10)]
        headers = [[("h", f"{i}".encode())] if j % 2 else None for j in range(10)]
        batch = make_batch(values, keys=keys, headers=headers, timestamps=[1_000 + i] * 10)
        await manager.produce(topic, 0, batch, "durable")


async def read_all(manager: PartitionManager, topic: str, end: int) -> pa.Table:
    return await manager.read(topic, 0, 0, end + 1)


async def test_1000_durable_produces_end_as_a_handful_of_segments(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("trickle", 1)
    await produce_small(agent, topic, 0, 1000)
    before = await agent.metadata.list_segments("trickle", 0)
    assert len(before) > 500  # acks=durable rolled (nearly) every produce
    expected = await read_all(agent, "trickle", 10_000)
    assert expected.column("offset").to_pylist() == list(range(10_000))

    merger = merger_of(agent)
    outcomes = await merger.run_once()
    after = await agent.metadata.list_segments("trickle", 0)
    assert len(after) <= 5, [(s.base_offset, s.end_offset) for s in after]
    assert after[-1] == before[-1]  # the last segment is never merged
    assert sum(o.replaced for o in outcomes) == len(before) - len(after) + len(outcomes)
    agent.reader.lists.forget("trickle", 0)
    assert (await read_all(agent, "trickle", 10_000)).equals(expected)

    # With a grace of 0 the round's deleter already removed the replaced objects, once.
    old_keys = {s.object_key for s in before} - {s.object_key for s in after}
    assert len(old_keys) == sum(o.replaced for o in outcomes)
    assert await agent.metadata.list_deletions() == []
    assert await merger.delete_due() == 0
    for key in list(old_keys)[:20]:
        with pytest.raises(ObjectNotFoundError):
            await agent.store.head(key)
    assert await merger.run_once() == []  # nothing left worth merging
    assert merger.health.faults() == []


async def test_the_grace_keeps_old_objects_for_readers(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("g", 1)
    await produce_small(agent, topic, 0, 8)
    before = await agent.metadata.list_segments("g", 0)
    merger = merger_of(agent, dataclasses.replace(SETTINGS, grace_ms=60_000))
    assert len(await merger.run_once()) == 1
    # A reader that listed the old segments before the swap still reads them.
    for seg in before:
        assert (await agent.reader.segments.read(seg.ref)).num_rows == 10
    assert await merger.delete_due() == 0
    assert len(await agent.metadata.list_deletions()) == len(before) - 1


async def test_reads_during_merges_never_miss_or_repeat(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("busy", 1)
    await produce_small(agent, topic, 0, 200)
    stop = asyncio.Event()
    checked = {"fetch": 0, "scan": 0}

    async def fetch_reader() -> None:
        while not stop.is_set():
            table = await agent.read("busy", 0, 0, 1_000_000)  # cached segment lists
            offsets = table.column("offset").to_pylist()
            assert offsets == list(range(len(offsets))) and len(offsets) >= 2000
            assert table.column("value")[15].as_py() == b"r1-5"
            checked["fetch"] += 1
            await asyncio.sleep(0)

    async def scan_reader() -> None:
        while not stop.is_set():
            table, _ = await scan_partition(
                agent.reader, topic, 0, ScanBounds(), list(RECORD_COLUMNS), agent.leading("busy", 0)
            )
            offsets = table.column("offset").to_pylist()
            assert offsets == list(range(len(offsets))) and len(offsets) >= 2000
            checked["scan"] += 1
            await asyncio.sleep(0)

    async def writer_and_merger() -> None:
        merger = merger_of(agent, dataclasses.replace(SETTINGS, min_segments=2, grace_ms=2_000))
        for round_ in range(6):
            await produce_small(agent, topic, 200 + 20 * round_, 20)
            await merger.run_once()
        stop.set()

    await asyncio.gather(fetch_reader(), scan_reader(), writer_and_merger())
    assert checked["fetch"] > 3 and checked["scan"] > 3
    final = await agent.read("busy", 0, 0, 1_000_000)
    assert final.column("offset").to_pylist() == list(range(3200))
    assert len(await agent.metadata.list_segments("busy", 0)) <= 6


async def test_one_merger_per_partition_and_a_lost_race_changes_nothing(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("race", 1)
    await produce_small(agent, topic, 0, 10)
    before = await agent.metadata.list_segments("race", 0)
    # Another agent's merger holds the lease: this one skips the partition.
    other = await agent.metadata.acquire_lease(merge_resource("race", 0), "b@elsewhere:1", 60_000)
    assert await merger_of(agent).run_once() == []
    await agent.metadata.release_lease(other.resource, other.holder, other.epoch)
    # Two planners read the same rows; the second swap is refused and its upload removed.
    first, second = merger_of(agent), merger_of(agent, holder="b@second:2")
    run = plan_runs(before, SETTINGS)[0]
    lease = await second.leases.acquire(merge_resource("race", 0))
    assert (await first.merge_partition("race", 0)) == []  # held by `second` now: skipped
    await second.leases.release(lease)
    done = await first.merge_partition("race", 0)
    assert len(done) == 1
    lease = await second.leases.acquire(merge_resource("race", 0))
    outcome, _ = await second._merge_run(run, lease)
    assert outcome is None
    after = await agent.metadata.list_segments("race", 0)
    assert [s.object_key for s in after] == [done[0].object_key, before[-1].object_key]
    objects = {o.key for o in await agent.store.list("topics/race/")}
    assert {s.object_key for s in after} <= objects
    assert not [k for k in objects if "-merged-" in k and k != done[0].object_key]  # loser's upload gone


def test_plan_runs_rules() -> None:
    def seg(base: int, end: int, size: int = 100, epoch: int = 1) -> SegmentInfo:
        return SegmentInfo("t", 0, base, end, 0, 0, size, f"k{base}", epoch, 10, 0)

    s = dataclasses.replace(SETTINGS, small_bytes=1000, target_bytes=2500, min_segments=2)
    segs = [
        seg(0, 1),
        seg(1, 2),
        seg(2, 3, 5000),
        seg(3, 4),
        seg(4, 5),
        seg(5, 6, epoch=2),
        seg(6, 7, epoch=2),
        seg(7, 8),
    ]
    runs = [[x.base_offset for x in r] for r in plan_runs(segs, s)]
    assert runs == [[0, 1], [3, 4], [5, 6]]  # big ones and epoch changes cut; the last never
    many = [seg(i, i + 1, 600) for i in range(10)]
    assert [len(r) for r in plan_runs(many, s)] == [4, 4]  # target bytes cap a run (9th is last)
    assert plan_runs(many[:2], s) == []


async def test_a_merge_that_keeps_failing_says_so_once_backs_off_and_recovers(
    agent: PartitionManager, caplog: pytest.LogCaptureFixture
) -> None:
    from streamhouse.agent.metrics import AgentMetrics

    topic = await agent.metadata.create_topic("bad", 1)
    await produce_small(agent, topic, 0, 6)
    before = await agent.metadata.list_segments("bad", 0)
    victim = before[2]
    good = bytes(await agent.store.get(victim.object_key))
    damaged = bytearray(good)
    damaged[10] ^= 0xFF  # inside the first row group: its CRC32C no longer matches
    await agent.store.put(victim.object_key, bytes(damaged), if_absent=False)
    merger = merger_of(agent)
    metrics = AgentMetrics()
    merger.health.on_change = metrics.merge_state
    with caplog.at_level("WARNING", logger="streamhouse.agent.merge_health"):
        for _ in range(3):  # the first attempt fails; the next two are inside the backoff
            assert await merger.run_once() == []
    [fault] = merger.health.faults()
    assert "segment merging of bad/0 failing" in fault and "CorruptDataError" in fault
    assert len([r for r in caplog.records if "bad/0" in r.getMessage()]) == 1  # said once
    text = metrics.render()[0].decode()
    assert 'streamhouse_merge_failures_total{topic="bad"} 1.0' in text
    assert "streamhouse_merge_failing_partitions 1.0" in text
    assert await agent.metadata.list_segments("bad", 0) == before  # nothing swapped
    assert not [o for o in await agent.store.list("topics/bad/") if "-merged-" in o.key]

    await agent.store.put(victim.object_key, good, if_absent=False)  # repaired
    await asyncio.sleep(merger.health.wait_s("bad/0") + 0.05)
    assert len(await merger.run_once()) == 1
    assert merger.health.faults() == []
    assert "streamhouse_merge_failing_partitions 0.0" in metrics.render()[0].decode()
