"""Leases an agent holds (docs/DESIGN.md §5): the one take-over sequence every leased thing uses —
partitions (`partition/<topic>/<n>`), jobs (`job/<name>`), Kafka groups (`kafka-group/<id>`) and
the background services to come.

The sequence: acquire (the metadata store bumps the epoch for a new holder, and the epoch fences
everything the holder writes), renew every interval, and when a renewal is refused (another
holder took the lease while this one was paused) stop at once: the lost callback runs and the
lease is forgotten, never retried under the old epoch. Release on a graceful stop, so a successor
need not wait out the TTL.

`Leases` is the sequence's steps for one holder; `HeldLeases` is the set a component keeps,
keyed its own way, with the renew round and the lost callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

from streamhouse.agent.config import holder_agent_id
from streamhouse.storage.errors import FencedError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# Whom `acquire` takes a live lease from before asking for it (the store itself only hands over
# free or expired leases):
# - "nobody": wait for the TTL.
# - "earlier-self": an earlier process of this agent (same agent id, another holder name, e.g. a
#   restart on another port). The WAL lock makes this process the only live one with the id, so
#   that holder is dead and waiting out its TTL would only delay (jobs).
# - "new-epoch": as "earlier-self", and a fresh epoch even when this very holder has the lease:
#   an earlier writer of this process may have uploaded an object under the old epoch's key and
#   never committed it, so the next upload needs a key of its own (partitions).
TakeBack = Literal["nobody", "earlier-self", "new-epoch"]


@dataclass(frozen=True)
class HeldLease:
    """A lease as its holder sees it. `renewed_at` is the monotonic time (seconds) at which the
    last successful acquire or renew was sent: the store dated the expiry after that, so the
    lease is valid at least until `renewed_at` + TTL by this process's clock."""

    resource: str
    holder: str
    epoch: int
    ttl_ms: int
    renewed_at: float

    def fresh(self, now: float | None = None) -> bool:
        """Confirmed within half its TTL: safe to act on without asking the store again (a
        process paused longer than that must renew before it acknowledges anything)."""
        return (time.monotonic() if now is None else now) - self.renewed_at < self.ttl_ms / 1000 / 2


class Leases:
    """The take-over steps of one holder (`<agent id>@<address>`, see AgentConfig.holder)."""

    def __init__(self, metadata: MetadataStore, *, holder: str, agent_id: str, ttl_ms: int) -> None:
        self.metadata = metadata
        self.holder = holder
        self.agent_id = agent_id
        self.ttl_ms = ttl_ms

    async def acquire(self, resource: str, *, take_back: TakeBack = "nobody") -> HeldLease:
        """Take `resource`'s lease: free, expired, already this holder's (same epoch, unless
        `take_back` is "new-epoch") or taken back from an earlier self (see TakeBack).
        LeaseHeldError (naming the holder) if another live holder has it."""
        if take_back != "nobody":
            current = await self.metadata.get_lease(resource)
            if (
                current is not None
                and holder_agent_id(current.holder) == self.agent_id
                and (take_back == "new-epoch" or current.holder != self.holder)
            ):
                await self.metadata.release_lease(resource, current.holder, current.epoch)
        sent = time.monotonic()
        lease = await self.metadata.acquire_lease(resource, self.holder, self.ttl_ms)
        return HeldLease(resource, lease.holder, lease.epoch, self.ttl_ms, sent)

    async def renew(self, lease: HeldLease) -> HeldLease:
        """The lease renewed for another TTL, same epoch. FencedError when it is lost: this
        holder must stop everything done under it. Any other error leaves it as it was (it may
        still be valid; the caller retries or lets it lapse)."""
        sent = time.monotonic()
        await self.metadata.renew_lease(lease.resource, lease.holder, lease.epoch, lease.ttl_ms)
        return replace(lease, renewed_at=sent)

    async def release(self, lease: HeldLease) -> None:
        """Give it up now (a no-op if it was lost meanwhile); a store error is the caller's."""
        await self.metadata.release_lease(lease.resource, lease.holder, lease.epoch)


class HeldLeases(Generic[K]):
    """The leases one component holds, keyed its own way (a partition, a job name, a group id).

    `on_lost(key, error)` runs once when a renewal is refused, after the lease was forgotten;
    it stops whatever the lease guarded (fence a writer, cancel a job, drop a group)."""

    def __init__(self, leases: Leases, on_lost: Callable[[K, FencedError], Awaitable[None]]) -> None:
        self.leases = leases
        self._on_lost = on_lost
        self._held: dict[K, HeldLease] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._held

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._held))

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: K) -> HeldLease | None:
        return self._held.get(key)

    def add(self, key: K, lease: HeldLease) -> None:
        """Keep (and from now on renew) a lease acquired with `leases.acquire` — added only once
        what it guards is running, so a take-over that failed half-way leaves nothing renewed."""
        self._held[key] = lease

    def forget(self, key: K) -> HeldLease | None:
        """Stop renewing it without releasing it (lost, or left to expire)."""
        return self._held.pop(key, None)

    async def renew(self, key: K) -> bool:
        """Renew one lease; False if it is no longer held (lost now: forgotten, `on_lost` run;
        or forgotten before). Errors other than losing it propagate, the lease kept as it was."""
        lease = self._held.get(key)
        if lease is None:
            return False
        try:
            renewed = await self.leases.renew(lease)
        except FencedError as exc:
            if self._held.get(key) is lease:
                del self._held[key]
                await self._on_lost(key, exc)
            return False
        if self._held.get(key) is lease:  # not dropped or replaced while the renewal was out
            self._held[key] = renewed
        return True

    async def confirm(self, key: K) -> bool:
        """Renew only if the lease is no longer fresh (see HeldLease.fresh); False if not held."""
        lease = self._held.get(key)
        if lease is None:
            return False
        return lease.fresh() or await self.renew(key)

    async def renew_all(self, *, keep_going: bool = False) -> None:
        """One renewal round over every held lease. A store error stops the round (the caller's
        loop reports it), or with `keep_going` is logged per lease and the round goes on: the
        lease may still be valid, and the next round tries again."""
        for key in self:
            try:
                await self.renew(key)
            except StreamHouseError as exc:
                if not keep_going:
                    raise
                log.warning("lease %s: renewal failed (retried next round): %s", _resource(self.get(key)), exc)

    async def release(self, key: K) -> None:
        """Forget it and give it up (a store error propagates; the lease then lapses by TTL)."""
        lease = self._held.pop(key, None)
        if lease is not None:
            await self.leases.release(lease)


def _resource(lease: HeldLease | None) -> str:
    return lease.resource if lease is not None else "?"
