"""Retention (engine/agent/retention.py) on a real PartitionManager over PostgreSQL + SeaweedFS:
whole segments past retention.ms / retention.bytes leave the metadata first (the log start moves,
reads below it are refused, scans start at it), their objects after the grace; the newest segment
is always kept; one remover per topic (lease); the log start survives a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.leases import Leases
from streamhouse.agent.metrics import AgentMetrics
from streamhouse.agent.partitions import PartitionManager
from streamhouse.agent.retention import (
    Limits,
    Retention,
    RetentionSettings,
    expired,
    retention_resource,
    topic_limits,
)
from streamhouse.agent.retention_metrics import RetentionMetrics
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import InvalidInputError, OffsetOutOfRangeError
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.partition.scan import ScanBounds, scan_partition
from streamhouse.storage.records.schema import make_batch

HOUR_MS = 3_600_000


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path) -> AgentConfig:
    url, endpoint = request.getfixturevalue("s3_url")
    return AgentConfig(
        data_dir=str(tmp_path / "agent"),
        agent_id="a",
        roll_age_ms=600_000,
        metadata_url=request.getfixturevalue("pg_url"),
        object_store_url=url,
        s3_endpoint=endpoint,
    )


@pytest.fixture
async def agent(config: AgentConfig) -> AsyncIterator[PartitionManager]:
    manager = await PartitionManager.start(config)
    yield manager
    await manager.close()


def retention_of(manager: PartitionManager, grace_ms: int = 60_000, holder: str = "") -> Retention:
    """`grace_ms` 0: no reader cache to forget (another agent's remover)."""
    holder = holder or manager.config.holder
    leases = Leases(manager.metadata, holder=holder, agent_id=holder.partition("@")[0], ttl_ms=30_000)
    settings = RetentionSettings(interval_s=0, default_ms=-1, default_bytes=-1, grace_ms=grace_ms)
    lists = manager.reader.lists if grace_ms else None
    return Retention(manager.metadata, manager.store, leases, settings, lists=lists)


async def produce_segments(manager: PartitionManager, topic: TopicInfo, count: int, ts: int, start: int = 0) -> None:
    """`count` acks=durable produces of 10 records stamped `ts`: one segment each."""
    for i in range(start, start + count):
        batch = make_batch([f"r{i}-{j}".encode() for j in range(10)], timestamps=[ts] * 10)
        await manager.produce(topic, 0, batch, "durable")


def seg(base: int, end: int, max_ts: int, size: int) -> SegmentInfo:
    return SegmentInfo("t", 0, base, end, 0, max_ts, size, f"k{base}", 1, 1, 0)


def test_expired_plans_the_oldest_segments_and_never_the_newest() -> None:
    now = 10 * HOUR_MS
    segments = [seg(0, 10, HOUR_MS, 100), seg(10, 20, 2 * HOUR_MS, 100), seg(20, 30, 9 * HOUR_MS, 100)]
    segments.append(seg(30, 40, HOUR_MS, 100))  # newest, yet old: always kept
    assert expired(segments, Limits(5 * HOUR_MS, -1), now) == segments[:2]  # stops at the first young one
    assert expired(segments, Limits(0, -1), now) == segments[:3]
    assert expired(segments, Limits(-1, 250), now) == segments[:1]  # 300 left is over 250: one more is too many
    assert expired(segments, Limits(-1, 200), now) == segments[:2]
    assert expired(segments, Limits(-1, 0), now) == segments[:3]
    assert expired(segments, Limits(-1, 400), now) == []
    assert expired(segments[:1], Limits(0, 0), now) == []
    settings = RetentionSettings(interval_s=1, default_ms=7, default_bytes=-1, grace_ms=0)
    assert topic_limits(TopicInfo("t", 1, 1), settings) == Limits(7, -1)  # the server default
    assert topic_limits(TopicInfo("t", 1, 1, {"retention.bytes": "9"}), settings) == Limits(7, 9)
    assert topic_limits(TopicInfo("t", 1, 1, {"retention.ms": "-1"}), settings) is None
    assert topic_limits(TopicInfo("t", 1, 1, {"cleanup.policy": "compact"}), settings) is None
    assert topic_limits(TopicInfo("t", 1, 1, {"cleanup.policy": "compact,delete"}), settings) == Limits(7, -1)
    with pytest.raises(InvalidInputError, match="retention_ms"):
        AgentConfig(retention_ms=-2)


async def test_retention_by_time_moves_the_log_start_and_keeps_objects_for_the_grace(
    agent: PartitionManager,
) -> None:
    topic = await agent.metadata.create_topic("old", 1, {"retention.ms": "60000"})
    await produce_segments(agent, topic, 4, now_ms() - HOUR_MS)
    await produce_segments(agent, topic, 2, now_ms(), start=4)
    keys = [s.object_key for s in await agent.metadata.list_segments("old", 0)]
    assert (await agent.read("old", 0, 0, 100)).num_rows == 60  # caches the list: must be forgotten
    retention = retention_of(agent)
    metrics = AgentMetrics()
    RetentionMetrics(metrics.registry).wire(retention, metrics.objects_deleted)

    [outcome] = await retention.run_once()
    assert (outcome.partition, outcome.segments, outcome.log_start) == (0, 4, 40)
    log = await agent.metadata.list_log("old", 0)
    assert log.log_start == 40 and [s.base_offset for s in log.segments] == [40, 50]
    with pytest.raises(OffsetOutOfRangeError) as refused:
        await agent.read("old", 0, 0, 100)
    assert (refused.value.topic, refused.value.offset, refused.value.log_start) == ("old", 0, 40)
    assert "below the log start 40" in str(refused.value)
    assert (await agent.read("old", 0, 40, 100)).column("offset").to_pylist() == list(range(40, 60))
    table, stats = await scan_partition(agent.reader, topic, 0, ScanBounds(), ["offset"])
    assert table.column("offset").to_pylist() == list(range(40, 60)) and stats.log_start == 40
    # Removed from the metadata first; the objects stay for the grace (readers finish).
    assert sorted(d.object_key for d in await agent.metadata.list_deletions()) == sorted(keys[:4])
    assert {o.key for o in await agent.store.list("topics/old/")} == set(keys)
    text = metrics.render()[0].decode()
    assert 'streamhouse_retention_segments_removed_total{topic="old"} 4.0' in text
    assert 'streamhouse_log_start_offset{partition="0",topic="old"} 40.0' in text
    assert await retention.run_once() == []  # nothing more is old
    assert retention.faults() == []


async def test_retention_by_bytes_keeps_the_newest_segment(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("big", 1)
    await produce_segments(agent, topic, 6, now_ms())
    segments = await agent.metadata.list_segments("big", 0)
    keep = sum(s.size_bytes for s in segments[3:])
    await agent.metadata.alter_topic("big", {"retention.bytes": str(keep)})
    retention = retention_of(agent, grace_ms=0, holder="b@elsewhere")  # no reader cache: grace 0 allowed
    retention.lists = None
    [outcome] = await retention.run_once()
    assert (outcome.segments, outcome.log_start, outcome.removed_bytes) == (
        3,
        30,
        sum(s.size_bytes for s in segments[:3]),
    )
    # Grace 0: the same round deleted the objects.
    assert {o.key for o in await agent.store.list("topics/big/")} == {s.object_key for s in segments[3:]}
    assert await agent.metadata.list_deletions() == []
    await agent.metadata.alter_topic("big", {"retention.bytes": "0"})
    [outcome] = await retention.run_once()
    assert outcome.log_start == 50  # everything but the newest segment
    assert [s.base_offset for s in await agent.metadata.list_segments("big", 0)] == [50]
    assert await retention.run_once() == []


async def test_one_remover_per_topic(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("shared", 1, {"retention.ms": "1000"})
    await produce_segments(agent, topic, 3, now_ms() - HOUR_MS)
    other = await agent.metadata.acquire_lease(retention_resource("shared"), "z@other-agent", 30_000)
    retention = retention_of(agent)
    assert await retention.run_once() == []  # held elsewhere: skipped, nothing changed
    assert (await agent.metadata.list_log("shared", 0)).log_start == 0
    await agent.metadata.release_lease(other.resource, other.holder, other.epoch)
    [outcome] = await retention.run_once()
    assert outcome.log_start == 20


async def test_a_failing_topic_is_said_once_backs_off_and_names_itself_in_readiness(
    agent: PartitionManager, caplog: pytest.LogCaptureFixture
) -> None:
    """A limit stored before it was checked (straight into the metadata) is a fault: logged once,
    counted, in readiness, retried with backoff; other topics go on."""
    bad = await agent.metadata.create_topic("bad", 1)
    await agent.metadata.alter_topic("bad", {"retention.ms": "soon"})  # the store does not judge values
    good = await agent.metadata.create_topic("good", 1, {"retention.ms": "1000"})
    await produce_segments(agent, good, 2, now_ms() - HOUR_MS)
    await produce_segments(agent, bad, 2, now_ms() - HOUR_MS)
    retention = retention_of(agent)
    metrics = AgentMetrics()
    RetentionMetrics(metrics.registry).wire(retention, metrics.objects_deleted)
    with caplog.at_level("WARNING", logger="streamhouse.agent.retention"):
        [outcome] = await retention.run_once()
        assert outcome.topic == "good"
        assert await retention.run_once() == []  # backing off: not tried again yet
    [fault] = retention.faults()
    assert "retention of topic 'bad' failing" in fault and "ValueError" in fault
    assert len([r for r in caplog.records if "'bad'" in r.getMessage()]) == 1  # said once
    text = metrics.render()[0].decode()
    assert 'streamhouse_retention_failures_total{topic="bad"} 1.0' in text
    assert "streamhouse_retention_failing 1.0" in text
    await agent.metadata.alter_topic("bad", {"retention.ms": "1000"})  # repaired
    await asyncio.sleep(retention.health.wait_s("bad") + 0.05)
    assert [o.topic for o in await retention.run_once()] == ["bad"]
    assert retention.faults() == [] and "streamhouse_retention_failing 0.0" in metrics.render()[0].decode()


async def test_a_restart_keeps_the_log_start(config: AgentConfig) -> None:
    first = await PartitionManager.start(config)
    try:
        topic = await first.metadata.create_topic("kept", 1, {"retention.ms": "1000"})
        await produce_segments(first, topic, 3, now_ms() - HOUR_MS)
        batch = make_batch([b"tail"], timestamps=[now_ms()])
        await first.produce(topic, 0, batch, "leader")  # unflushed: flushed at close
        assert (await retention_of(first).run_once())[0].log_start == 20
    finally:
        await first.close()
    again = await PartitionManager.start(config)
    try:
        log = await again.metadata.list_log("kept", 0)
        assert log.log_start == 20 and log.segments[-1].end_offset == 31
        with pytest.raises(OffsetOutOfRangeError):
            await again.read("kept", 0, 5, 100)
        assert (await again.read("kept", 0, 20, 100)).column("offset").to_pylist() == list(range(20, 31))
    finally:
        await again.close()
