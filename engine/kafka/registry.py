"""Which agent is which Kafka broker: stable node ids and advertised addresses, shared
through the metadata store so every agent's Metadata answer names the same leaders.

Each agent with a Kafka listener holds the lease `kafka-broker/<agent id>` with holder
`<agent id>@<advertised host:port>`, taken and renewed by the one lease helper
(engine/agent/leases.py, docs/DESIGN.md §5) like its partition leases; it lapses when the agent
dies. A partition's Kafka leader is its lease holder's broker. Node ids are a hash of the
agent id, so they survive restarts and every agent computes the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import dataclass

from streamhouse.agent.leases import HeldLease, Leases
from streamhouse.storage.errors import FencedError, LeaseHeldError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore

log = logging.getLogger(__name__)
_PREFIX = "kafka-broker/"


def node_id(agent_id: str) -> int:
    return zlib.crc32(agent_id.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Broker:
    node_id: int
    host: str
    port: int


class BrokerRegistry:
    def __init__(
        self, metadata: MetadataStore, agent_id: str, host: str, port: int, *, ttl_ms: int, renew_ms: int
    ) -> None:
        self.metadata = metadata
        self.agent_id = agent_id
        self.me = Broker(node_id(agent_id), host, port)
        self.ttl_ms = ttl_ms
        self.renew_ms = renew_ms
        # The take-over steps of this listener's holder name; the group leases (group_leases.py)
        # are taken under the same name.
        self.leases = Leases(metadata, holder=f"{agent_id}@{host}:{port}", agent_id=agent_id, ttl_ms=ttl_ms)
        self._lease: HeldLease | None = None
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
                await self.leases.release(self._lease)

    async def _register(self) -> None:
        try:
            if self._lease is None:
                # An earlier run's registration (a dead process: the WAL lock makes this one the
                # only live agent with its id) is taken back at once, so nobody sends clients to
                # its old address for a TTL (group_leases.py relies on this after a restart).
                self._lease = await self.leases.acquire(self.resource, take_back="earlier-self")
            else:
                self._lease = await self.leases.renew(self._lease)
            if self._failing:
                log.info("kafka broker registration %s renewed again", self.resource)
            self._failing = False
        except (FencedError, LeaseHeldError) as exc:
            # Another holder took ours (renewal fenced), or a race with one: take it again next
            # interval. Said once, not on every attempt.
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
        """The Kafka broker of `agent_id`'s live registration; this agent's own for its id;
        None when it has none (no listener, or it lapsed)."""
        if agent_id == self.agent_id:
            return self.me
        lease = await self.metadata.get_lease(_PREFIX + agent_id)
        if lease is None or lease.expires_at_ms <= await self.metadata.now_ms():
            return None
        host, _, port = lease.holder.partition("@")[2].rpartition(":")
        return Broker(node_id(agent_id), host, int(port)) if port.isdigit() else None
