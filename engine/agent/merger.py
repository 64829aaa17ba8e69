"""Small-segment merging, a leased background service of every agent (docs/DESIGN.md §4, §5).

acks=durable rolls a segment per group commit, so small durable produces leave many tiny
segments, and every read pays per segment. Every `interval` the merger lists each partition's
segments and plans runs of neighbours that are all small (storage/metadata/swap.py explains
the swap). For a partition with a run it takes the lease `merge/<topic>/<partition>` — one
merger per partition at a time, whichever agent gets there first; a live holder elsewhere means
skip — then per run: download and verify the segments, merge them (storage/segment/merge.py, in
the IO pool), upload the result under a key nobody else uses (never overwriting), and swap it
in with one fenced metadata transaction. The old objects are deleted by the same loop once the
grace recorded with the swap has passed.

Why a lease of its own rather than the partition leader's lease: job output partitions have no
leader (jobs commit them under the job's lease), and a merge never blocks or depends on the
writer: commits happen at the end, swaps only below it. Safety comes from the swap's
transaction, not from the lease's timing: a holder that lost its lease is fenced there, and a
swap whose rows changed meanwhile is refused. Crash anywhere: before the swap, the uploaded
object is referenced by nothing (an orphan the orphan reconciler of issue 14 will remove; the
log is unchanged); after it, the old objects are recorded and deleted later by any agent.

The last segment of a partition is never merged: a writer whose commit reply was lost looks
its segment up right after (partition/writer.py), and WAL recovery judges leaderships by the
last segment's epoch (wal/recovery.py). Runs never span epochs, and the merged segment keeps
theirs, so recovery's per-epoch bookkeeping sees the same epochs over the same offsets.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streamhouse.agent.background import BackgroundService, delete_due_recorded, download_segments
from streamhouse.agent.config import AgentConfig, merge_grace_ms
from streamhouse.agent.leases import HeldLease, Leases
from streamhouse.agent.merge_health import MergeHealth
from streamhouse.storage.errors import (
    FencedError,
    NotFoundError,
    OffsetConflictError,
    SegmentMergeError,
    StreamHouseError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.view import SegmentLists
from streamhouse.storage.segment.footer import SegmentFooter
from streamhouse.storage.segment.merge import merge_segments, merged_key

log = logging.getLogger(__name__)


def merge_resource(topic: str, partition: int) -> str:
    """Lease resource of a partition's merger."""
    return f"merge/{topic}/{partition}"


@dataclass(frozen=True)
class MergeSettings:
    interval_s: float
    small_bytes: int
    target_bytes: int
    min_segments: int
    grace_ms: int
    max_segments: int = 2_000  # per merge: bounds the requests and memory of one attempt

    @classmethod
    def from_config(cls, config: AgentConfig) -> MergeSettings:
        return cls(
            interval_s=config.merge_interval_ms / 1000,
            small_bytes=config.merge_small_bytes,
            target_bytes=config.merge_target_bytes,
            min_segments=config.merge_min_segments,
            grace_ms=merge_grace_ms(config),
        )


@dataclass(frozen=True)
class MergeOutcome:
    """One swap done: `replaced` segments became the one at `object_key`."""

    topic: str
    partition: int
    replaced: int
    base_offset: int
    end_offset: int
    read_bytes: int
    written_bytes: int
    object_key: str


def plan_runs(segments: Sequence[SegmentInfo], settings: MergeSettings) -> list[list[SegmentInfo]]:
    """Runs worth merging, in offset order: at least `min_segments` neighbours of one epoch, each
    under `small_bytes`, together at most `target_bytes`; the partition's last segment never."""
    runs: list[list[SegmentInfo]] = []
    run: list[SegmentInfo] = []
    total = 0
    for seg in segments[:-1]:
        small = seg.size_bytes < settings.small_bytes
        fits = (
            run
            and seg.base_offset == run[-1].end_offset
            and seg.epoch == run[-1].epoch
            and total + seg.size_bytes <= settings.target_bytes
            and len(run) < settings.max_segments
        )
        if small and fits:
            run.append(seg)
            total += seg.size_bytes
            continue
        if len(run) >= settings.min_segments:
            runs.append(run)
        run, total = ([seg], seg.size_bytes) if small else ([], 0)
    if len(run) >= settings.min_segments:
        runs.append(run)
    return runs


