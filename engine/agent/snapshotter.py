"""Metadata snapshots, a leased background service of every agent (issue 14 item 5).

Losing the metadata database must not lose the topics whose records are safe in the object
store. So after segment commits (and merges) an agent writes a snapshot of the whole metadata
(storage/metadata/snapshot.py: every table but the migrations, generic over columns) to the
object store under `_metadata/snapshots/`; `streamhouse recover` rebuilds an empty database from
the latest one plus the segments written after it (engine/agent/recovery.py).

Batched: `changed()` only notes when this agent last committed something (a segment, a merge;
and any change of the topic list, seen by every agent's rounds); every `interval` a
round writes one snapshot if something changed — unless a snapshot begun after the last change
exists (another agent's covers it), or one was written less than an interval ago (then the
change waits for the next round). "Begun after" in the database's clock, which dates snapshots
(`taken_ms`, read before the export's read begins): the round reads that clock (`mark`), and the
change happened at least the local time elapsed since it before `mark`, so a snapshot with
`taken_ms` >= mark - elapsed saw it. So a cluster writes about one snapshot per interval under
load and none when idle, every agent's commits are in one within about two intervals, and the
lease `metadata-snapshot` keeps two agents from writing at once. The latest KEEP snapshots are
kept, older ones deleted.

What a snapshot cannot hold is what changed after it: recovery adds the segments (their footers
say what the rows need), but consumer group offsets, jobs' checkpoints, producer states and the
schema registry come back as of the snapshot.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from streamhouse.agent.background import ROUND, BackgroundService
from streamhouse.agent.config import AgentConfig
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.agent.leases import Leases
from streamhouse.storage.errors import FencedError, StreamHouseError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.snapshot import (
    SNAPSHOT_PREFIX,
    encode_snapshot,
    latest_first,
    snapshot_key,
    snapshot_time,
)
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.object_store.base import ObjectStore

log = logging.getLogger(__name__)

RESOURCE = "metadata-snapshot"
KEEP = 3  # snapshots kept; a corrupt latest one still leaves an older to recover from
FIRST_RETRY_S = 1.0
OUTAGE_CAP_S = 30.0
FAULT_CAP_S = 300.0


@dataclass(frozen=True)
class SnapshotOutcome:
    key: str
    size_bytes: int
    taken_ms: int
    rows: dict[str, int]
    deleted: int  # older snapshots removed


class Snapshotter(BackgroundService):
    task_name = "metadata-snapshots"

    def __init__(self, metadata: MetadataStore, store: ObjectStore, leases: Leases, interval_s: float) -> None:
        health = FailureTracker[str](
            Backoff(FIRST_RETRY_S, OUTAGE_CAP_S, FAULT_CAP_S),
            label=lambda key: "metadata snapshot",
            topic=lambda key: "",
            log=log,
        )
        super().__init__(leases, interval_s, health)
        self.metadata = metadata
        self.store = store
        self.on_snapshot: Callable[[SnapshotOutcome], None] = lambda outcome: None
        self._dirty = False
        self._changed_at = 0.0  # monotonic seconds of the last change
        self._topics: list[TopicInfo] | None = None  # as the last round listed them
        self._written = 0

    @classmethod
    def from_config(cls, metadata: MetadataStore, store: ObjectStore, config: AgentConfig) -> Snapshotter:
        leases = Leases(metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms)
        return cls(metadata, store, leases, config.snapshot_interval_ms / 1000)

    def changed(self) -> None:
        """Something this agent committed (a segment, a merge) should reach a snapshot."""
        self._dirty = True
        self._changed_at = time.monotonic()

    async def run_once(self) -> SnapshotOutcome | None:
        """One round: a snapshot if this agent's changes are not covered yet (None otherwise, or
        when it failed: recorded in `health`, logged once per change, backed off, retried).
        Never raises a store error."""
        try:
            await self._watch_topics()
            if not self._dirty:
                return None
            self._dirty = False  # before `mark`: a commit from now on marks it again
            outcome = await self._round()
        except (StreamHouseError, OSError) as exc:
            self._dirty = True
            if not isinstance(exc, FencedError):
                self.health.failed(ROUND, exc)
            return None
        self.health.succeeded(ROUND)
        return outcome

    async def _watch_topics(self) -> None:
        """Topic DDL (create, alter, delete, schema evolution) on any agent commits no segment at
        once, but a recovered topic should keep its columns and settings: a change of the topic
        list since the last round counts as a change (the first round only takes note)."""
        topics = await self.metadata.list_topics()
        if self._topics is not None and topics != self._topics:
            self.changed()
        self._topics = topics

    async def _round(self) -> SnapshotOutcome | None:
        sent = time.monotonic()
        mark = await self.metadata.now_ms()
        changed_by = mark - int((sent - self._changed_at) * 1000)  # database clock, at the latest
        keys = latest_first(info.key for info in await self.store.list(SNAPSHOT_PREFIX))
        latest = snapshot_time(keys[0]) if keys else None
        if latest is not None and latest >= changed_by:
            return None  # a snapshot began after the last change: it has it
        if latest is not None and mark - latest < self.interval_s * 1000:
            self._dirty = True  # one was written less than an interval ago: ours comes next round
            return None
        async with self.leased(RESOURCE) as lease:
            if lease is None:  # another agent is writing one; whether it covers ours, see next round
                self._dirty = True
                return None
            return await self.write()

    async def write(self) -> SnapshotOutcome:
        """Export, encode and upload one snapshot now, then delete all but the latest KEEP."""
        dump = await self.metadata.export_tables()
        data = await run_blocking(encode_snapshot, dump)
        key = snapshot_key(dump.taken_ms, uuid.uuid4().hex[:16])
        await self.store.put(key, data, if_absent=True)
        deleted = 0
        for old in latest_first(info.key for info in await self.store.list(SNAPSHOT_PREFIX))[KEEP:]:
            await self.store.delete(old)
            deleted += 1
        outcome = SnapshotOutcome(key, len(data), dump.taken_ms, dump.row_counts(), deleted)
        self._written += 1
        level = logging.INFO if self._written == 1 else logging.DEBUG
        log.log(
            level,
            "metadata snapshot %s written (%d bytes, %d segments)",
            key,
            len(data),
            outcome.rows.get("segments", 0),
        )
        self.on_snapshot(outcome)
        return outcome


__all__ = ["KEEP", "RESOURCE", "SnapshotOutcome", "Snapshotter"]
