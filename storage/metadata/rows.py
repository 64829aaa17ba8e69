"""The metadata tables' rows for both backends (docs/DESIGN.md §5): column lists, the SQL both
dialects share (the lease upsert, revoking a deleted topic's or job's leases), rows → values,
and the decisions taken on rows read inside a transaction (fencing, partition bounds, the next
checkpoint, a segment's base offset). Backends only differ in how they talk to their database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from streamhouse.storage.errors import (
    FencedError,
    OffsetConflictError,
    PartitionNotFoundError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata.producer_state import ProducerState, state_from_row
from streamhouse.storage.metadata.validate import decode_config, decode_stats
from streamhouse.storage.model import Checkpoint, JobInfo, Lease, SegmentInfo, TopicInfo

# Column lists in the order the *_from_row functions read them; SELECTs use these constants.
TOPIC_COLUMNS = "name, topic_id, partitions, config, value_schema"
SEGMENT_COLUMNS = (
    "topic, partition_id, base_offset, end_offset, min_timestamp, max_timestamp, size_bytes,"
    " object_key, epoch, footer_length, footer_crc, created_at_ms"
)
LEASE_COLUMNS = "resource, holder, epoch, expires_at_ms"
JOB_COLUMNS = "name, job_id, sql_text, output_topic, options, created_at_ms"
CHECKPOINT_COLUMNS = "job, seq, state_key, stats, created_at_ms"
# Producer states (docs/DESIGN.md §10), "$n" placeholders (SQLite replaces "$" with "?").
SELECT_PRODUCERS = (
    "SELECT producer_id, producer_epoch, batches FROM producer_states"
    " WHERE topic = $1 AND partition_id = $2 ORDER BY producer_id"
)


def acquire_lease_sql(now: str, placeholder: str) -> str:
    """The lease rules as one upsert, for both dialects: `now` is the database's clock in ms,
    `placeholder` is "?" (SQLite's ?NNN) or "$" (PostgreSQL's $NNN). Parameters: 1 resource,
    2 holder, 3 ttl_ms; returns the lease row, or no row when another live holder has it.

    A live lease held by the same holder keeps its epoch (expiry extended); a free or expired
    one goes to the caller at epoch + 1, the same holder included, since a holder that let its
    lease lapse may have restarted and lost what it buffered. `excluded.expires_at_ms - ttl` is
    the statement's single clock reading, so "expired" and the new expiry agree.
    """
    resource, holder, ttl = (f"{placeholder}{i}" for i in (1, 2, 3))
    return f"""
INSERT INTO leases AS l (resource, holder, epoch, expires_at_ms)
VALUES ({resource}, {holder}, 1, {now} + {ttl})
ON CONFLICT (resource) DO UPDATE SET
    holder = excluded.holder,
    epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at_ms > excluded.expires_at_ms - {ttl}
                 THEN l.epoch ELSE l.epoch + 1 END,
    expires_at_ms = excluded.expires_at_ms
WHERE l.expires_at_ms <= excluded.expires_at_ms - {ttl} OR l.holder = excluded.holder
RETURNING {LEASE_COLUMNS}
"""


class Row(Protocol):
    """sqlite3.Row and asyncpg.Record both index by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


# -- decisions made inside a transaction -------------------------------------------------------
def check_partition(topic: str, partition: int, partitions: int | None) -> None:
    """`partitions` is the topic's partition count as read in the transaction (None: no topic)."""
    if partitions is None:
        raise TopicNotFoundError(topic)
    if not 0 <= partition < partitions:
        raise PartitionNotFoundError(topic, partition, partitions)


def check_fence(resource: str, lease: Row | None, holder: str, epoch: int) -> None:
    """The epoch is the fence: expiry alone does not fence, because nobody else can have written
    unless they acquired the lease, and acquiring bumps the epoch."""
    if lease is None or lease["holder"] != holder or lease["epoch"] != epoch:
        raise fenced(resource, lease, holder, epoch)


def fenced(resource: str, lease: Row | None, holder: str, epoch: int) -> FencedError:
    """The FencedError for `holder` at `epoch`, naming the current holder if there is one."""
    if lease is None:
        return FencedError(f"lease {resource!r} is not held; {holder!r} at epoch {epoch} is fenced")
    return FencedError(
        f"lease {resource!r} is held by {lease['holder']!r} at epoch {lease['epoch']}; "
        f"{holder!r} at epoch {epoch} is fenced"
    )


def check_seq(job: str, seq: int, last_seq: int | None) -> None:
    """`last_seq` is the job's latest committed checkpoint as read in the transaction (None: none
    yet). Exactly the next one is accepted, so of two writers racing with the same checkpoint
    (a restarted runner and its stale twin under one epoch) only one can commit it."""
    expected = (last_seq or 0) + 1
    if seq != expected:
        raise OffsetConflictError(
            f"checkpoint {seq} of job {job!r} does not follow the last committed one "
            f"({last_seq or 'none'}); expected checkpoint {expected}"
        )


def check_base_offset(segment: SegmentInfo, end_offset: int) -> None:
    if segment.base_offset != end_offset:
        raise OffsetConflictError(
            f"segment of {segment.topic!r}/{segment.partition} starts at {segment.base_offset} "
            f"but the durable end offset is {end_offset}"
        )


