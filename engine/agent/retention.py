"""Retention, a leased background service of every agent (docs/DESIGN.md §4; Kafka's log cleaner
with cleanup.policy=delete).

A topic's `retention.ms` and `retention.bytes` (storage/topic_settings.py; unset: the agent's
--retention-ms / --retention-bytes, -1 by default: kept forever) bound what each partition
keeps. Every `interval` the service lists each such topic's partitions and plans, from the
oldest, the whole segments past a limit — as Kafka does:

- by time: a segment whose newest record (its max timestamp) is older than retention.ms; the
  run stops at the first segment that is not (a later segment with an old timestamp waits for
  the ones before it);
- by size: the oldest segments while the partition would still hold at least retention.bytes
  without them.

The newest committed segment of a partition is never removed (Kafka never deletes the active
segment): the end offset stays backed by a row, a writer whose commit reply was lost finds its
segment, and WAL recovery keeps judging leaderships by the last segment's epoch. So a partition
with retention.ms = 0 still keeps its newest segment; records in the leader's unflushed buffer
are not segments yet and are never touched.

For a topic with something to remove the service takes the lease `retention/<topic>` (one
remover per topic at a time, whichever agent gets there first; a live holder elsewhere means
skip), then per partition one fenced metadata transaction (MetadataStore.truncate_log): the
rows go, the log start moves past them, and the objects are recorded for deletion after the
grace (the merge grace: readers that listed the segments before finish their reads). A merge
or compaction that swapped the same rows meanwhile makes the truncation fail cleanly; it is
planned again next round. Deleting the due objects is the deferred deleter's, shared with the
merger (engine/agent/background.py delete_due), run after every round.

Readers below the new log start get OffsetOutOfRangeError (storage/partition/view.py): the SDK
consumer and Kafka clients reset per their policy, jobs move to the log start and count it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamhouse.agent.background import ROUND, BackgroundService, delete_due_recorded
from streamhouse.agent.config import AgentConfig, merge_grace_ms
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.agent.leases import Leases
from streamhouse.storage import topic_settings
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import FencedError, NotFoundError, SegmentsChangedError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.view import SegmentLists

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
OUTAGE_CAP_S = 30.0
FAULT_CAP_S = 300.0
NO_LIMIT = -1


def retention_resource(topic: str) -> str:
    """Lease resource of a topic's retention."""
    return f"retention/{topic}"


@dataclass(frozen=True)
class RetentionSettings:
    interval_s: float  # 0: never
    default_ms: int  # for topics without retention.ms; -1: no limit
    default_bytes: int  # for topics without retention.bytes; -1: no limit
    grace_ms: int  # removed objects are deleted this long after their rows

    @classmethod
    def from_config(cls, config: AgentConfig) -> RetentionSettings:
        return cls(
            interval_s=config.retention_check_interval_ms / 1000,
            default_ms=config.retention_ms,
            default_bytes=config.retention_bytes,
            grace_ms=merge_grace_ms(config),
        )


@dataclass(frozen=True)
class Limits:
    ms: int  # -1: no limit by time
    bytes: int  # -1: no limit by size (per partition)


@dataclass(frozen=True)
class RetentionOutcome:
    """One truncation done: `segments` segments of `removed_bytes` left the partition, whose
    log now starts at `log_start`."""

    topic: str
    partition: int
    segments: int
    removed_bytes: int
    log_start: int


def topic_limits(info: TopicInfo, settings: RetentionSettings) -> Limits | None:
    """The topic's limits, None if nothing is ever removed (no limit, or a compact-only policy:
    Kafka applies retention only with cleanup.policy 'delete' or 'compact,delete')."""
    policy = info.config.get("cleanup.policy", "delete").split(",")
    if "delete" not in policy:
        return None
    ms = int(info.config.get(topic_settings.RETENTION_MS, settings.default_ms))
    size = int(info.config.get(topic_settings.RETENTION_BYTES, settings.default_bytes))
    return None if ms == NO_LIMIT and size == NO_LIMIT else Limits(ms, size)


def expired(segments: Sequence[SegmentInfo], limits: Limits, now: int) -> list[SegmentInfo]:
    """The oldest segments past a limit, in offset order; never the newest one. One step per
    segment (a partition has thousands, not millions), never per record."""
    candidates = segments[:-1]
    count = 0
    if limits.ms != NO_LIMIT:
        while count < len(candidates) and now - candidates[count].max_timestamp > limits.ms:
            count += 1
    if limits.bytes != NO_LIMIT:
        over = sum(s.size_bytes for s in segments) - limits.bytes
        by_size = 0
        while by_size < len(candidates) and over - candidates[by_size].size_bytes >= 0:
            over -= candidates[by_size].size_bytes
            by_size += 1
        count = max(count, by_size)
    return list(candidates[:count])


