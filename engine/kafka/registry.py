"""Which agent is which Kafka broker: stable node ids and advertised addresses, shared
through the metadata store so every agent's Metadata answer names the same leaders.

Each agent with a Kafka listener holds the lease `kafka-broker/<agent id>` with holder
`<agent id>@<advertised host:port>` and renews it like its partition leases; it lapses when
the agent dies. A partition's Kafka leader is its lease holder's broker. Node ids are a
hash of the agent id, so they survive restarts and every agent computes the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import dataclass

from streamhouse.agent.config import holder_agent_id
from streamhouse.storage.errors import FencedError, LeaseHeldError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import Lease, partition_resource

log = logging.getLogger(__name__)
_PREFIX = "kafka-broker/"


def node_id(agent_id: str) -> int:
    return zlib.crc32(agent_id.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Broker:
    node_id: int
    host: str
    port: int


@dataclass(frozen=True)
class PartitionLeader:
    """A partition's leader as Kafka sees it; `broker` None when the lease holder has no
    Kafka listener (clients get LEADER_NOT_AVAILABLE and retry)."""

    broker: Broker | None
    epoch: int


class BrokerRegistry:
    def __init__(
        self, metadata: MetadataStore, agent_id: str, host: str, port: int, *, ttl_ms: int, renew_ms: int
    ) -> None:
        self.metadata = metadata
        self.agent_id = agent_id
        self.me = Broker(node_id(agent_id), host, port)
        self.ttl_ms = ttl_ms
        self.renew_ms = renew_ms
        self._lease: Lease | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def resource(self) -> str:
        return _PREFIX + self.agent_id

    async def start(self) -> None:
        await self._register()
        self._task = asyncio.ensure_future(self._renew_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lease is not None:
            with contextlib.suppress(StreamHouseError):
                await self.metadata.release_lease(self.resource, self._lease.holder, self._lease.epoch)

    async def _register(self) -> None:
        holder = f"{self.agent_id}@{self.me.host}:{self.me.port}"
        try:
            if self._lease is None:
                self._lease = await self.metadata.acquire_lease(self.resource, holder, self.ttl_ms)
            else:
                self._lease = await self.metadata.renew_lease(self.resource, holder, self._lease.epoch, self.ttl_ms)
            if self._failing:
                log.info("kafka broker registration %s renewed again", self.resource)
            self._failing = False
        except (FencedError, LeaseHeldError) as exc:
            # Our previous run's registration (another address) is still live: retry until it
            # lapses. Said once, not on every attempt.
            self._lease = None
            if not self._failing:
                log.warning("kafka broker registration %s not held yet: %s", self.resource, exc)
            self._failing = True

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_ms / 1000)
            try:
                await self._register()
            except StreamHouseError as exc:  # metadata unreachable: retried next interval
                if not self._failing:
                    log.warning("kafka broker registration %s failed: %s", self.resource, exc)
                self._failing = True

    async def broker(self, agent_id: str) -> Broker | None:
        if agent_id == self.agent_id:
            return self.me
        lease = await self.metadata.get_lease(_PREFIX + agent_id)
        if lease is None or lease.expires_at_ms <= await self.metadata.now_ms():
            return None
        host, _, port = lease.holder.partition("@")[2].rpartition(":")
        return Broker(node_id(agent_id), host, int(port)) if port.isdigit() else None

    async def leader(self, topic: str, partition: int, now_ms: int) -> PartitionLeader:
        """The lease holder's broker; this agent when nobody holds the partition (it takes
        the lease on the first produce)."""
        lease = await self.metadata.get_lease(partition_resource(topic, partition))
        if lease is None or lease.expires_at_ms <= now_ms:
            return PartitionLeader(self.me, lease.epoch if lease is not None else 0)
        return PartitionLeader(await self.broker(holder_agent_id(lease.holder)), lease.epoch)
