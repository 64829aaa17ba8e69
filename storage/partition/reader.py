"""Serve any offset range of a partition (fetch: SDK, gRPC, Kafka): the partition view
(view.py: committed segments, then the leader writer's unflushed buffer) read through the block
cache, whole segment ranges at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.view import PartitionView, SegmentLists, partition_view
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import RECORD_COLUMNS, RECORD_SCHEMA
from streamhouse.storage.segment.cache import BlockCache
from streamhouse.storage.segment.reader import SegmentReader


@dataclass(frozen=True)
class ReaderConfig:
    segment_list_ttl_s: float = 1.0
    block_cache_bytes: int = 256 << 20
    disk_cache_dir: str | None = None
    disk_cache_bytes: int = 4 << 30


class PartitionReader:
    def __init__(self, metadata: MetadataStore, store: ObjectStore, config: ReaderConfig | None = None) -> None:
        self.config = config or ReaderConfig()
        self.cache = BlockCache(
            self.config.block_cache_bytes,
            Path(self.config.disk_cache_dir) if self.config.disk_cache_dir else None,
            self.config.disk_cache_bytes,
        )
        self.segments = SegmentReader(store, self.cache)
        self.lists = SegmentLists(metadata, self.config.segment_list_ttl_s)

    async def view(
        self,
        topic: str,
        partition: int,
        start: int,
        stop: int | None,
        writer: PartitionWriter | None = None,
        *,
        fresh: bool = False,
    ) -> PartitionView:
        """What a read of [start, stop) sees (see view.py)."""
        return await partition_view(self.lists, topic, partition, start, stop, writer, fresh=fresh)

    async def read(
        self,
        topic: str,
        partition: int,
        start_offset: int,
        *,
        max_records: int = 10_000,
        end_offset: int | None = None,
        writer: PartitionWriter | None = None,
    ) -> pa.Table:
        """Records [start_offset, min(end_offset, start_offset + max_records)), never past
        the last acknowledged record. Fewer rows (or none) when the log ends sooner."""
        stop = start_offset + max_records if end_offset is None else min(end_offset, start_offset + max_records)
        if stop <= start_offset:
            return RECORD_SCHEMA.empty_table()
        view = await self.view(topic, partition, start_offset, stop, writer)
        pieces: list[pa.Table] = []
        position = start_offset
        for seg in view.segments:
            # Below the first segment (retention, compaction) reading resumes at its base.
            position = max(position, seg.base_offset)
            upto = min(stop, seg.end_offset)
            table = await self.segments.read(seg.ref, start_offset=position, end_offset=upto)
            pieces.append(table.select(list(RECORD_COLUMNS)))
            position = upto
        # The buffer follows only what was read without a hole (the list always reaches the
        # pinned buffer start; if it did not, the records in between would be skipped).
        if view.batches and position >= view.buffer_range[0]:
            pieces.append(pa.Table.from_batches(view.buffered(), schema=RECORD_SCHEMA))
        if not pieces:
            return RECORD_SCHEMA.empty_table()
        return pa.concat_tables(pieces)