def _subject(key: str) -> str:
    if key == ROUND:
        return "retention (listing topics)"
    return "deletion of removed segments" if key == "deletions" else f"retention of topic {key!r}"


class Retention(BackgroundService):
    task_name = "retention"

    def __init__(
        self,
        metadata: MetadataStore,
        store: ObjectStore,
        leases: Leases,
        settings: RetentionSettings,
        *,
        lists: SegmentLists | None = None,
    ) -> None:
        health = FailureTracker[str](
            Backoff(FIRST_RETRY_S, OUTAGE_CAP_S, FAULT_CAP_S),
            label=_subject,
            topic=lambda key: "" if key in (ROUND, "deletions") else key,
            log=log,
        )
        super().__init__(leases, settings.interval_s, health)
        self.metadata = metadata
        self.store = store
        self.settings = settings
        self.lists = lists  # this agent's segment-list cache: forgotten after its own truncations
        # Metrics hooks: a truncation done; a partition's log start as last listed; objects deleted.
        self.on_removed: Callable[[RetentionOutcome], None] = lambda outcome: None
        self.on_log_start: Callable[[str, int, int], None] = lambda topic, partition, start: None
        self.on_deleted: Callable[[int], None] = lambda count: None
        if lists is not None and settings.grace_ms < lists.ttl_s * 1000 * 2:
            raise StreamHouseError(f"retention grace {settings.grace_ms} ms must outlast the segment-list cache")

    async def run_once(self) -> list[RetentionOutcome]:
        """One round over every topic with a limit (skipping those backing off or held by
        another agent), then the due objects deleted. Never raises a store error: failures
        are recorded in `health` (logged once per change, backed off, in readiness)."""
        try:
            topics = await self.metadata.list_topics()
            self.health.succeeded(ROUND)
        except StreamHouseError as exc:
            self.health.failed(ROUND, exc)
            return []
        done: list[RetentionOutcome] = []
        for info in topics:
            if self.health.wait_s(info.name) > 0:
                continue
            try:
                limits = topic_limits(info, self.settings)
                if limits is None:
                    self.health.forget(info.name)
                    continue
                done.extend(await self.apply(info, limits))
                self.health.succeeded(info.name)
            except NotFoundError:
                self.health.forget(info.name)  # deleted meanwhile: nothing to keep any more
            except (StreamHouseError, OSError, ValueError) as exc:  # ValueError: a limit stored unchecked
                self.health.failed(info.name, exc)
        await self.delete_due()
        return done

    async def apply(self, info: TopicInfo, limits: Limits) -> list[RetentionOutcome]:
        """Remove every partition's expired segments under the topic's retention lease; [] if
        there are none or another agent holds the lease."""
        now = now_ms()
        plan: list[tuple[int, list[SegmentInfo]]] = []
        for partition in range(info.partitions):
            listed = await self.metadata.list_log(info.name, partition)
            self.on_log_start(info.name, partition, listed.log_start)
            doomed = expired(listed.segments, limits, now)
            if doomed:
                plan.append((partition, doomed))
        if not plan:
            return []
        done: list[RetentionOutcome] = []
        async with self.leased(retention_resource(info.name)) as lease:
            if lease is None:
                return []  # another agent applies this topic's retention now
            for partition, doomed in plan:
                try:
                    if not lease.fresh():
                        lease = await self.leases.renew(lease)
                    start = await self.metadata.truncate_log(
                        doomed, lease.resource, lease.holder, lease.epoch, self.settings.grace_ms
                    )
                except SegmentsChangedError as exc:
                    log.debug("%s/%d: retention not applied, planned again next round: %s", info.name, partition, exc)
                    continue  # a merge or compaction swapped these rows meanwhile
                except FencedError:
                    break  # the lease is lost: its new holder goes on
                if self.lists is not None:
                    self.lists.forget(info.name, partition)
                outcome = RetentionOutcome(info.name, partition, len(doomed), sum(s.size_bytes for s in doomed), start)
                log.info(
                    "%s/%d: retention removed %d segments (%d bytes); the log starts at %d",
                    info.name,
                    partition,
                    outcome.segments,
                    outcome.removed_bytes,
                    start,
                )
                self.on_removed(outcome)
                self.on_log_start(info.name, partition, start)
                done.append(outcome)
        return done

    async def delete_due(self) -> int:
        """The deferred deleter (shared with the merger): due objects deleted, how many."""
        return await delete_due_recorded(self.metadata, self.store, self.health, self.on_deleted, self.keep)


__all__ = ["Limits", "Retention", "RetentionOutcome", "RetentionSettings", "expired", "retention_resource"]
