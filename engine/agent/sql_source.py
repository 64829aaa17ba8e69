"""The agent as the SQL engine's TopicSource: topics from the metadata store, records
through the partition reader, unflushed ones from the writers this agent leads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from streamhouse.storage.model import TopicInfo
from streamhouse.storage.partition.scan import ScanBounds, ScanStats, scan_partition

if TYPE_CHECKING:
    from streamhouse.agent.service import AgentService


class AgentTopics:
    def __init__(self, service: AgentService) -> None:
        self.service = service

    async def list_topics(self) -> list[TopicInfo]:
        return await self.service.list_topics()

    async def get_topic(self, name: str) -> TopicInfo:
        return await self.service.metadata.get_topic(name)

    async def create_topic(
        self, name: str, partitions: int, config: dict[str, str], value_schema: str | None
    ) -> TopicInfo:
        return await self.service.create_topic(name, partitions, config, value_schema)

    async def delete_topic(self, name: str) -> None:
        await self.service.delete_topic(name)

    async def alter_topic(
        self, name: str, set_config: Mapping[str, str], reset: Sequence[str], add_partitions: int | None
    ) -> TopicInfo:
        return await self.service.alter_topic(name, set_config, reset, add_partitions)

    async def end_offset(self, topic: str, partition: int) -> int:
        return await self.service.manager.end_offset(topic, partition)

    async def scan(
        self, topic: TopicInfo, partition: int, bounds: ScanBounds, columns: list[str]
    ) -> tuple[pa.Table, ScanStats]:
        manager = self.service.manager
        writer = manager.leading(topic.name, partition)
        return await scan_partition(manager.reader, topic, partition, bounds, columns, writer)
