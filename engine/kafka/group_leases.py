"""Which agent coordinates which consumer group: the lease `kafka-group/<group id>`, as
jobs hold `job/<name>` and partitions `partition/<topic>/<n>`.

FindCoordinator takes the lease when nobody holds it, or names the live holder's broker.
This agent renews the leases it holds; one it cannot renew (it was paused past the TTL
and another agent took it) is dropped with its in-memory group, and requests for that
group get NOT_COORDINATOR so the client asks FindCoordinator again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from streamhouse.agent.config import holder_agent_id
from streamhouse.kafka.registry import Broker, BrokerRegistry
from streamhouse.storage.errors import FencedError, LeaseHeldError, StreamHouseError
from streamhouse.storage.model import Lease

log = logging.getLogger(__name__)
_PREFIX = "kafka-group/"
LOOKUP_TIMEOUT_S = 5.0


class GroupLeases:
    def __init__(self, registry: BrokerRegistry, on_lost: Callable[[str], None]) -> None:
        self.registry = registry
        self.metadata = registry.metadata
        self.held: dict[str, Lease] = {}
        self.on_lost = on_lost
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def holder(self) -> str:
        me = self.registry.me
        return f"{self.registry.agent_id}@{me.host}:{me.port}"

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._renew_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for gid, lease in list(self.held.items()):
            with contextlib.suppress(StreamHouseError):
                await self.metadata.release_lease(_PREFIX + gid, lease.holder, lease.epoch)
        self.held.clear()

    def coordinates(self, gid: str) -> bool:
        return gid in self.held

    async def coordinator(self, gid: str) -> Broker | None:
        """This agent if it holds (or now takes) the group's lease; else the live holder's
        broker; None when the holder has no reachable listener, or the metadata store did
        not answer within `LOOKUP_TIMEOUT_S` (COORDINATOR_NOT_AVAILABLE: the client retries
        rather than its connection stalling behind this request)."""
        if gid in self.held:
            return self.registry.me
        lock = self._locks.setdefault(gid, asyncio.Lock())
        try:
            async with lock, asyncio.timeout(LOOKUP_TIMEOUT_S):  # one acquisition per group at a time
                if gid in self.held:
                    return self.registry.me
                try:
                    lease = await self.metadata.acquire_lease(_PREFIX + gid, self.holder, self.registry.ttl_ms)
                except LeaseHeldError as exc:
                    return await self.registry.broker(holder_agent_id(exc.holder))
                self.held[gid] = lease
                return self.registry.me
        except TimeoutError:
            log.warning("kafka group %s: coordinator lookup timed out", gid)
            return None

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.registry.renew_ms / 1000)
            for gid, lease in list(self.held.items()):
                try:
                    self.held[gid] = await self.metadata.renew_lease(
                        _PREFIX + gid, lease.holder, lease.epoch, self.registry.ttl_ms
                    )
                except FencedError:
                    log.warning("kafka group %s: coordination lost to another agent", gid)
                    del self.held[gid]
                    self.on_lost(gid)
                except StreamHouseError as exc:  # metadata unreachable: retried next interval
                    log.warning("kafka group %s: lease renewal failed: %s", gid, exc)
