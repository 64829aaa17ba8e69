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
from streamhouse.storage.partition.writer import PartitionWriter, slice_batches
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
        """The first `max_records` records at or after `start_offset` (below `end_offset`),
        never past the last acknowledged record. Fewer rows (or none) when the log ends sooner.
        Compacted segments have gaps (issue 14): records are counted, not offsets, so a read
        starting in a gap returns the records after it (next offset: the last row's + 1)."""
        if max_records <= 0 or (end_offset is not None and end_offset <= start_offset):
            return RECORD_SCHEMA.empty_table()
        # First the offsets `max_records` records span in a dense log (as before compaction);
        # only when gaps left that window short does a second view read on to the end.
        window = start_offset + max_records if end_offset is None else min(end_offset, start_offset + max_records)
        view = await self.view(topic, partition, start_offset, window, writer)
        pieces, position, remaining = await self._read_view(view, start_offset, window, max_records)
        log_end = writer.next_offset if writer is not None else view.committed_end
        if remaining > 0 and window < log_end and (end_offset is None or window < end_offset):
            view = await self.view(topic, partition, window, end_offset, writer)
            more, _, _ = await self._read_view(view, max(position, window), end_offset, remaining)
            pieces += more
        if not pieces:
            return RECORD_SCHEMA.empty_table()
        return pa.concat_tables(pieces)

    async def _read_view(
        self, view: PartitionView, position: int, stop: int | None, remaining: int
    ) -> tuple[list[pa.Table], int, int]:
        """Up to `remaining` records of `view` from `position` below `stop`; the pieces, where
        reading stopped and how many records are still wanted."""
        pieces: list[pa.Table] = []
        for seg in view.segments:
            if remaining <= 0:
                break
            # Below the first segment (retention, compaction) reading resumes at its base.
            position = max(position, seg.base_offset)
            upto = seg.end_offset if stop is None else min(stop, seg.end_offset)
            table = await self.segments.read(seg.ref, start_offset=position, end_offset=upto, max_rows=remaining)
            pieces.append(table.select(list(RECORD_COLUMNS)))
            remaining -= table.num_rows
            position = upto if remaining > 0 else int(table.column("offset")[-1].as_py()) + 1
        # The buffer follows only what was read without a hole (the list always reaches the
        # pinned buffer start; if it did not, the records in between would be skipped).
        if view.batches and remaining > 0 and position >= view.buffer_range[0]:
            low = max(position, view.buffer_range[0])
            tail = slice_batches(view.batches, low, min(view.buffer_range[1], low + remaining))
            pieces.append(pa.Table.from_batches(tail, schema=RECORD_SCHEMA))
            remaining -= pieces[-1].num_rows
            position = low + pieces[-1].num_rows
        return pieces, position, remaining
