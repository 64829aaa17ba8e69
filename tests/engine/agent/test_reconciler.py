"""The orphan reconciler (engine/agent/reconciler.py) on a real PartitionManager, over SQLite + a
local object store and over PostgreSQL + SeaweedFS: unreferenced segment objects older than the
grace go, younger ones and every referenced one (rows, deferred deletions, during a concurrent
merge swap) stay; a missing object is reported (metric, readiness) and its row kept; a deleted
topic's leftover objects go."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from pathlib import Path

import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.forward import cannot_forward
from streamhouse.agent.leases import Leases
from streamhouse.agent.merger import Merger, MergeSettings
from streamhouse.agent.metrics import AgentMetrics
from streamhouse.agent.partitions import PartitionManager
from streamhouse.agent.reconciler import RESOURCE, Reconciler, ReconcileSettings, parse_segment_key
from streamhouse.agent.service import AgentService
from streamhouse.node import AgentNode
from streamhouse.storage.errors import InvalidInputError, ObjectNotFoundError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.object_store.s3 import S3ObjectStore
from streamhouse.storage.records.schema import make_batch

GRACE_MS = 1_500
SETTINGS = ReconcileSettings(interval_s=0, grace_ms=GRACE_MS, page=3, delete_batch=2)  # tiny pages: many


def reconciler_of(manager: PartitionManager, holder: str = "", settings: ReconcileSettings = SETTINGS) -> Reconciler:
    holder = holder or manager.config.holder
    leases = Leases(manager.metadata, holder=holder, agent_id=holder.partition("@")[0], ttl_ms=30_000)
    return Reconciler(manager.metadata, manager.store, leases, settings)


async def produce(manager: PartitionManager, topic: TopicInfo, partition: int, count: int) -> None:
    """`count` acks=durable produces of 5 records: a segment each."""
    for i in range(count):
        batch = make_batch([f"v{i}-{j}".encode() for j in range(5)], timestamps=[1_000 + i] * 5)
        await manager.produce(topic, partition, batch, "durable")


async def exists(manager: PartitionManager, key: str) -> bool:
    try:
        await manager.store.head(key)
    except ObjectNotFoundError:
        return False
    return True


async def referenced_keys(manager: PartitionManager, topic: str, partitions: int) -> set[str]:
    keys = {d.object_key for d in await manager.metadata.list_deletions()}
    for p in range(partitions):
        keys |= {s.object_key for s in await manager.metadata.list_segments(topic, p)}
    return keys


def test_only_segment_keys_are_considered() -> None:
    assert parse_segment_key("topics/t/00003/00000000000000000010-2.parquet") == ("t", 3)
    assert parse_segment_key("topics/t/00000/00000000000000000000-1-merged-x-y.parquet") == ("t", 0)
    assert parse_segment_key("topics/t/notes.txt") is None
    assert parse_segment_key("topics/t/00000/x.json") is None
    assert parse_segment_key("_streamhouse/readiness-probe") is None


async def test_old_orphans_go_young_and_referenced_stay_also_during_a_merge_swap(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("t", 2)
    await produce(agent, topic, 0, 8)
    await produce(agent, topic, 1, 3)
    old = [f"topics/t/0000{p}/{9_000_000 + i:020d}-7.parquet" for p in (0, 1) for i in range(3)]
    foreign = ["topics/t/00000/readme.txt", "elsewhere/00000000000000000000-1.parquet"]
    for key in old + foreign:
        await agent.store.put(key, b"orphan")
    await asyncio.sleep(GRACE_MS / 1000 + 1.0)  # everything so far is past the grace
    young = "topics/t/00001/00000000000099999999-7.parquet"
    await agent.store.put(young, b"in flight")

    # A merge swaps partition 0's old segments in while the reconciler walks: the replaced
    # objects move to deferred_deletions (merge grace long), the merged one is new; none may go.
    leases = Leases(agent.metadata, holder=agent.config.holder, agent_id="a", ttl_ms=30_000)
    merger = Merger(agent.metadata, agent.store, leases, MergeSettings(0.05, 8 << 20, 64 << 20, 2, 600_000))
    rec = reconciler_of(agent)
    merged, outcome = await asyncio.gather(merger.run_once(), rec.run_once())
    assert merged, "the merge ran"
    assert outcome is not None
    assert outcome.deleted == len(old)
    for key in old:
        assert not await exists(agent, key), key
    for key in [young, *foreign]:
        assert await exists(agent, key), key
    for key in await referenced_keys(agent, "t", 2):
        assert await exists(agent, key), key
    assert outcome.missing == {} and rec.faults() == []

    again = await rec.run_once()  # after the swap: nothing referenced goes either
    assert again is not None and again.deleted == 0
    for key in await referenced_keys(agent, "t", 2):
        assert await exists(agent, key), key
    assert len(await agent.metadata.list_deletions()) >= 2  # the replaced objects, still kept


async def test_a_missing_object_is_reported_and_its_row_kept(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("m", 1)
    await produce(agent, topic, 0, 3)
    segments = await agent.metadata.list_segments("m", 0)
    lost = segments[1]
    data = bytes(await agent.store.get(lost.object_key))
    await agent.store.delete(lost.object_key)

    metrics = AgentMetrics()
    service = AgentService(agent, metrics)
    rec = reconciler_of(agent)
    rec.on_missing = metrics.missing_objects
    service.background_faults.append(rec.faults)
    outcome = await rec.run_once()
    assert outcome is not None and outcome.missing == {"m": (1, lost.object_key)}
    assert await agent.metadata.list_segments("m", 0) == segments  # never silently dropped
    assert 'streamhouse_missing_segment_objects{topic="m"} 1.0' in metrics.render()[0].decode()
    ready, why = await service.ready()
    assert not ready and "'m'" in why and lost.object_key in why

    await agent.store.put(lost.object_key, data)  # restored by an operator
    outcome = await rec.run_once()
    assert outcome is not None and outcome.missing == {}
    assert 'streamhouse_missing_segment_objects{topic="m"} 0.0' in metrics.render()[0].decode()
    assert (await service.ready())[0]


async def test_a_deleted_topics_leftover_objects_go(agent: PartitionManager) -> None:
    topic = await agent.metadata.create_topic("gone", 2)
    kept = await agent.metadata.create_topic("kept", 1)
    await produce(agent, topic, 0, 2)
    await produce(agent, topic, 1, 2)
    await produce(agent, kept, 0, 2)
    leftovers = [s.object_key for p in (0, 1) for s in await agent.metadata.list_segments("gone", p)]
    await asyncio.sleep(GRACE_MS / 1000 + 1.0)
    await agent.metadata.delete_topic("gone")  # rows gone, objects left (as after a crash)
    await agent.forget_topic(topic)
    outcome = await reconciler_of(agent).run_once()
    assert outcome is not None and outcome.deleted == len(leftovers) == 4
    assert await agent.store.list("topics/gone/") == []
    for seg in await agent.metadata.list_segments("kept", 0):
        assert await exists(agent, seg.object_key)


async def test_one_agent_at_a_time(agent: PartitionManager) -> None:
    await agent.store.put("topics/x/00000/00000000000000000000-1.parquet", b"orphan")
    await asyncio.sleep(GRACE_MS / 1000 + 1.0)
    other = await agent.metadata.acquire_lease(RESOURCE, "b@elsewhere", 30_000)
    assert await reconciler_of(agent).run_once() is None  # the other agent walks
    assert await exists(agent, "topics/x/00000/00000000000000000000-1.parquet")
    await agent.metadata.release_lease(RESOURCE, other.holder, other.epoch)
    outcome = await reconciler_of(agent).run_once()
    assert outcome is not None and outcome.deleted == 1


async def test_the_background_loop_runs_every_interval(agent: PartitionManager) -> None:
    key = "topics/loop/00000/00000000000000000000-1.parquet"
    await agent.store.put(key, b"orphan")
    await asyncio.sleep(GRACE_MS / 1000 + 1.0)
    rec = reconciler_of(agent, settings=dataclasses.replace(SETTINGS, interval_s=0.05))
    deleted: list[tuple[str, int]] = []
    rec.on_deleted = lambda topic, count: deleted.append((topic, count))
    rec.start()
    try:
        for _ in range(200):  # bounded: 10 s at most
            if deleted:
                break
            await asyncio.sleep(0.05)
    finally:
        await rec.close()
    assert deleted == [("loop", 1)] and not await exists(agent, key)


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="orphan_grace_ms"):
        AgentConfig(data_dir=str(tmp_path), orphan_grace_ms=1_000)
    with pytest.raises(InvalidInputError, match="reconcile_interval_ms"):
        AgentConfig(data_dir=str(tmp_path), reconcile_interval_ms=-1)
    settings = ReconcileSettings.from_config(AgentConfig(data_dir=str(tmp_path)))
    assert (settings.interval_s, settings.grace_ms) == (600.0, 3_600_000)


async def test_a_failing_walk_is_logged_once_backs_off_and_recovers(
    agent: PartitionManager, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the object store is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = S3ObjectStore("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    rec = reconciler_of(agent)
    failures: list[int] = []
    rec.on_failed = lambda: failures.append(1)
    rec.store = down
    try:
        with caplog.at_level(logging.WARNING, logger="streamhouse.agent.reconciler"):
            assert await rec.run_once() is None
            assert await rec.run_once() is None
            failing = [r for r in caplog.records if "orphan reconciler store unreachable" in r.getMessage()]
            assert len(failing) == 1 and "StorageUnavailableError" in failing[0].getMessage()
            assert len(failures) == 2
            assert rec.faults() == []  # an outage: the stores' own probes report it
            held = await agent.metadata.get_lease(RESOURCE)  # released after the failure
            assert held is None or held.expires_at_ms <= await agent.metadata.now_ms()
            rec.store = agent.store
            assert await rec.run_once() is not None
            assert any("recovered after 2 failed attempts" in r.getMessage() for r in caplog.records)
    finally:
        await down.close()


async def test_the_agent_node_runs_the_reconciler_and_readiness_names_a_missing_object(tmp_path: Path) -> None:
    config = AgentConfig(
        data_dir=str(tmp_path / "agent"),
        metadata_url=f"sqlite:///{tmp_path / 'meta.db'}",
        object_store_url=f"file://{tmp_path / 'objects'}",
        reconcile_interval_ms=50,
    )
    node = await AgentNode.start(config, forward=cannot_forward)
    try:
        assert node.reconciler is not None and node.reconciler.faults in node.service.background_faults
        manager = node.service.manager
        topic = await manager.metadata.create_topic("n", 1)
        await produce(manager, topic, 0, 2)
        lost = (await manager.metadata.list_segments("n", 0))[0].object_key
        await manager.store.delete(lost)
        for _ in range(200):  # bounded: 10 s at most
            ready, why = await node.service.ready()
            if not ready:
                break
            await asyncio.sleep(0.05)
        assert not ready and lost in why
    finally:
        await node.close()
