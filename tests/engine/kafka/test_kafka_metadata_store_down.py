"""Kafka Metadata while the metadata store is unreachable (the 42-min chaos run, seed 2032, a
PostgreSQL restart): a topic's partition leaders are leases in the store, so they cannot be
read. The topic is answered LEADER_NOT_AVAILABLE, which clients retry, instead of the
StorageUnavailableError closing the connection, and with it every produce in flight on it."""

from __future__ import annotations

from pathlib import Path

import streamhouse
from streamhouse.agent import partition_states
from streamhouse.agent.service import AgentService
from streamhouse.api.contract import Leadership
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.kafka.handlers import LEADER_NOT_AVAILABLE, Context, Handlers, Node
from streamhouse.kafka.registry import BrokerRegistry
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.model import TopicInfo


class _LeasesIn:
    """The agent's front end, with the partitions' leases read from `store`."""

    def __init__(self, service: AgentService, store: MetadataStore) -> None:
        self.service, self.store = service, store

    async def topic(self, name: str, partition: int | None = None) -> TopicInfo:
        return await self.service.topic(name, partition)

    async def partition_leaders(self, name: str) -> tuple[Leadership, ...]:
        return await partition_states.leaders(self.store, await self.service.topic(name))


def test_metadata_answers_leader_not_available_while_the_store_is_down(tmp_path: Path) -> None:
    with streamhouse.open(str(tmp_path / "data")) as sh:
        sh.create_topic("t", 2)
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        service = transport.service

        async def metadata(store_up: bool) -> dict[str, object]:
            store = await open_metadata_store(service.metadata.url)
            if not store_up:
                await store.close()  # a real store that answers StorageUnavailableError from now on
            registry = BrokerRegistry(store, "agent-a", "127.0.0.1", 9092, ttl_ms=10_000, renew_ms=3_000)
            front = _LeasesIn(service, store)
            handlers = Handlers(front, Node(0, "127.0.0.1", 9092), registry=registry)  # type: ignore[arg-type]
            try:
                return await handlers.metadata({"topics": [{"name": "t", "topic_id": None}]}, 12, Context("c", "h"))
            finally:
                if store_up:
                    await store.close()

        up = transport._run(metadata(True))["topics"][0]  # type: ignore[index]
        assert up["error_code"] == 0 and len(up["partitions"]) == 2
        down = transport._run(metadata(False))["topics"][0]  # type: ignore[index]
        assert down["error_code"] == LEADER_NOT_AVAILABLE and down["partitions"] == []
