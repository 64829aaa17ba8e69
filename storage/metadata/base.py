"""The MetadataStore contract: domain operations only, no SQL outside the implementations.

Every backend passes tests/test_metadata_contract.py and tests/test_fencing.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from streamhouse.storage.model import Lease, SegmentInfo, TopicInfo


@runtime_checkable
class MetadataStore(Protocol):
    @property
    def url(self) -> str: ...

    async def close(self) -> None: ...

    async def now_ms(self) -> int:
        """The database clock in epoch milliseconds: the only clock leases are judged by."""
        ...

    # -- topics -----------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
    ) -> TopicInfo:
        """TopicExistsError if taken. Creates the partition rows (end offset 0)."""
        ...

    async def get_topic(self, name: str) -> TopicInfo:
        """TopicNotFoundError if missing."""
        ...

    async def list_topics(self) -> list[TopicInfo]: ...

    async def delete_topic(self, name: str) -> list[SegmentInfo]:
        """Removes the topic, its partitions, segments and offsets and revokes its leases
        (rows kept so epochs never restart); returns the segments so the caller can delete
        their objects. TopicNotFoundError if missing."""
        ...

    # -- partitions and segments --------------------------------------------------------------
    async def get_end_offset(self, topic: str, partition: int) -> int:
        """Durable end offset: one past the last committed record."""
        ...

    async def commit_segment(self, segment: SegmentInfo, holder: str, epoch: int) -> None:
        """Fenced commit, one transaction: the partition lease must be held by `holder` at
        `epoch` (else FencedError) and `segment.base_offset` must equal the durable end
        offset (else OffsetConflictError); then insert the segment and advance the end."""
        ...

    async def list_segments(
        self, topic: str, partition: int, start_offset: int = 0, end_offset: int | None = None
    ) -> list[SegmentInfo]:
        """Segments overlapping [start_offset, end_offset), ordered by base offset."""
        ...

    # -- leases -----------------------------------------------------------------------------
    async def acquire_lease(self, resource: str, holder: str, ttl_ms: int) -> Lease:
        """Take a free or expired lease (epoch + 1) or return it unchanged (expiry extended)
        if `holder` already has it. LeaseHeldError if another live holder has it."""
        ...

    async def renew_lease(self, resource: str, holder: str, epoch: int, ttl_ms: int) -> Lease:
        """Extend expiry; the epoch never changes. FencedError if no longer holder at epoch."""
        ...

    async def release_lease(self, resource: str, holder: str, epoch: int) -> None:
        """Give the lease up (expire it now) if still held at epoch; otherwise a no-op."""
        ...

    async def get_lease(self, resource: str) -> Lease | None: ...

    # -- consumer groups ----------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Store the next offset to read per partition (Kafka semantics)."""
        ...

    async def fetch_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        """(topic, partition) → committed offset for a group."""
        ...

    async def list_groups(self) -> list[str]: ...

    async def delete_group(self, group: str, topic: str | None = None) -> None: ...
