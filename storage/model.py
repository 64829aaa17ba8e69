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


def partition_resource(topic: str, partition: int) -> str:
    """Lease resource name of a topic partition (jobs use `job/<name>`)."""
    return f"partition/{topic}/{partition}"
