"""Where a partition's log begins, and retention's swap that moves it (docs/DESIGN.md §4), shared
by both stores; the per-partition figures the operations surface shows.

Retention removes whole committed segments from the front of a partition. `truncate_log` is one
transaction, fenced like a merge's swap (storage/metadata/swap.py): by the lease of the remover
(`retention/<topic>`), and by the rows themselves — the rows below the new log start must still
be exactly the segments the caller read — so a concurrent merge, compaction or topic deletion
makes it fail cleanly (SegmentsChangedError) with nothing changed. It never removes the newest
committed segment of a partition (as Kafka never deletes the active segment): the end offset
stays backed by a row, a writer whose commit reply was lost finds its segment, and WAL recovery
keeps judging leaderships by the last segment's epoch. The objects go into the deferred
deletions (deleted after the grace, so a reader holding a segment finishes), and the stored log
start moves to the end of the removed run. It never moves back.

`list_log` returns the segments and the log start of one partition read in that order: a
truncation committed between the two reads shows the new log start with the old rows, so a
read between the two starts is refused (OFFSET_OUT_OF_RANGE) rather than silently skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import swap as s
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.model import SegmentInfo


@dataclass(frozen=True)
class PartitionLog:
    """One partition's committed segments (by base offset) and where its log begins."""

    log_start: int
    segments: tuple[SegmentInfo, ...]


@dataclass(frozen=True)
class PartitionStats:
    """What the operations surface shows per partition (DESCRIBE TOPIC, `topic describe`)."""

    partition: int
    log_start: int
    durable_end: int  # one past the last committed record
    segments: int
    size_bytes: int  # of the committed segments
    last_compacted_ms: int | None  # None: never compacted


def validate_truncate(old: Sequence[SegmentInfo], resource: str, holder: str, epoch: int, grace_ms: int) -> None:
    """InvalidInputError unless `old` is a run of one partition's segments in offset order."""
    if not old:
        raise InvalidInputError("a truncation removes at least one segment")
    v.validate_resource(resource)
    v.validate_holder(holder)
    v._int("epoch", epoch, 1)
    v._int("grace_ms", grace_ms, 0, s.MAX_GRACE_MS)
    first = old[0]
    v.validate_topic_name(first.topic)
    v.validate_partition_arg(first.partition)
    for seg in old:
        v._name("object_key", seg.object_key)
        if (seg.topic, seg.partition) != (first.topic, first.partition):
            raise InvalidInputError(
                f"truncation of {first.topic!r}/{first.partition}: segment {seg.object_key!r} belongs to "
                f"{seg.topic!r}/{seg.partition}"
            )
    # Compacted partitions may have whole segments missing between rows: ordered, not adjacent.
    for before, after in itertools.pairwise(old):
        if after.base_offset < before.end_offset:
            raise InvalidInputError(
                f"truncation of {first.topic!r}/{first.partition}: segments [{before.base_offset}, "
                f"{before.end_offset}) and [{after.base_offset}, {after.end_offset}) are not in offset order"
            )


def newest_kept(topic: str, partition: int, new_start: int, found: bool) -> None:
    """`found`: a segment at or after `new_start` exists (read in the transaction)."""
    if not found:
        raise InvalidInputError(
            f"truncation of {topic!r}/{partition} to {new_start} would remove the newest committed segment; "
            "the newest segment of a partition is always kept"
        )


# "$n" placeholders; the SQLite store replaces "$" with "?" (numbered parameters in both).
NEWER_SQL = "SELECT 1 FROM segments WHERE topic = $1 AND partition_id = $2 AND base_offset >= $3 LIMIT 1"
LOG_START_SQL = "SELECT log_start_offset FROM partitions WHERE topic = $1 AND partition_id = $2"
SEGMENTS_SQL = f"SELECT {r.SEGMENT_COLUMNS} FROM segments WHERE topic = $1 AND partition_id = $2 ORDER BY base_offset"
STATS_SQL = (
    "SELECT p.partition_id, p.log_start_offset, p.end_offset, p.last_compacted_ms,"
    " COUNT(s.base_offset) AS segment_count, COALESCE(SUM(s.size_bytes), 0) AS size_bytes"
    " FROM partitions p LEFT JOIN segments s ON s.topic = p.topic AND s.partition_id = p.partition_id"
    " WHERE p.topic = $1"
    " GROUP BY p.partition_id, p.log_start_offset, p.end_offset, p.last_compacted_ms ORDER BY p.partition_id"
)


def advance_sql(greatest: str) -> str:
    """Move the log start to $3 unless it already is past it; `greatest` is the dialect's
    two-argument maximum (SQLite MAX, PostgreSQL GREATEST). Returns the log start now."""
    return (
        f"UPDATE partitions SET log_start_offset = {greatest}(log_start_offset, $3)"
        " WHERE topic = $1 AND partition_id = $2 RETURNING log_start_offset"
    )


def compacted_sql(now: str) -> str:
    """Set last_compacted_ms to $3, or the database clock when $3 is NULL."""
    return (
        f"UPDATE partitions SET last_compacted_ms = COALESCE($3, {now})"
        " WHERE topic = $1 AND partition_id = $2 RETURNING last_compacted_ms"
    )


def stats_from_row(row: r.Row) -> PartitionStats:
    compacted = row["last_compacted_ms"]
    return PartitionStats(
        partition=int(row["partition_id"]),
        log_start=int(row["log_start_offset"]),
        durable_end=int(row["end_offset"]),
        segments=int(row["segment_count"]),
        size_bytes=int(row["size_bytes"]),
        last_compacted_ms=None if compacted is None else int(compacted),
    )


def validate_compacted(topic: str, partition: int, at_ms: int | None) -> None:
    v.validate_topic_name(topic)
    v.validate_partition_arg(partition)
    if at_ms is not None:
        v._int("last_compacted_ms", at_ms, 0)


__all__ = ["PartitionLog", "PartitionStats", "validate_truncate"]
