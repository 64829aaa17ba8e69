"""Serve any offset range of a partition: committed segments (through the block cache and
a TTL'd segment-list cache) followed by the leader writer's unflushed buffer."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import RECORD_COLUMNS, RECORD_SCHEMA
from streamhouse.storage.segment.cache import BlockCache, TtlCache
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
        self._metadata = metadata
        self.cache = BlockCache(
            self.config.block_cache_bytes,
            Path(self.config.disk_cache_dir) if self.config.disk_cache_dir else None,
            self.config.disk_cache_bytes,
        )
        self.segments = SegmentReader(store, self.cache)
        self._segment_lists: TtlCache[tuple[str, int], list[SegmentInfo]] = TtlCache(self.config.segment_list_ttl_s)

    async def _segment_list(self, topic: str, partition: int, need_end: int) -> list[SegmentInfo]:
        """Committed segments; refreshed when stale or when they stop short of `need_end`."""
        key = (topic, partition)
        cached = self._segment_lists.get(key)
        if cached is not None and (cached[-1].end_offset if cached else 0) >= need_end:
            return cached
        fresh = await self._metadata.list_segments(topic, partition)
        self._segment_lists.put(key, fresh)
        return fresh

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
        pieces: list[pa.Table] = []
        position = start_offset
        while position < stop:
            # No await between this check and read_buffer: a concurrent roll cannot move
            # the buffer's start in between, so memory and segments never leave a gap.
            if writer is not None and position >= writer.buffer_start:
                batches = writer.read_buffer(position, min(stop, writer.next_offset))
                if batches:
                    pieces.append(pa.Table.from_batches(batches, schema=RECORD_SCHEMA))
                break
            if writer is None:
                # Not the leader: whatever is committed is all there is; refresh only when
                # the cached list ends before the requested start.
                committed_stop, need_end = stop, position + 1
            else:
                committed_stop = need_end = min(stop, writer.buffer_start)
            advanced = await self._read_committed(topic, partition, position, committed_stop, need_end, pieces)
            if advanced == position:
                break
            position = advanced
        if not pieces:
            return RECORD_SCHEMA.empty_table()
        return pa.concat_tables(pieces)

    async def _read_committed(
        self, topic: str, partition: int, position: int, stop: int, need_end: int, pieces: list[pa.Table]
    ) -> int:
        """Append segment rows in [position, stop) to `pieces`; returns where it got to."""
        segments = await self._segment_list(topic, partition, need_end)
        bases = [s.base_offset for s in segments]
        i = max(0, bisect.bisect_right(bases, position) - 1)
        while position < stop and i < len(segments):
            seg = segments[i]
            i += 1
            if seg.end_offset <= position:
                continue
            # Below the first segment (retention, compaction) reading resumes at its base.
            position = max(position, seg.base_offset)
            upto = min(stop, seg.end_offset)
            table = await self.segments.read(seg.ref, start_offset=position, end_offset=upto)
            pieces.append(table.select(list(RECORD_COLUMNS)))
            position = upto
        return position

    async def segments_for(self, topic: str, partition: int) -> list[SegmentInfo]:
        """Fresh committed segment list (SQL planning, EXPLAIN)."""
        self._segment_lists.invalidate((topic, partition))
        return await self._segment_list(topic, partition, 0)