# -- rows → values -----------------------------------------------------------------------------
def topic_from_row(row: Row) -> TopicInfo:
    return TopicInfo(
        name=row["name"],
        topic_id=int(row["topic_id"]),
        partitions=int(row["partitions"]),
        config=decode_config(row["config"]),
        value_schema=row["value_schema"],
    )


def segment_from_row(row: Row) -> SegmentInfo:
    return SegmentInfo(
        topic=row["topic"],
        partition=int(row["partition_id"]),
        base_offset=int(row["base_offset"]),
        end_offset=int(row["end_offset"]),
        min_timestamp=int(row["min_timestamp"]),
        max_timestamp=int(row["max_timestamp"]),
        size_bytes=int(row["size_bytes"]),
        object_key=row["object_key"],
        epoch=int(row["epoch"]),
        footer_length=int(row["footer_length"]),
        footer_crc=int(row["footer_crc"]),
        created_at_ms=int(row["created_at_ms"]),
    )


def segment_values(segment: SegmentInfo) -> tuple[str, int, int, int, int, int, int, str, int, int, int]:
    """Insert values in SEGMENT_COLUMNS order, without created_at_ms (the database's clock)."""
    return (
        segment.topic,
        segment.partition,
        segment.base_offset,
        segment.end_offset,
        segment.min_timestamp,
        segment.max_timestamp,
        segment.size_bytes,
        segment.object_key,
        segment.epoch,
        segment.footer_length,
        segment.footer_crc,
    )


def in_log_order(segments: list[SegmentInfo]) -> list[SegmentInfo]:
    """DELETE … RETURNING has no ORDER BY; callers get segments by partition, then offset."""
    return sorted(segments, key=lambda s: (s.partition, s.base_offset))


def job_from_row(row: Row) -> JobInfo:
    return JobInfo(
        name=row["name"],
        sql=row["sql_text"],
        output_topic=row["output_topic"],
        options=decode_config(row["options"]),
        created_at_ms=int(row["created_at_ms"]),
        job_id=int(row["job_id"]),
    )


def checkpoint_from_row(row: Row, source_offsets: Iterable[Row]) -> Checkpoint:
    """`source_offsets` rows are (topic, partition_id, next_offset). Output segments are not
    recorded per checkpoint (they are in the segments table, and retention may remove them),
    so a checkpoint read back has none."""
    return Checkpoint(
        job=row["job"],
        seq=int(row["seq"]),
        state_key=row["state_key"],
        source_offsets={(o["topic"], int(o["partition_id"])): int(o["next_offset"]) for o in source_offsets},
        output_segments=(),
        stats=decode_stats(row["stats"]),
        created_at_ms=int(row["created_at_ms"]),
    )


def state_keys(rows: Iterable[Row]) -> list[str]:
    """The distinct state keys of deleted checkpoint rows (seq, state_key), oldest first."""
    keys: list[str] = []
    for row in sorted(rows, key=lambda r: int(r["seq"])):
        key = row["state_key"]
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def lease_from_row(row: Row) -> Lease:
    return Lease(
        resource=row["resource"],
        holder=row["holder"],
        epoch=int(row["epoch"]),
        expires_at_ms=int(row["expires_at_ms"]),
    )


# Deleting a topic keeps its lease rows but revokes them: epochs are never reset (docs/DESIGN.md §5),
# so a re-created topic of the same name gets higher epochs, never reuses a segment object
# key of the old one, and a holder of the old topic is fenced by the holder change.
REVOKE_LEASE_SQL = "UPDATE leases SET holder = '(deleted topic)', expires_at_ms = 0 WHERE resource = $1"
# The same for a deleted job's lease: its runner's next renew or checkpoint is fenced, and a
# re-created job of the same name starts at a higher epoch.
REVOKE_JOB_LEASE_SQL = "UPDATE leases SET holder = '(deleted job)', expires_at_ms = 0 WHERE resource = $1"


def producer_sql(now: str, placeholder: str, expiry_ms: int) -> tuple[str, str]:
    """The producer-state upsert (1 topic, 2 partition, 3 producer id, 4 epoch, 5 batches)
    and the expiry of a partition's silent producers (1 topic, 2 partition), by the
    database's clock `now`; `placeholder` as in acquire_lease_sql."""
    p = [f"{placeholder}{i}" for i in range(1, 6)]
    upsert = (
        "INSERT INTO producer_states (topic, partition_id, producer_id, producer_epoch, batches, updated_at_ms)"
        f" VALUES ({', '.join(p)}, {now}) ON CONFLICT (topic, partition_id, producer_id) DO UPDATE SET"
        " producer_epoch = excluded.producer_epoch, batches = excluded.batches, updated_at_ms = excluded.updated_at_ms"
    )
    expire = (
        f"DELETE FROM producer_states WHERE topic = {p[0]} AND partition_id = {p[1]}"
        f" AND updated_at_ms < {now} - {expiry_ms}"
    )
    return upsert, expire


def producer_from_row(row: Row, source: str) -> ProducerState:
    return state_from_row(int(row["producer_id"]), int(row["producer_epoch"]), str(row["batches"]), source)
