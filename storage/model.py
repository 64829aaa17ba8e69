"""Frozen value types shared by the metadata store, the segment layer and the partition IO."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: int
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    # JSON text describing declared value columns (SQL issue); None for raw-bytes topics.
    value_schema: str | None = None


@dataclass(frozen=True)
class SegmentRef:
    """What a reader needs to open a segment object safely (footer verified before trusted)."""

    object_key: str
    size_bytes: int
    footer_length: int  # bytes at the end of the object: thrift footer + 4-byte length + "PAR1"
    footer_crc: int  # CRC32C of those footer_length bytes


@dataclass(frozen=True)
class SegmentInfo:
    """One committed segment: records [base_offset, end_offset) of one partition."""

    topic: str
    partition: int
    base_offset: int
    end_offset: int  # exclusive
    min_timestamp: int
    max_timestamp: int
    size_bytes: int
    object_key: str
    epoch: int
    footer_length: int
    footer_crc: int
    created_at_ms: int = 0

    @property
    def record_count(self) -> int:
        return self.end_offset - self.base_offset

    @property
    def ref(self) -> SegmentRef:
        return SegmentRef(self.object_key, self.size_bytes, self.footer_length, self.footer_crc)


@dataclass(frozen=True)
class Lease:
    resource: str
    holder: str
    epoch: int
    expires_at_ms: int


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # Last modification (upload) time in ms since the epoch, from list() and head(). Not part of
    # equality: it says when, not what (the orphan reconciler's grace is judged by it).
    modified_ms: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class JobInfo:
    """A continuous query (docs/DESIGN.md §8): `sql` runs forever, writing into `output_topic`."""

    name: str
    sql: str
    output_topic: str
    options: Mapping[str, str]
    created_at_ms: int
    # Never reused, even after the job is deleted and its name taken again, so anything keyed
    # by it (state objects, metrics) cannot be mistaken for a later job's.
    job_id: int


@dataclass(frozen=True)
class Checkpoint:
    """One exactly-once checkpoint of a job, committed in one metadata transaction.

    `seq` counts the job's checkpoints from 1. `state_key` names the state snapshot already
    written to the object store (None: the job keeps no state). `source_offsets` maps each
    source (topic, partition) to the next offset to read. `output_segments` are the segments the
    job wrote since its previous checkpoint; they become visible together with the offsets and
    the state pointer, or not at all. `created_at_ms` is the database clock, set on commit.
    """

    job: str
    seq: int
    state_key: str | None
    source_offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    output_segments: tuple[SegmentInfo, ...] = ()
    stats: Mapping[str, int | float | str] = field(default_factory=dict)
    created_at_ms: int = 0


def partition_resource(topic: str, partition: int) -> str:
    """Lease resource name of a topic partition (jobs use `job_resource`)."""
    return f"partition/{topic}/{partition}"


def job_resource(name: str) -> str:
    """Lease resource name of a job: whoever holds it runs the job and may checkpoint it."""
    return f"job/{name}"
