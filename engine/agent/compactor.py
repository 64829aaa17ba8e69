"""Log compaction (issue 14 item 2, docs/DESIGN.md §4), a leased background service of every agent.

Every round it looks at the topics whose `cleanup.policy` contains 'compact' and, per partition,
plans a pass (engine/agent/compaction_plan.py: the committed segments but the newest, when their
never-compacted share reaches `min.cleanable.dirty.ratio`). A pass runs under the lease
`compact/<topic>/<partition>` (one compactor per partition at a time, whichever agent gets
there first; a live holder elsewhere means skip): download and verify the segments, compact
them in the IO pool (storage/segment/compacted.py over the kernel storage/segment/compact.py:
per key the latest record, tombstones older than `delete.retention.ms` dropped, offsets,
timestamps and headers kept), then per run upload the compacted segment under a key nobody else
uses and swap it in with one fenced metadata transaction (storage/metadata/swap.py). Readers of
the old segments finish: their objects are deleted after the merge grace by the merger's
deletion loop, which serves every swap. Runs go in offset order and a pass stops at the first
refusal (compaction_plan.py says why that keeps deletes deleted).

The active tail is never compacted: unflushed records are in no segment, and the newest
committed segment is left alone (engine/agent/merger.py says why). Safety comes from the swap's
transaction, not the lease's timing: a holder that lost its lease is fenced there, and a swap
whose rows changed meanwhile (a merge, retention, a deleted topic) is refused with nothing
changed. A crash before a swap leaves only an unreferenced upload (the orphan reconciler's).

The rounds follow the merger's interval (`merge_interval_ms`, 0: off) and failures go through a
FailureTracker: backoff, one log line per change of state, readiness, metrics.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from streamhouse.agent.background import ROUND, BackgroundService, download_segments
from streamhouse.agent.compaction_plan import (
    CompactionPlan,
    TopicCompaction,
    compact_resource,
    compacted_key,
    plan_compaction,
    split_by_columns,
)
from streamhouse.agent.config import AgentConfig, merge_grace_ms
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.agent.leases import HeldLease, Leases
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import (
    FencedError,
    NotFoundError,
    OffsetConflictError,
    PartitionNotFoundError,
    SegmentMergeError,
    StreamHouseError,
    TopicNotFoundError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.view import SegmentLists
from streamhouse.storage.segment.compact import CompactionCounts
from streamhouse.storage.segment.compacted import CompactedPass, compact_segments
from streamhouse.storage.segment.footer import SegmentFooter
from streamhouse.storage.topic_settings import compacted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompactSettings:
    interval_s: float
    grace_ms: int
    run_bytes: int = 64 << 20  # input bytes one swap replaces at most
    max_pass_bytes: int = 256 << 20  # input bytes of one pass: bounds its memory

    @classmethod
    def from_config(cls, config: AgentConfig) -> CompactSettings:
        return cls(config.merge_interval_ms / 1000, merge_grace_ms(config), run_bytes=config.merge_target_bytes)


@dataclass(frozen=True)
class CompactionOutcome:
    """One pass done: `swapped` runs of `segments` replaced by compacted segments."""

    topic: str
    partition: int
    segments: int
    swapped: int
    counts: CompactionCounts
    read_bytes: int
    written_bytes: int
    cpu_s: float  # of the compaction itself (decode, kernel, encode), in the IO pool
    end_offset: int  # the pass covered [log start, end_offset)


def _subject(key: str) -> str:
    if key == ROUND:
        return "log compactor round"
    return "listing topics for compaction" if key == "topics" else f"log compaction of {key}"


class CompactionHealth(FailureTracker[str]):
    """Keyed by "<topic>/<partition>" or "topics". A pass that keeps failing costs only space
    (the log stays as it was), so it backs off like the merger, but health names it."""

    def __init__(self) -> None:
        super().__init__(Backoff(1.0, 30.0, 300.0), label=_subject, topic=lambda k: k.rpartition("/")[0], log=log)


class Compactor(BackgroundService):
    task_name = "log-compactor"

    def __init__(
        self,
        metadata: MetadataStore,
        store: ObjectStore,
        leases: Leases,
        settings: CompactSettings,
        *,
        lists: SegmentLists | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(leases, settings.interval_s, CompactionHealth())
        self.metadata = metadata
        self.store = store
        self.settings = settings
        self.lists = lists  # this agent's segment-list cache: forgotten after its own swaps
        self.clock = clock  # the wall clock tombstone ages are measured on (tests move it)
        self.on_compacted: Callable[[CompactionOutcome], None] = lambda outcome: None
        if lists is not None and settings.grace_ms < lists.ttl_s * 1000 * 2:
            raise StreamHouseError(f"compaction grace {settings.grace_ms} ms must outlast the segment-list cache")

    async def run_once(self) -> list[CompactionOutcome]:
        """One round over every compacted topic's partitions (skipping those backing off or
        held by another agent's compactor). Never raises a store error: failures go to `health`."""
        done: list[CompactionOutcome] = []
        try:
            topics = [t for t in await self.metadata.list_topics() if compacted(t.config)]
            self.health.succeeded("topics")
        except StreamHouseError as exc:
            self.health.failed("topics", exc)
            return done
        for topic in topics:
            for partition in range(topic.partitions):
                key = f"{topic.name}/{partition}"
                if self.health.wait_s(key) > 0:
                    continue
                try:
                    outcome = await self.compact_partition(topic, partition)
                    self.health.succeeded(key)
                except (TopicNotFoundError, PartitionNotFoundError):
                    self.health.forget(key)  # deleted meanwhile: nothing to compact any more
                    continue
                except (StreamHouseError, OSError) as exc:
                    self.health.failed(key, exc)
                    continue
                if outcome is not None:
                    done.append(outcome)
        return done

    async def compact_partition(self, topic: TopicInfo, partition: int) -> CompactionOutcome | None:
        """One pass over the partition if one is due, under its compaction lease; None if not
        due or the lease is held elsewhere."""
        settings = TopicCompaction.from_config(topic.config)
        plan = plan_compaction(
            await self.metadata.list_segments(topic.name, partition),
            settings.min_dirty_ratio,
            max_pass_bytes=self.settings.max_pass_bytes,
            run_bytes=self.settings.run_bytes,
        )
        if plan is None:
            return None
        async with self.leased(compact_resource(topic.name, partition)) as lease:
            if lease is None:
                return None  # another agent compacts this partition now
            return await self._pass(topic.name, partition, plan, settings, lease)

    async def _pass(
        self, topic: str, partition: int, plan: CompactionPlan, settings: TopicCompaction, lease: HeldLease
    ) -> CompactionOutcome:
        inputs = await self._download(plan.segments)
        # Names and types: nested schema evolution widens a ROW column under the same name.
        names = [tuple(f"{f.name}: {f.type} {f.nullable}" for f in footer.schema) for footer, _ in inputs]
        runs = [part for run in plan.runs for part in split_by_columns(run, names[_index(plan, run[0]) :])]
        indices = [[_index(plan, seg) for seg in run] for run in runs]
        now = self.clock()
        result, cpu_s = await run_blocking(_timed, inputs, indices, now, settings.delete_retention_ms)
        swapped = written = 0
        for run, encoded in zip(runs, result.segments, strict=True):
            first = run[0]
            key = compacted_key(
                topic, partition, first.base_offset, run[-1].end_offset, first.epoch, uuid.uuid4().hex[:12]
            )
            await self.store.put(key, encoded.data, if_absent=True)  # upload first; never overwrites
            new = encoded.info(topic=topic, partition=partition, object_key=key, epoch=first.epoch)
            try:
                if not lease.fresh():
                    lease = await self.leases.renew(lease)
                await self.metadata.replace_segments(
                    list(run), new, lease.resource, lease.holder, lease.epoch, self.settings.grace_ms
                )
            except (FencedError, OffsetConflictError, NotFoundError, SegmentMergeError) as exc:
                # Refused, nothing changed: the upload goes now; later runs wait for the next
                # pass (a tombstone dropped there could uncover a value left in this run).
                log.debug("%s/%d: compaction of %d segments not swapped in: %s", topic, partition, len(run), exc)
                with contextlib.suppress(StreamHouseError, OSError):
                    await self.store.delete(key)
                if isinstance(exc, NotFoundError):
                    raise
                break
            swapped += 1
            written += new.size_bytes
        if self.lists is not None and swapped:
            self.lists.forget(topic, partition)
        if swapped == len(runs):
            await self._record_time(topic, partition, now)
        outcome = CompactionOutcome(
            topic,
            partition,
            len(plan.segments),
            swapped,
            result.counts,
            result.bytes_in,
            written,
            cpu_s,
            plan.end_offset,
        )
        log.debug("%s/%d: compacted %s", topic, partition, outcome)
        self.on_compacted(outcome)
        return outcome

    async def _download(self, segments: tuple[SegmentInfo, ...]) -> list[tuple[SegmentFooter, bytes]]:
        # A seam of its own: tests swap the segments between this read and the swap.
        return await download_segments(self.store, segments)

    async def _record_time(self, topic: str, partition: int, at_ms: int) -> None:
        """The partition's last compaction time (partition_stats: describe, SQL, CLI)."""
        await self.metadata.set_last_compacted(topic, partition, at_ms)


def _index(plan: CompactionPlan, seg: SegmentInfo) -> int:
    return plan.segments.index(seg)


def _timed(
    inputs: list[tuple[SegmentFooter, bytes]], runs: list[list[int]], now: int, delete_retention_ms: int
) -> tuple[CompactedPass, float]:
    """The pass and the CPU seconds it took on its thread (the figure per core)."""
    started = time.thread_time()
    result = compact_segments(inputs, runs, now_ms=now, delete_retention_ms=delete_retention_ms)
    return result, time.thread_time() - started


__all__ = ["CompactSettings", "CompactionHealth", "CompactionOutcome", "Compactor"]
