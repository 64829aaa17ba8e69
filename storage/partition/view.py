"""What a read of one partition sees (docs/DESIGN.md §6, Read): committed segments up to an offset
X, then the leader writer's unflushed buffer from X. Every reader goes through here — fetch
(reader.py), SQL scans and jobs (scan.py) — so the race with a roll is handled in one place:

A roll commits a segment and then drops the batches it holds from the buffer, moving X. The
buffer is therefore pinned first, with no await in between: X and the batches at and above X are
read together (a roll changes both in one step on the event loop). Only then is the segment list
fetched, and it must reach X. A segment committed meanwhile starts at or above X: its records are
already in the pinned batches (still valid Arrow data after the writer let go of them), so the
view neither misses nor repeats a record.

Retention (docs/DESIGN.md §4) removes whole segments from the front and moves the partition's
log start (kept in the metadata, listed with the segments). Below it, a fetch is refused with
OffsetOutOfRangeError (Kafka's OFFSET_OUT_OF_RANGE: the consumer resets) and a scan (SQL, jobs)
starts at the log start instead: a query over "everything" reads what is still kept.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from streamhouse.storage.errors import OffsetOutOfRangeError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.log_start import PartitionLog
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.partition.writer import PartitionWriter, slice_batches
from streamhouse.storage.segment.cache import TtlCache


class SegmentLists:
    """Committed segment lists and log starts by partition, cached for `ttl_s` (fetches ask many
    times a second).

    A swap (merging, docs/DESIGN.md §4) or retention removes segments from the metadata and
    deletes their objects only after a grace period; a cached list may name a removed segment
    (and an older log start) for up to `ttl_s`, so the grace must exceed `ttl_s` plus the longest
    read (the merger checks it at start against `ttl_s`), and the agent that swapped forgets its
    own cached list at once."""

    def __init__(self, metadata: MetadataStore, ttl_s: float) -> None:
        self._metadata = metadata
        self.ttl_s = ttl_s
        self._cache: TtlCache[tuple[str, int], PartitionLog] = TtlCache(ttl_s)
        # The log start as last listed, kept past the TTL: fetches served from memory answer it
        # (Kafka's log_start_offset) without listing. Set, not maxed: a re-created topic restarts.
        self._starts: dict[tuple[str, int], int] = {}

    def forget(self, topic: str, partition: int) -> None:
        """Drop the cached list (after a swap), so the next read lists the segments anew."""
        self._cache.invalidate((topic, partition))

    def cached_log_start(self, topic: str, partition: int) -> int:
        """The log start as last listed (0 if never): a lower bound, never an await."""
        return self._starts.get((topic, partition), 0)

    async def get(self, topic: str, partition: int, need_end: int) -> PartitionLog:
        """The cached list, refreshed when stale or when it stops short of `need_end`."""
        key = (topic, partition)
        cached = self._cache.get(key)
        if cached is not None and (cached.segments[-1].end_offset if cached.segments else 0) >= need_end:
            return cached
        return await self.fresh(topic, partition)

    async def fresh(self, topic: str, partition: int) -> PartitionLog:
        """Straight from the metadata store (SQL: a query sees every segment committed before it)."""
        listed = await self._metadata.list_log(topic, partition)
        self._cache.put((topic, partition), listed)
        self._starts[(topic, partition)] = listed.log_start
        return listed


@dataclass(frozen=True)
class PartitionView:
    """Offsets [start, stop) of one partition at one moment: `segments` cover what is committed
    below `committed_end` (X), `batches` hold the leader's records from X on."""

    start: int  # at or above `log_start`
    stop: int | None  # exclusive; None: to the end
    committed_end: int
    segments: tuple[SegmentInfo, ...]  # committed segments overlapping [start, min(stop, X)), by base offset
    segments_listed: int  # the partition's whole segment list (pruning statistics)
    # Whole buffered batches overlapping `buffer_range`, with their base offsets: callers may
    # cache something per batch (a scan's decoded value columns, see writer.derived).
    batches: tuple[tuple[int, pa.RecordBatch], ...]
    buffer_range: tuple[int, int]  # [max(start, X), min(stop, the writer's next offset))
    log_start: int = 0  # where the partition's log began as listed (0 if not listed: no committed record wanted)
    # The writer's derived value columns of `batches` (writer.derived), pinned with them: a roll
    # committing meanwhile drops its batches' entries, and a scan must not then decode an Avro
    # or Protobuf value as JSON.
    derived: Mapping[int, pa.Table] = field(default_factory=dict)
    # The writer's producer batches among `batches`, pinned with them (Stable.with_tail).
    producers: tuple[ProducerBatch, ...] = ()

    def buffered(self) -> list[pa.RecordBatch]:
        """The buffered records in `buffer_range`, as zero-copy slices."""
        return slice_batches(self.batches, *self.buffer_range)


async def partition_view(
    lists: SegmentLists,
    topic: str,
    partition: int,
    start: int,
    stop: int | None,
    writer: PartitionWriter | None,
    *,
    fresh: bool,
    below_start: Literal["raise", "clamp"] = "raise",
) -> PartitionView:
    """The view of [start, stop). `writer`: the partition's leader writer on this agent (None: a
    follower sees what is committed). `fresh`: list segments from the metadata store (SQL) rather
    than the TTL'd list (fetch); a fetch served from memory alone then never awaits at all.
    `below_start`: a start below the log start raises OffsetOutOfRangeError (fetch) or moves up
    to it (scans)."""
    batches: list[tuple[int, pa.RecordBatch]] = []
    derived: dict[int, pa.Table] = {}
    producers: tuple[ProducerBatch, ...] = ()
    log = PartitionLog(0, ())  # replaced by the listing whenever committed records are wanted
    if writer is not None:
        # Pinned before the first await: see the module docstring.
        committed_end = writer.buffer_start
        low = max(start, committed_end)
        high = writer.next_offset if stop is None else min(stop, writer.next_offset)
        if high > low:
            batches = writer.buffered_batches(low, high)
            derived = {base: writer.derived[base] for base, _ in batches if base in writer.derived}
            producers = writer.buffered_producers(low)
        buffer_range = (low, max(low, high))
        committed_stop = committed_end if stop is None else min(stop, committed_end)
        if fresh:
            log = await lists.fresh(topic, partition)
        elif committed_stop > start:
            log = await lists.get(topic, partition, committed_stop)
        # else nothing committed wanted: the tail is in memory (and above the log start, which
        # never passes the newest segment's base)
    else:
        # A follower: what is committed is all there is. The cached list serves while it
        # reaches the requested stop (or start, for an open end).
        if fresh:
            log = await lists.fresh(topic, partition)
        else:
            log = await lists.get(topic, partition, start + 1 if stop is None else stop)
        listed = log.segments
        committed_end = listed[-1].end_offset if listed else 0
        committed_stop = committed_end if stop is None else min(stop, committed_end)
        buffer_range = (committed_end, committed_end)
    listed = log.segments
    if start < log.log_start:
        if below_start == "raise":
            raise OffsetOutOfRangeError(topic, partition, start, log.log_start)
        start = log.log_start
    first = bisect.bisect_right([s.end_offset for s in listed], start)
    chosen: list[SegmentInfo] = []
    for segment in listed[first:]:
        if segment.base_offset >= committed_stop:
            break  # committed after the pin (its records are in `batches`), or past stop
        chosen.append(segment)
    return PartitionView(
        start,
        stop,
        committed_end,
        tuple(chosen),
        len(listed),
        tuple(batches),
        buffer_range,
        log.log_start,
        derived,
        producers,
    )
