"""Segment swaps and deferred object deletion, shared by both stores (docs/DESIGN.md §4).

A swap replaces a run of a partition's committed segments by one segment holding the same
records (small-segment merging; compaction and retention build on it). It is one transaction,
fenced twice: by the lease of whoever does the swapping (e.g. `merge/<topic>/<partition>`), and
by the segment rows themselves — every old row must still be there exactly as the caller read
it, and nothing else may overlap the range — so a concurrent swap, a topic deletion or a
re-created topic makes it fail cleanly (SegmentsChangedError) with nothing changed. Commits at
the partition's end (commit_segment, commit_checkpoint) never touch rows below the end, so they
neither block nor invalidate a swap of older segments; the end offset and the producer states
(whose batch offsets a swap keeps) are left as they are.

The old objects are not deleted by the swap: their keys are recorded in `deferred_deletions`
with a time (database clock) after which a reader that listed them before the swap has
finished; the deleter (engine/agent/merger.py) removes them then, and forgets the rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.storage.errors import InvalidInputError, SegmentsChangedError
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.model import SegmentInfo

MAX_GRACE_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class DeferredDeletion:
    """An object no segment row references any more, to delete once `delete_after_ms` passed."""

    object_key: str
    topic: str
    partition: int
    delete_after_ms: int


def validate_swap(
    old: Sequence[SegmentInfo], new: SegmentInfo, resource: str, holder: str, epoch: int, grace_ms: int
) -> None:
    """InvalidInputError unless `new` covers exactly the neighbouring run `old` of one partition."""
    if not old:
        raise InvalidInputError("a swap replaces at least one segment")
    v.validate_resource(resource)
    # The new row keeps the writers' epoch (docs/DESIGN.md §5: WAL recovery matches segments to
    # leaderships by it), so it is checked against the segments' own epoch, not the swapper's.
    v.validate_segment(new, holder, new.epoch)
    v._int("epoch", epoch, 1)
    v._int("grace_ms", grace_ms, 0, MAX_GRACE_MS)
    where = f"swap of {new.topic!r}/{new.partition}"
    for seg in old:
        if (seg.topic, seg.partition) != (new.topic, new.partition):
            raise InvalidInputError(f"{where}: segment {seg.object_key!r} belongs to {seg.topic!r}/{seg.partition}")
        if seg.epoch != new.epoch:
            raise InvalidInputError(
                f"{where}: segment {seg.object_key!r} has epoch {seg.epoch}, the new one {new.epoch}"
            )
        if seg.object_key == new.object_key:
            raise InvalidInputError(f"{where}: the new segment reuses the object key {seg.object_key!r}")
    for before, after in itertools.pairwise(old):
        if after.base_offset != before.end_offset:
            raise InvalidInputError(
                f"{where}: segments [{before.base_offset}, {before.end_offset}) and "
                f"[{after.base_offset}, {after.end_offset}) are not neighbours"
            )
    if (new.base_offset, new.end_offset) != (old[0].base_offset, old[-1].end_offset):
        raise InvalidInputError(
            f"{where}: the new segment holds [{new.base_offset}, {new.end_offset}), "
            f"the old ones [{old[0].base_offset}, {old[-1].end_offset})"
        )


def _identity(seg: SegmentInfo) -> tuple[int, int, str, int, int, int, int]:
    return (
        seg.base_offset,
        seg.end_offset,
        seg.object_key,
        seg.size_bytes,
        seg.footer_length,
        seg.footer_crc,
        seg.epoch,
    )


def check_unchanged(old: Sequence[SegmentInfo], found: Sequence[r.Row]) -> None:
    """`found`: the rows overlapping the swapped range as the transaction sees them (locked)."""
    now = sorted(_identity(r.segment_from_row(row)) for row in found)
    if now != [_identity(s) for s in old]:
        first = old[0]
        raise SegmentsChangedError(
            f"segments of {first.topic!r}/{first.partition} in [{first.base_offset}, {old[-1].end_offset}) "
            f"changed since they were read ({len(old)} expected, {len(now)} found differing); nothing was swapped"
        )


def overlapping_sql(placeholder: str, lock: str) -> str:
    p = [f"{placeholder}{i}" if placeholder == "$" else "?" for i in range(1, 5)]
    return (
        f"SELECT {r.SEGMENT_COLUMNS} FROM segments WHERE topic = {p[0]} AND partition_id = {p[1]}"
        f" AND end_offset > {p[2]} AND base_offset < {p[3]} ORDER BY base_offset {lock}"
    )


def delete_sql(placeholder: str) -> str:
    p = [f"{placeholder}{i}" if placeholder == "$" else "?" for i in range(1, 4)]
    return f"DELETE FROM segments WHERE topic = {p[0]} AND partition_id = {p[1]} AND base_offset = {p[2]}"


def record_deletion_sql(now: str, placeholder: str) -> str:
    p = [f"{placeholder}{i}" if placeholder == "$" else "?" for i in range(1, 5)]
    return (
        "INSERT INTO deferred_deletions (object_key, topic, partition_id, delete_after_ms, recorded_at_ms)"
        f" VALUES ({p[0]}, {p[1]}, {p[2]}, {now} + {p[3]}, {now}) ON CONFLICT (object_key) DO NOTHING"
    )


def due_sql(now: str, placeholder: str) -> str:
    p = f"{placeholder}1" if placeholder == "$" else "?"
    return (
        "SELECT object_key, topic, partition_id, delete_after_ms FROM deferred_deletions"
        f" WHERE delete_after_ms <= {now} ORDER BY delete_after_ms, object_key LIMIT {p}"
    )


LIST_SQL = (
    "SELECT object_key, topic, partition_id, delete_after_ms FROM deferred_deletions"
    " ORDER BY delete_after_ms, object_key"
)


def deletion_from_row(row: r.Row) -> DeferredDeletion:
    return DeferredDeletion(
        str(row["object_key"]), str(row["topic"]), int(row["partition_id"]), int(row["delete_after_ms"])
    )


def validate_keys(keys: Sequence[str]) -> list[str]:
    return [v._name("object_key", k) for k in keys]
