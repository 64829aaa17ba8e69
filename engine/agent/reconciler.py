"""The orphan reconciler, a leased background service of every agent (docs/DESIGN.md §5).

Segment objects and their metadata rows are written in two steps (upload, then commit), so a
crash, a refused commit, a merge that died before its swap or a dropped topic (delete_topic
removes rows, not objects) leaves objects nothing references; and an object lost from the store
leaves a row that points at nothing. Every `interval` an agent walks the object store's
`topics/` prefix page by page (list_page: bounded memory for 100 k objects) and diffs each
partition's objects against its segment rows and the deferred deletions:

- an object no row and no deferred deletion references, last modified more than `grace_ms` ago
  (the store's own LastModified / mtime), is deleted, in bounded batches. Uploads in flight are
  safe because of the grace: an upload is committed seconds after it lands, never an hour.
  Objects under a deleted topic's prefix (or a partition past the topic's count) have no rows,
  so they go the same way once old enough.
- a row whose object is not listed is reported loudly — log line per change, metric
  `streamhouse_missing_segment_objects{topic}`, readiness — and the row is kept: dropping it
  would silently lose acknowledged records, and an operator may still restore the object.

Races, all resolved by the order of the reads: a partition's rows are read before its objects
are listed, so a committed row's object (uploaded before the commit) is always listed, and a
"missing" candidate is confirmed by a fresh read of the rows after the listing (a swap whose
replaced object the deleter removed meanwhile drops the row too). Orphan candidates are
re-checked against fresh rows and the deferred deletions right before each delete batch (a swap
moves a key from the rows to deferred_deletions in one transaction, so it is in one or the other).

One lease `reconcile` for the whole store rather than one per topic: the walk is a single
listing of `topics/` (the only way to find the objects of topics that no longer exist, which no
per-topic holder would own), and one walk every 10 minutes is cheap. The lease keeps walks from
overlapping (an agent finding it held skips its round); it is released after each walk, so every
agent still walks about once per interval. Safety comes from the re-checks above, not from the
lease's timing. The missing-object report (metric, readiness) is that of this agent's last walk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streamhouse.agent.background import ROUND, BackgroundService
from streamhouse.agent.config import AgentConfig
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.agent.leases import HeldLease, Leases
from streamhouse.storage.errors import FencedError, NotFoundError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import ObjectInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore

log = logging.getLogger(__name__)

RESOURCE = "reconcile"
PREFIX = "topics/"
_PARALLEL_DELETES = 16
FIRST_RETRY_S = 1.0
FAULT_CAP_S = 300.0


@dataclass(frozen=True)
class ReconcileSettings:
    interval_s: float  # 0: never
    grace_ms: int  # an unreferenced object younger than this may be an upload in flight
    page: int = 1000  # objects per listing request: the walk's memory bound
    delete_batch: int = 500

    @classmethod
    def from_config(cls, config: AgentConfig) -> ReconcileSettings:
        return cls(interval_s=config.reconcile_interval_ms / 1000, grace_ms=config.orphan_grace_ms)


@dataclass(frozen=True)
class ReconcileOutcome:
    """One finished walk: objects listed and deleted, and per topic the rows whose object is
    missing (count, first key)."""

    listed: int
    deleted: int
    missing: dict[str, tuple[int, str]] = field(default_factory=dict)


def parse_segment_key(key: str) -> tuple[str, int] | None:
    """(topic, partition) of `topics/<topic>/<partition:05d>/<name>.parquet`; None for any other
    key, which the reconciler never touches."""
    rest = key[len(PREFIX) :] if key.startswith(PREFIX) else ""
    parts = rest.rsplit("/", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].endswith(".parquet"):
        return None
    return parts[0], int(parts[1])


@dataclass
class _Partition:
    """The walk's state within one partition's keys (together in every store's listing order)."""

    topic: str
    partition: int
    rows: set[str]  # its rows' object keys, as read before the listing; matched ones removed
    report_missing: bool = True  # False if its keys came in two runs (then unmatched means nothing)
    orphans: list[str] = field(default_factory=list)


class Reconciler(BackgroundService):
    task_name = "orphan-reconciler"

    def __init__(
        self, metadata: MetadataStore, store: ObjectStore, leases: Leases, settings: ReconcileSettings
    ) -> None:
        health = FailureTracker[str](
            Backoff(FIRST_RETRY_S, FAULT_CAP_S, FAULT_CAP_S),
            label=lambda key: "orphan reconciler",
            topic=lambda key: "",
            log=log,
        )
        super().__init__(leases, settings.interval_s, health)
        self.metadata = metadata
        self.store = store
        self.settings = settings
        self.on_deleted: Callable[[str, int], None] = lambda topic, count: None
        self.on_missing: Callable[[str, int], None] = lambda topic, count: None
        self.on_failed: Callable[[], None] = lambda: None  # the metrics hook: a walk failed
        health.on_change = lambda topic, failed, failing: self.on_failed() if failed else None
        self.missing: dict[str, tuple[int, str]] = {}  # from the last finished walk

    async def run_once(self) -> ReconcileOutcome | None:
        """One walk under the `reconcile` lease; None when another agent holds it, the lease was
        lost midway, or the walk failed (recorded in `health`: logged once per change, backed
        off, in `faults`). Never raises a store error."""
        try:
            async with self.leased(RESOURCE) as lease:
                if lease is None:
                    return None
                outcome = await self._walk(lease)
        except FencedError:
            return None  # another agent took over the walk: it finishes the job
        except (StreamHouseError, OSError) as exc:
            self.health.failed(ROUND, exc)
            return None
        self.health.succeeded(ROUND)
        self._report_missing(outcome.missing)
        return outcome

    async def _walk(self, lease: HeldLease) -> ReconcileOutcome:
        topics = {t.name: t for t in await self.metadata.list_topics()}
        # The store's clock dates the objects; this agent's clock dates the cutoff. The grace
        # (at least a minute, an hour by default) dwarfs the skew between the two.
        cutoff_ms = int(time.time() * 1000) - self.settings.grace_ms
        visited: set[tuple[str, int]] = set()
        missing: dict[str, tuple[int, str]] = {}
        listed = deleted = 0
        current: _Partition | None = None
        after = ""
        while True:  # ends: `after` grows strictly with every page
            page = await self.store.list_page(PREFIX, after=after, limit=self.settings.page)
            listed += len(page)
            for info in page:
                where = parse_segment_key(info.key)
                if where is None:
                    continue
                if current is None or (current.topic, current.partition) != where:
                    if current is not None:
                        deleted += await self._finish(current, missing)
                    current = await self._open(where, topics)
                    # Keys of one partition (one directory) come together in every listing
                    # order; should a store split them, its rows are not judged this round.
                    current.report_missing = where not in visited
                    visited.add(where)
                self._step(current, info, cutoff_ms)
                if len(current.orphans) >= self.settings.delete_batch:
                    deleted += await self._delete(current)
            if len(page) < self.settings.page:
                break
            after = page[-1].key
            if not lease.fresh():
                lease = await self.leases.renew(lease)
        if current is not None:
            deleted += await self._finish(current, missing)
        # Partitions with rows but no object at all never came up in the listing.
        for topic in topics.values():
            for partition in range(topic.partitions):
                if (topic.name, partition) not in visited:
                    deleted += await self._finish(await self._open((topic.name, partition), topics), missing)
        return ReconcileOutcome(listed, deleted, missing)

    async def _open(self, where: tuple[str, int], topics: dict[str, TopicInfo]) -> _Partition:
        return _Partition(where[0], where[1], await self._row_keys(where[0], where[1], topics))

    async def _row_keys(self, topic: str, partition: int, topics: dict[str, TopicInfo] | None = None) -> set[str]:
        known = topics.get(topic) if topics is not None else None
        if topics is not None and (known is None or partition >= known.partitions):
            return set()  # a deleted topic's (or a dropped partition's) objects have no rows
        try:
            return {s.object_key for s in await self.metadata.list_segments(topic, partition)}
        except NotFoundError:
            return set()

    @staticmethod
    def _step(state: _Partition, info: ObjectInfo, cutoff_ms: int) -> None:
        """One listed object of the partition: a row's (matched) or an orphan candidate."""
        if info.key in state.rows:
            state.rows.discard(info.key)
            return
        # No modification time (a store that does not say): never old enough to delete.
        if info.modified_ms is not None and info.modified_ms <= cutoff_ms:
            state.orphans.append(info.key)

    async def _finish(self, state: _Partition, missing: dict[str, tuple[int, str]]) -> int:
        """The partition's listing is done: rows left unmatched name missing objects."""
        if state.rows and state.report_missing:
            # Confirm with rows read after the listing: one the deleter removed meanwhile is gone.
            fresh = await self._row_keys(state.topic, state.partition)
            confirmed = sorted(k for k in state.rows if k in fresh)
            if confirmed:
                count, first = missing.get(state.topic, (0, confirmed[0]))
                missing[state.topic] = (count + len(confirmed), first)
        state.rows = set()
        return await self._delete(state)

    async def _delete(self, state: _Partition) -> int:
        """Delete the collected orphans still unreferenced by fresh rows and deferred deletions."""
        candidates, state.orphans = state.orphans, []
        if not candidates:
            return 0
        referenced = await self._row_keys(state.topic, state.partition)
        referenced |= await self.metadata.deferred_among(candidates)
        doomed = [k for k in candidates if k not in referenced]
        gate = asyncio.Semaphore(_PARALLEL_DELETES)

        async def one(key: str) -> None:
            async with gate:
                await self.store.delete(key)

        await asyncio.gather(*(one(k) for k in doomed))
        if doomed:
            log.info("%s/%d: deleted %d orphan segment objects", state.topic, state.partition, len(doomed))
            self.on_deleted(state.topic, len(doomed))
        return len(doomed)

    def _report_missing(self, now: dict[str, tuple[int, str]]) -> None:
        """One log line and one metric update per topic whose missing count changed."""
        for topic in sorted(set(now) | set(self.missing)):
            count, first = now.get(topic, (0, ""))
            before = self.missing.get(topic, (0, ""))[0]
            if count == before:
                continue
            if count:
                log.error(
                    "topic %r: %d segment objects are missing from the object store (e.g. %s); "
                    "their rows are kept, reads of those offsets fail until they are restored",
                    topic,
                    count,
                    first,
                )
            else:
                log.warning("topic %r: no segment object is missing any more (%d were)", topic, before)
            self.on_missing(topic, count)
        self.missing = dict(now)

    def faults(self) -> list[str]:
        """Readiness lines: every topic with missing segment objects, and a walk that keeps
        failing for a reason other than a storage outage (the stores' probes report those)."""
        lines = [
            f"topic {t!r}: {n} segment objects missing from the object store (e.g. {k})"
            for t, (n, k) in sorted(self.missing.items())
        ]
        return lines + super().faults()


__all__ = ["RESOURCE", "ReconcileOutcome", "ReconcileSettings", "Reconciler", "parse_segment_key"]
