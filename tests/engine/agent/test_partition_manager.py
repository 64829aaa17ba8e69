"""The agent's partition manager on real stores: ack modes, leadership, fencing, recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.errors import FencedError, NotLeaderError, PartitionNotFoundError
from streamhouse.storage.records.schema import make_batch
from tests.engine.agent.crash import crash


def config(tmp_path: Path, name: str, **kw: object) -> AgentConfig:
    """Agents `name` sharing one metadata store and object store, each with its own WAL."""
    base: dict[str, object] = {
        "data_dir": str(tmp_path / name),
        "metadata_url": f"sqlite:///{tmp_path / 'shared' / 'meta.db'}",
        "object_store_url": f"file://{tmp_path / 'shared' / 'objects'}",
        "agent_id": name,
        "advertised_address": f"{name}.local:1234",
        "lease_ttl_ms": 600,
        "renew_interval_ms": 150,
        "durable_flush_ms": 50,
        "flush_check_ms": 20,
        "fsync": "always",
    }
    base.update(kw)
    return AgentConfig(**base)  # type: ignore[arg-type]


async def values(manager: PartitionManager, topic: str = "t", partition: int = 0) -> list[bytes | None]:
    """Everything acknowledged: reads end at the durable end, so first the durable round a
    waiting reader starts (make_durable) commits the leader's buffer."""
    for _ in range(500):
        durable, acked = await manager.end_offsets(topic, partition)
        if durable >= acked:
            break
        manager.make_durable(topic, partition)
        await asyncio.sleep(0.01)
    table = await manager.read(topic, partition, 0, 1000)
    return table.column("value").to_pylist()


async def test_ack_modes(tmp_path: Path) -> None:
    agent = await PartitionManager.start(config(tmp_path, "a"))
    topic = await agent.metadata.create_topic("t", 2)
    assert await agent.produce(topic, 0, make_batch([b"1", b"2"]), "leader") == 0
    assert await agent.metadata.get_end_offset("t", 0) == 0  # acknowledged, not yet in a segment
    assert await agent.produce(topic, 0, make_batch([b"3"]), "durable") == 2
    assert await agent.metadata.get_end_offset("t", 0) == 3  # durable: committed before the ack
    assert await agent.produce(topic, 1, make_batch([b"x"]), "none") == -1
    for _ in range(500):
        agent.make_durable("t", 1)  # as a reader waiting at the durable end does (acks=none appends later)
        if await agent.end_offset("t", 1) == 1:  # the high watermark: readers are served up to it
            break
        await asyncio.sleep(0.01)
    assert await values(agent) == [b"1", b"2", b"3"]
    assert await values(agent, partition=1) == [b"x"]
    with pytest.raises(PartitionNotFoundError):
        await agent.produce(topic, 2, make_batch([b"y"]))
    await agent.close()


async def test_durable_acks_share_one_roll(tmp_path: Path) -> None:
    agent = await PartitionManager.start(config(tmp_path, "a", durable_flush_ms=100, flush_check_ms=100))
    topic = await agent.metadata.create_topic("t", 1)
    bases = await asyncio.gather(*(agent.produce(topic, 0, make_batch([b"v"]), "durable") for _ in range(20)))
    assert sorted(bases) == list(range(20))
    segments = await agent.metadata.list_segments("t", 0)
    assert len(segments) < 20 and segments[-1].end_offset == 20
    await agent.close()


async def test_graceful_shutdown_flushes_and_releases(tmp_path: Path) -> None:
    a = await PartitionManager.start(config(tmp_path, "a"))
    topic = await a.metadata.create_topic("t", 1)
    await a.produce(topic, 0, make_batch([b"1", b"2"]))
    await a.close()
    b = await PartitionManager.start(config(tmp_path, "b"))
    assert await b.metadata.get_end_offset("t", 0) == 2
    assert await b.produce(topic, 0, make_batch([b"3"])) == 2  # lease was released: no wait
    assert await values(b) == [b"1", b"2", b"3"]
    await b.close()


