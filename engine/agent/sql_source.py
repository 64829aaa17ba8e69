"""The agent as the SQL engine's TopicSource (and the jobs' view of their topics): topics from
the metadata store, records through the partition reader and, for ad-hoc SQL only, the
unflushed ones of the writers this agent leads (jobs read committed segments: see `scan`).
Topic DDL goes through the agent's own topic operations (AgentService), so its topic cache
sees every change; only those operations are asked for (TopicAdmin), so this module needs no
AgentService."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import pyarrow as pa

from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.metadata.log_start import PartitionStats
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.partition.scan import (
    PartitionPlan,
    ScanBounds,
    ScanStats,
    SegmentChunk,
    plan_partition,
    read_chunk,
    scan_partition,
)


class TopicAdmin(Protocol):
    """The agent's topic operations (AgentService implements them)."""

    async def list_topics(self) -> list[TopicInfo]: ...

    async def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None, value_schema: str | None = None
    ) -> TopicInfo: ...

    async def delete_topic(self, name: str) -> None: ...

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Iterable[str] | None = None,
        add_partitions: int | None = None,
    ) -> TopicInfo: ...


class AgentTopics:
    def __init__(self, admin: TopicAdmin, manager: PartitionManager) -> None:
        self.admin = admin
        self.manager = manager

    async def list_topics(self) -> list[TopicInfo]:
        return await self.admin.list_topics()

    async def get_topic(self, name: str) -> TopicInfo:
        return await self.manager.metadata.get_topic(name)

    async def create_topic(
        self, name: str, partitions: int, config: dict[str, str], value_schema: str | None
    ) -> TopicInfo:
        return await self.admin.create_topic(name, partitions, config, value_schema)

    async def delete_topic(self, name: str) -> None:
        await self.admin.delete_topic(name)

    async def alter_topic(
        self, name: str, set_config: Mapping[str, str], reset: Sequence[str], add_partitions: int | None
    ) -> TopicInfo:
        return await self.admin.alter_topic(name, set_config, reset, add_partitions)

    async def end_offset(self, topic: str, partition: int) -> int:
        """The high watermark (PartitionManager.end_offsets): where what jobs read ends."""
        return await self.manager.end_offset(topic, partition)

    async def acked_end(self, topic: str, partition: int) -> int:
        """One past the last acknowledged record (this agent's leader's view when it leads)."""
        return await self.manager.acked_end(topic, partition)

    async def partition_stats(self, topic: str) -> list[PartitionStats]:
        return await self.manager.metadata.partition_stats(topic)

    def leads(self, topic: str, partition: int) -> bool:
        """Whether this agent leads the partition (its unflushed records are known here)."""
        return self.manager.leading(topic, partition) is not None

    async def scan(
        self, topic: TopicInfo, partition: int, bounds: ScanBounds, columns: list[str], *, tail: bool = False
    ) -> tuple[pa.Table, ScanStats]:
        """Committed segments only, never the leader's buffer (jobs: a record a takeover may
        still change must not reach a view or a checkpoint), unless `tail` (ad-hoc SQL, whose
        coverage says so). A scan reaching the durable end while this agent leads the partition
        with records past it starts their durable round, so a job here sees them within a
        roll, not the roll age."""
        manager = self.manager
        writer = manager.leading(topic.name, partition)
        if tail:
            return await scan_partition(manager.reader, topic, partition, bounds, columns, writer)
        if writer is not None and (bounds.end_offset is None or bounds.end_offset > writer.durable_end):
            manager.make_durable(topic.name, partition)  # nothing past the durable end: does nothing
        return await scan_partition(manager.reader, topic, partition, bounds, columns)

    async def plan_scan(
        self, topic: TopicInfo, partition: int, bounds: ScanBounds, columns: list[str], chunk_bytes: int
    ) -> PartitionPlan:
        writer = self.manager.leading(topic.name, partition)
        reader = self.manager.reader
        return await plan_partition(reader, topic, partition, bounds, columns, writer, chunk_bytes=chunk_bytes)

    async def read_chunk(self, plan: PartitionPlan, chunk: SegmentChunk, columns: list[str]) -> pa.Table:
        return await read_chunk(self.manager.reader, plan, chunk, columns)
