"""Which agent coordinates which consumer group: the lease `kafka-group/<group id>`, as
jobs hold `job/<name>` and partitions `partition/<topic>/<n>` (one take-over sequence for all:
engine/agent/leases.py).

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
from streamhouse.agent.leases import HeldLeases
from streamhouse.kafka.registry import Broker, BrokerRegistry
from streamhouse.storage.errors import FencedError, LeaseHeldError, StreamHouseError

log = logging.getLogger(__name__)
_PREFIX = "kafka-group/"
LOOKUP_TIMEOUT_S = 5.0


class GroupLeases:
    def __init__(self, registry: BrokerRegistry, on_lost: Callable[[str], None]) -> None:
        self.registry = registry
        self.metadata = registry.metadata
        self.held: HeldLeases[str] = HeldLeases(registry.leases, self._lost)
        self.on_lost = on_lost
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def holder(self) -> str:
        return self.held.leases.holder

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._renew_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for gid in self.held:  # forgotten either way: a failed release lapses by its TTL
            with contextlib.suppress(StreamHouseError):
                await self.held.release(gid)

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
                    # A coordinator is cheap to find again: wait out an earlier self's lease.
                    lease = await self.held.leases.acquire(_PREFIX + gid, take_back="nobody")
                except LeaseHeldError as exc:
                    return await self.registry.broker(holder_agent_id(exc.holder))
                self.held.add(gid, lease)
                return self.registry.me
        except TimeoutError:
            log.warning("kafka group %s: coordinator lookup timed out", gid)
            return None

    async def _lost(self, gid: str, error: FencedError) -> None:
        log.warning("kafka group %s: coordination lost to another agent (%s)", gid, error)
        self.on_lost(gid)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.registry.renew_ms / 1000)
            # Metadata unreachable: each group's failure is logged and retried next interval.
            await self.held.renew_all(keep_going=True)
