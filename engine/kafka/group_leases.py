"""Which agent coordinates which consumer group: the lease `kafka-group/<group id>`, as
jobs hold `job/<name>` and partitions `partition/<topic>/<n>` (one take-over sequence for all:
engine/agent/leases.py).

FindCoordinator takes the lease when nobody holds it, or names the live holder's broker.
This agent renews the leases it holds; one it cannot renew (it was paused past the TTL
and another agent took it) is dropped with its in-memory group, and requests for that
group get NOT_COORDINATOR so the client asks FindCoordinator again.

A restarted agent coordinates at once what its earlier run held. The store still names the
dead run (same agent id) as holder for up to a TTL, and other agents' FindCoordinator answers
send clients here; so the lease is taken back from an earlier self (the WAL lock makes this
process the only live one with its id, docs/DESIGN.md §5), and a group request for a group not
held here claims the lease before it is refused. Refusing it instead sent clients between
FindCoordinator elsewhere ("that agent") and NOT_COORDINATOR here until the old lease lapsed:
a full lease TTL (30 s by default) without a coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from streamhouse.agent.config import holder_agent_id
from streamhouse.agent.leases import HeldLeases
from streamhouse.kafka.registry import Broker, BrokerRegistry
from streamhouse.storage.errors import FencedError, LeaseHeldError, StorageUnavailableError, StreamHouseError

log = logging.getLogger(__name__)
_PREFIX = "kafka-group/"
LOOKUP_TIMEOUT_S = 5.0
_THIS_AGENT = ""  # _whose's answer for this agent (agent ids are never empty)


class GroupLeases:
    def __init__(self, registry: BrokerRegistry, on_lost: Callable[[str], None], prefix: str = _PREFIX) -> None:
        self.registry = registry
        self.prefix = prefix  # kafka-txn/ for transaction coordinators (txn_coordinator.py)
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

    async def claim(self, gid: str) -> bool:
        """True when this agent coordinates `gid`: it holds the lease (confirmed, see
        `_whose`), or takes it now (free, lapsed, or held by an earlier run of this agent).
        False when another live agent holds it, or the store did not answer (in time): the
        request is refused NOT_COORDINATOR, as any group request here was before the lease
        could be claimed."""
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                return await self._whose(gid) == _THIS_AGENT
        except (TimeoutError, StreamHouseError) as exc:
            log.debug("kafka group %s: not claimed here: %s", gid, exc)
            return False

    async def coordinator(self, gid: str) -> Broker | None:
        """This agent if it holds (or now takes) the group's lease; else the live holder's
        broker; None when the holder has no reachable listener, or the metadata store did
        not answer within `LOOKUP_TIMEOUT_S` or is unreachable (COORDINATOR_NOT_AVAILABLE: the
        client retries rather than its connection stalling behind this request, or closing)."""
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                holder = await self._whose(gid)
                if holder == _THIS_AGENT:
                    return self.registry.me
                return None if holder is None else await self.registry.broker(holder)
        except TimeoutError:
            log.warning("kafka group %s: coordinator lookup timed out", gid)
            return None
        except StorageUnavailableError as exc:
            # Per request, so not a warning: the outage itself is reported once by the agent's
            # background work (lease renewals, flushes: health and metrics).
            log.debug("kafka group %s: coordinator lookup failed: %s", gid, exc)
            return None

    async def _whose(self, gid: str) -> str | None:
        """The agent id whose lease `gid` is: `_THIS_AGENT` once this agent holds it (taking
        it if it can), another agent's id, or None when this agent holds it but cannot confirm
        it. A held lease not renewed within half its TTL (the process was paused, the store was
        slow) may have lapsed and been taken elsewhere, so it is renewed before it is acted on
        and two agents never both answer for one group: refused, the group is dropped (`_lost`)
        and the holder looked up; failed (a store error), it is not acted on this time."""
        if gid in self.held:
            try:
                if await self.held.confirm(gid):
                    return _THIS_AGENT
            except StreamHouseError as exc:
                log.debug("kafka group %s: lease not confirmed: %s", gid, exc)
                return None
        holder = await self._take(gid)
        return _THIS_AGENT if holder is None else holder

    async def _take(self, gid: str) -> str | None:
        """Take the group's lease unless another agent holds it: None once this agent holds
        it, else the holder's agent id (never this agent's: an earlier run's lease is taken
        back, so this agent never names itself without holding the lease)."""
        async with self._locks.setdefault(gid, asyncio.Lock()):  # one acquisition per group at a time
            if gid in self.held:
                return None
            try:
                lease = await self.held.leases.acquire(self.prefix + gid, take_back="earlier-self")
            except LeaseHeldError as exc:
                return holder_agent_id(exc.holder)
            self.held.add(gid, lease)
            return None

    async def _lost(self, gid: str, error: FencedError) -> None:
        log.warning("kafka group %s: coordination lost to another agent (%s)", gid, error)
        self.on_lost(gid)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.registry.renew_ms / 1000)
            # Metadata unreachable: each group's failure is logged and retried next interval.
            await self.held.renew_all(keep_going=True)
