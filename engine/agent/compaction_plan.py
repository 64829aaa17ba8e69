"""What one log-compaction pass of a partition does (engine/agent/compactor.py); pure, IO-free.

The cleanable range is every committed segment but the newest (the writer whose commit reply
was lost looks its segment up, and WAL recovery judges leaderships by the last segment's epoch:
engine/agent/merger.py), from the partition's first segment on, capped at `max_pass_bytes` (a
prefix from the log start is itself a correct range to compact: whatever a record in it is
superseded by is in it or after it). Unflushed records are never in it: only committed segments.

The trigger is Kafka's min.cleanable.dirty.ratio: the share of the cleanable bytes never
compacted (segments not written by a compaction pass) must reach the topic's ratio. A pass
rewrites the whole range, so a topic whose new data is only a small share of it waits until
enough has accumulated (tombstones expire at the pass after delete.retention.ms).

The range is cut into runs, one swap each (storage/metadata/swap.py: one new segment replaces
neighbours of one epoch): a run never spans epochs, value-column changes or `run_bytes`.
Runs are swapped in offset order and a pass stops at the first refused swap, so a tombstone
dropped in a later run can never make an older value of its key, left in an earlier run
whose swap failed, visible again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.topic_settings import DELETE_RETENTION_MS, MIN_CLEANABLE_DIRTY_RATIO, SETTINGS

COMPACTED_MARK = "-compacted-"


def compact_resource(topic: str, partition: int) -> str:
    """Lease resource of a partition's compactor."""
    return f"compact/{topic}/{partition}"


def compacted_key(topic: str, partition: int, base_offset: int, end_offset: int, epoch: int, token: str) -> str:
    """Object key of a compacted segment: never a writer's key (`<base>-<epoch>.parquet`) nor a
    merge's, unique per attempt (`token`), so an upload never overwrites anything and a crashed
    attempt leaves only an orphan (the reconciler removes it). The mark tells clean from dirty."""
    return f"topics/{topic}/{partition:05d}/{base_offset:020d}-{epoch}{COMPACTED_MARK}{end_offset:020d}-{token}.parquet"


@dataclass(frozen=True)
class TopicCompaction:
    """A compacted topic's settings, parsed from its config map (defaults from topic_settings)."""

    delete_retention_ms: int
    min_dirty_ratio: float

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> TopicCompaction:
        def value(key: str) -> str:
            default = SETTINGS[key].default
            return config.get(key, default if default is not None else "0")

        return cls(int(value(DELETE_RETENTION_MS)), float(value(MIN_CLEANABLE_DIRTY_RATIO)))


@dataclass(frozen=True)
class CompactionPlan:
    """The segments of one pass, in offset order, cut into runs (one swap each)."""

    segments: tuple[SegmentInfo, ...]
    runs: tuple[tuple[SegmentInfo, ...], ...]
    dirty_bytes: int
    total_bytes: int

    @property
    def end_offset(self) -> int:
        return self.segments[-1].end_offset


def is_clean(segment: SegmentInfo) -> bool:
    """Whether a compaction pass wrote the segment."""
    return COMPACTED_MARK in segment.object_key


def plan_compaction(
    segments: Sequence[SegmentInfo], min_dirty_ratio: float, *, max_pass_bytes: int, run_bytes: int
) -> CompactionPlan | None:
    """The pass to run now over a partition's committed `segments` (by base offset), or None:
    nothing cleanable, nothing dirty, or the dirty share below `min_dirty_ratio`."""
    chosen: list[SegmentInfo] = []
    total = 0
    for seg in segments[:-1]:  # never the newest committed segment
        if chosen and (seg.base_offset != chosen[-1].end_offset or total + seg.size_bytes > max_pass_bytes):
            break  # a hole in the list (retention moving the start) or the pass is full
        chosen.append(seg)
        total += seg.size_bytes
    dirty = sum(s.size_bytes for s in chosen if not is_clean(s))
    if not chosen or dirty == 0 or dirty < min_dirty_ratio * total:
        return None
    return CompactionPlan(tuple(chosen), tuple(_runs(chosen, run_bytes)), dirty, total)


def _runs(segments: list[SegmentInfo], run_bytes: int) -> list[tuple[SegmentInfo, ...]]:
    runs: list[list[SegmentInfo]] = []
    size = 0
    for seg in segments:
        if runs and runs[-1][-1].epoch == seg.epoch and size + seg.size_bytes <= run_bytes:
            runs[-1].append(seg)
            size += seg.size_bytes
        else:
            runs.append([seg])
            size = seg.size_bytes
    return [tuple(r) for r in runs]


def split_by_columns(run: Sequence[SegmentInfo], names: Sequence[tuple[str, ...]]) -> list[tuple[SegmentInfo, ...]]:
    """`run` cut where the segments' columns change (`names[i]`: segment i's column names): a
    compacted segment has one schema, so a value schema altered inside a run makes two."""
    out: list[list[SegmentInfo]] = []
    for i, seg in enumerate(run):
        if out and names[i] == names[i - 1]:
            out[-1].append(seg)
        else:
            out.append([seg])
    return [tuple(r) for r in out]


__all__ = [
    "CompactionPlan",
    "TopicCompaction",
    "compact_resource",
    "compacted_key",
    "is_clean",
    "plan_compaction",
    "split_by_columns",
]