class Merger(BackgroundService):
    task_name = "segment-merger"
    health: MergeHealth

    def __init__(
        self,
        metadata: MetadataStore,
        store: ObjectStore,
        leases: Leases,
        settings: MergeSettings,
        *,
        lists: SegmentLists | None = None,
    ) -> None:
        super().__init__(leases, settings.interval_s, MergeHealth())
        self.metadata = metadata
        self.store = store
        self.settings = settings
        self.lists = lists  # this agent's segment-list cache: forgotten after its own swaps
        self.on_merge: Callable[[MergeOutcome], None] = lambda outcome: None
        self.on_deleted: Callable[[int], None] = lambda count: None
        if lists is not None and settings.grace_ms < lists.ttl_s * 1000 * 2:
            raise StreamHouseError(f"merge grace {settings.grace_ms} ms must outlast the segment-list cache")

    async def run_once(self) -> list[MergeOutcome]:
        """One round: every partition's runs merged (skipping those backing off or held by
        another agent's merger), then the due objects deleted. Never raises a store error:
        failures are recorded in `health` (logged once per change, backed off)."""
        done: list[MergeOutcome] = []
        try:
            topics = await self.metadata.list_topics()
            self.health.succeeded("topics")
        except StreamHouseError as exc:
            self.health.failed("topics", exc)
            topics = []
        for topic in topics:
            for partition in range(topic.partitions):
                key = f"{topic.name}/{partition}"
                if self.health.wait_s(key) > 0:
                    continue
                try:
                    done.extend(await self.merge_partition(topic.name, partition))
                    self.health.succeeded(key)
                except NotFoundError:
                    self.health.forget(key)  # deleted meanwhile: nothing to merge any more
                except (StreamHouseError, OSError) as exc:
                    self.health.failed(key, exc)
        await self.delete_due()
        return done

    async def merge_partition(self, topic: str, partition: int) -> list[MergeOutcome]:
        """Merge the partition's runs under its merge lease; [] if none or the lease is held."""
        runs = plan_runs(await self.metadata.list_segments(topic, partition), self.settings)
        if not runs:
            return []
        done: list[MergeOutcome] = []
        async with self.leased(merge_resource(topic, partition)) as lease:
            if lease is None:
                return []  # another agent merges this partition now
            for run in runs:
                outcome, lease = await self._merge_run(run, lease)
                if outcome is None:
                    break  # the lease is lost, or the segments moved: planned again next round
                done.append(outcome)
        return done

    async def _merge_run(self, run: list[SegmentInfo], lease: HeldLease) -> tuple[MergeOutcome | None, HeldLease]:
        topic, partition = run[0].topic, run[0].partition
        inputs = await download_segments(self.store, run)
        groups = _same_columns(run, inputs)
        if len(groups) > 1:  # a value schema changed inside the run: merge the longest part
            run, inputs = max(groups, key=lambda g: len(g[0]))
            if len(run) < 2:
                return None, lease
        epoch = run[0].epoch
        encoded = await run_blocking(merge_segments, inputs, epoch=epoch)
        key = merged_key(topic, partition, run[0].base_offset, run[-1].end_offset, epoch, uuid.uuid4().hex[:12])
        await self.store.put(key, encoded.data, if_absent=True)  # upload first; never overwrites
        new = encoded.info(topic=topic, partition=partition, object_key=key, epoch=epoch)
        try:
            if not lease.fresh():
                lease = await self.leases.renew(lease)
            await self.metadata.replace_segments(
                run, new, lease.resource, lease.holder, lease.epoch, self.settings.grace_ms
            )
        except (FencedError, OffsetConflictError, NotFoundError, SegmentMergeError) as exc:
            # A definite refusal (SegmentsChangedError is an OffsetConflictError): nothing
            # references the upload, so it goes now rather than waiting for the reconciler.
            log.debug("%s/%d: merge of %d segments not swapped in: %s", topic, partition, len(run), exc)
            with contextlib.suppress(StreamHouseError, OSError):
                await self.store.delete(key)
            if isinstance(exc, NotFoundError):
                raise
            return None, lease
        # Any other error leaves the outcome unknown: the upload stays (referenced or an orphan).
        if self.lists is not None:
            self.lists.forget(topic, partition)
        outcome = MergeOutcome(
            topic,
            partition,
            len(run),
            new.base_offset,
            new.end_offset,
            sum(s.size_bytes for s in run),
            new.size_bytes,
            key,
        )
        log.debug("%s/%d: merged %d segments into %s", topic, partition, len(run), key)
        self.on_merge(outcome)
        return outcome, lease

    async def delete_due(self) -> int:
        """Delete the replaced objects whose grace has passed (engine/agent/background.py
        delete_due, shared with retention); how many."""
        return await delete_due_recorded(self.metadata, self.store, self.health, self.on_deleted, self.keep)


def _same_columns(
    run: list[SegmentInfo], inputs: list[tuple[SegmentFooter, bytes]]
) -> list[tuple[list[SegmentInfo], list[tuple[SegmentFooter, bytes]]]]:
    """The run cut where the segments' columns change (a topic's value schema altered)."""
    groups: list[tuple[list[SegmentInfo], list[tuple[SegmentFooter, bytes]]]] = []
    for seg, item in zip(run, inputs, strict=True):
        schema = item[0].schema.remove_metadata()
        if groups and groups[-1][1][-1][0].schema.remove_metadata().equals(schema):
            groups[-1][0].append(seg)
            groups[-1][1].append(item)
        else:
            groups.append(([seg], [item]))
    return groups


__all__ = ["MergeOutcome", "MergeSettings", "Merger", "merge_resource", "plan_runs"]
