"""An agent restarting on a WAL whose records another live agent now leads is ready (its
PartitionManager started, so the agent can listen) before those records are handed to the
leader: the hand-over is an acks=durable produce, which under an S3 outage took over a minute,
and a supervisor with a start timeout killed the agent again and again (found by `streamhouse
chaos`, reports14/chaos.md). The hand-over then happens in the background, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.records.schema import make_batch
from tests.engine.agent.crash import crash


def config(tmp_path: Path, name: str) -> AgentConfig:
    return AgentConfig(
        data_dir=str(tmp_path / name),
        metadata_url=f"sqlite:///{tmp_path / 'shared' / 'meta.db'}",
        object_store_url=f"file://{tmp_path / 'shared' / 'objects'}",
        agent_id=name,
        advertised_address=f"{name}.local:1234",
        lease_ttl_ms=600,
        renew_interval_ms=150,
        durable_flush_ms=50,
        flush_check_ms=20,
        fsync="always",
    )


async def test_a_restart_is_ready_before_its_records_reach_the_live_leader(tmp_path: Path) -> None:
    a = await PartitionManager.start(config(tmp_path, "a"))
    topic = await a.metadata.create_topic("t", 1)
    await a.produce(topic, 0, make_batch([b"a-1", b"a-2"]), "leader")  # acknowledged, only in a's WAL
    await crash(a)
    await asyncio.sleep(0.7)  # a's lease expires
    b = await PartitionManager.start(config(tmp_path, "b"))
    assert await b.produce(topic, 0, make_batch([b"b-1"]), "durable") == 0
    leader_slow = asyncio.Event()  # the leader's durable ack, held (an S3 outage)
    handed: list[str] = []

    async def forward(address: str, name: str, partition: int, batch: pa.RecordBatch) -> int:
        handed.append(address)
        await leader_slow.wait()
        return await b.produce(topic, partition, batch, "durable")

    a = await asyncio.wait_for(PartitionManager.start(config(tmp_path, "a"), forward=forward), 10)
    for _ in range(100):  # the recovery loop hands them over in the background
        if handed:
            break
        await asyncio.sleep(0.05)
    assert handed == ["b.local:1234"]
    leader_slow.set()
    for _ in range(100):
        values = (await b.read("t", 0, 0, 100)).column("value").to_pylist()
        if len(values) == 3:
            break
        await asyncio.sleep(0.05)
    assert values == [b"b-1", b"a-1", b"a-2"]
    await a.close()
    await b.close()
