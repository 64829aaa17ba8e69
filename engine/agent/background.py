"""The base of the agent's periodic background services (docs/DESIGN.md §5): the segment merger,
the orphan reconciler, retention, the compactor.

Each of them is the same shape: every `interval` one round over the topics, work on one thing
(a partition, the whole store) done under a lease of its own so one agent at a time does it,
and failures kept in a FailureTracker (engine/agent/failures.py): backoff, one log line per
change of state, readiness names what keeps failing for a reason other than a storage outage,
and `health.on_change` is the metrics hook. This class holds that shape once, so a service
only writes its round (`run_once`) and what it does under a lease.

The loop sleeps first (an agent that just started has recovery and take-overs to do) and then
runs a round; `run_once` never raises a store error (it records them in `health`). When the
round as a whole failed (the key `ROUND`), the next one comes after the backoff, but never
later than a normal interval would.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

from streamhouse.agent.failures import FailureTracker
from streamhouse.agent.leases import HeldLease, Leases
from streamhouse.storage.errors import LeaseHeldError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.segment.footer import SegmentFooter, parse_footer

log = logging.getLogger(__name__)

ROUND = "round"  # the failure key of a whole round (listing topics, a store-wide walk)
_DELETE_BATCH = 500
_DELETE_ROUNDS = 20
_PARALLEL_GETS = 16  # whole-segment downloads in flight: small objects are latency-bound


# Which of these object keys must stay although their deletion is due (an Iceberg snapshot still
# references them, engine/iceberg/references.py); they stay recorded and are asked about again.
KeepCheck = Callable[[Sequence[str]], Awaitable[set[str]]]


async def delete_due(metadata: MetadataStore, store: ObjectStore, keep: KeepCheck | None = None) -> int:
    """The deferred deleter of every swap (merging, compaction, retention; storage/metadata/
    swap.py): delete the recorded objects whose grace has passed, then forget them; how many.
    Idempotent, so every agent and service may run it (a missing object is no error). At most
    _DELETE_ROUNDS batches per call, so one call is bounded; the rest wait for the next round.
    Objects `keep` names stay (recorded, so the orphan reconciler spares them too); a batch
    that deletes nothing ends the call. A store error propagates (the caller records it)."""
    deleted = 0
    for _ in range(_DELETE_ROUNDS):
        due = await metadata.due_deletions(_DELETE_BATCH)
        kept = await keep([d.object_key for d in due]) if keep is not None and due else set()
        gone = [d.object_key for d in due if d.object_key not in kept]
        for key in gone:
            await store.delete(key)
        if gone:
            await metadata.forget_deletions(gone)
            deleted += len(gone)
        if len(due) < _DELETE_BATCH or not gone:
            break
    return deleted


async def delete_due_recorded(
    metadata: MetadataStore,
    store: ObjectStore,
    health: FailureTracker[str],
    on_deleted: Callable[[int], None],
    keep: KeepCheck | None = None,
) -> int:
    """`delete_due` as a service's round runs it: a store error is recorded under the key
    "deletions" (backoff, one log line) instead of raised; `on_deleted(count)` is the metrics hook."""
    try:
        deleted = await delete_due(metadata, store, keep)
        health.succeeded("deletions")
    except (StreamHouseError, OSError) as exc:
        health.failed("deletions", exc)
        return 0
    if deleted:
        on_deleted(deleted)
    return deleted


async def download_segments(store: ObjectStore, segments: Sequence[SegmentInfo]) -> list[tuple[SegmentFooter, bytes]]:
    """Whole segment objects with their footers verified against the metadata rows (length and
    CRC32C: a damaged or swapped object is a CorruptDataError naming it), in the order given;
    what the merger and the compactor rewrite."""
    gate = asyncio.Semaphore(_PARALLEL_GETS)

    async def one(seg: SegmentInfo) -> tuple[SegmentFooter, bytes]:
        async with gate:
            data = bytes(await store.get(seg.object_key))
        tail = memoryview(data)[len(data) - seg.footer_length :] if seg.footer_length <= len(data) else b""
        footer = parse_footer(tail, size_bytes=seg.size_bytes, footer_crc=seg.footer_crc, source=seg.object_key)
        return footer, data

    return list(await asyncio.gather(*(one(seg) for seg in segments)))


class BackgroundService(abc.ABC):
    """A periodic, leased background service of the agent. Subclasses set `task_name` and
    implement `run_once`; `interval_s` <= 0 means never started."""

    task_name: ClassVar[str] = "background-service"

    def __init__(self, leases: Leases, interval_s: float, health: FailureTracker[str]) -> None:
        self.leases = leases
        self.interval_s = interval_s
        self.health = health
        self.keep: KeepCheck | None = None  # the deferred deleter's keep check (delete_due), if any
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run_once(self) -> Any:
        """One round. Records failures in `health`; never raises a store error."""

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.task_name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def next_delay_s(self) -> float:
        """Seconds until the next round: the interval, or sooner while a failed round backs off
        (the backoff grows, so a round that keeps failing never spins)."""
        wait = self.health.wait_s(ROUND)
        return min(self.interval_s, wait) if wait > 0 else self.interval_s

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.next_delay_s())
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: said (once per change) and retried, never a dead task
                self.health.failed(ROUND, exc)

    @contextlib.asynccontextmanager
    async def leased(self, resource: str) -> AsyncIterator[HeldLease | None]:
        """Hold `resource`'s lease for the block (None: another live holder has it, skip).
        Taken back from an earlier process of this agent; released at the end (a failed
        release lets it lapse by TTL). Renewing within the block is the caller's (renewal
        keeps the epoch, so releasing the lease first acquired releases the renewed one)."""
        try:
            lease = await self.leases.acquire(resource, take_back="earlier-self")
        except LeaseHeldError:
            yield None
            return
        try:
            yield lease
        finally:
            with contextlib.suppress(StreamHouseError):
                await self.leases.release(lease)

    def faults(self) -> list[str]:
        """Readiness lines: what keeps failing for a reason other than a storage outage (the
        stores' own probes report outages), one line each."""
        return [state.describe() for _, state in sorted(self.health.failing_faults().items())]


__all__ = ["ROUND", "BackgroundService", "KeepCheck", "delete_due", "delete_due_recorded", "download_segments"]