async def test_other_agent_is_not_the_leader_until_the_lease_expires(tmp_path: Path) -> None:
    a = await PartitionManager.start(config(tmp_path, "a"))
    b = await PartitionManager.start(config(tmp_path, "b"))
    topic = await a.metadata.create_topic("t", 1)
    await a.produce(topic, 0, make_batch([b"1"]), "durable")
    with pytest.raises(NotLeaderError) as info:
        await b.produce(topic, 0, make_batch([b"no"]))
    assert info.value.leader == "a.local:1234"
    assert await values(b) == [b"1"]  # any agent serves committed segments
    await crash(a)  # a dies holding the lease
    await asyncio.sleep(0.7)
    assert await b.produce(topic, 0, make_batch([b"2"]), "durable") == 1
    assert await values(b) == [b"1", b"2"]
    await b.close()


async def test_restart_recovers_acknowledged_records_from_the_wal(tmp_path: Path) -> None:
    a = await PartitionManager.start(config(tmp_path, "a"))
    topic = await a.metadata.create_topic("t", 1)
    await a.produce(topic, 0, make_batch([b"1", b"2"]), "durable")
    await a.produce(topic, 0, make_batch([b"3"]), "leader")  # WAL only
    await crash(a)
    await asyncio.sleep(0.7)
    again = await PartitionManager.start(config(tmp_path, "a", agent_id="a2"))
    assert await again.produce(topic, 0, make_batch([b"4"])) == 3
    assert await values(again) == [b"1", b"2", b"3", b"4"]
    await again.close()


async def test_paused_leader_fails_pending_produces_and_commits_nothing(tmp_path: Path) -> None:
    a = await PartitionManager.start(config(tmp_path, "a"))
    b = await PartitionManager.start(config(tmp_path, "b"))
    topic = await a.metadata.create_topic("t", 1)
    await a.produce(topic, 0, make_batch([b"1"]), "durable")
    # "SIGSTOP" a: its loops stop running while the lease expires and b takes over.
    for task in a._tasks:
        task.cancel()
    await asyncio.sleep(0.7)
    assert await b.produce(topic, 0, make_batch([b"b1"]), "durable") == 1
    # a resumes and serves a produce: it must not acknowledge it.
    with pytest.raises(FencedError):
        await a.produce(topic, 0, make_batch([b"stale"]), "leader")
    assert a.leading("t", 0) is None
    await b.produce(topic, 0, make_batch([b"b2"]), "durable")
    assert await values(b) == [b"1", b"b1", b"b2"]
    await b.close()
    await a.close()


def test_config_from_environment(tmp_path: Path) -> None:
    env = {"STREAMHOUSE_DATA_DIR": str(tmp_path), "STREAMHOUSE_FSYNC": "always", "STREAMHOUSE_GRPC_PORT": "7000"}
    c = AgentConfig.from_env(env, http_port=9000)
    assert (c.fsync, c.grpc_port, c.http_port) == ("always", 7000, 9000)
    assert c.resolved_metadata_url == f"sqlite:///{tmp_path.resolve() / 'metadata.db'}"
    assert c.holder.endswith("@127.0.0.1:7000")


async def test_durable_rolls_at_most_once_per_window_and_the_first_at_once(tmp_path: Path) -> None:
    """A lone durable producer waits only for its upload; the next roll of the partition
    waits out the window, so producers arriving meanwhile share it."""
    agent = await PartitionManager.start(config(tmp_path, "a", durable_flush_ms=300, flush_check_ms=20))
    topic = await agent.metadata.create_topic("t", 1)
    clock = asyncio.get_running_loop().time
    started = clock()
    await agent.produce(topic, 0, make_batch([b"first"]), "durable")
    assert clock() - started < 0.29  # no window to wait for: nothing rolled recently
    assert len(await agent.metadata.list_segments("t", 0)) == 1
    await asyncio.gather(*(agent.produce(topic, 0, make_batch([b"v"]), "durable") for _ in range(5)))
    assert clock() - started >= 0.29  # the second roll waited for the window
    segments = await agent.metadata.list_segments("t", 0)
    assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 1), (1, 6)]  # the five shared one roll
    await agent.close()
