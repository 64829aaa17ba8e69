"""Offsets found by time: the first record at or after a timestamp, and the first record
holding a partition's largest timestamp (Kafka's ListOffsets by time and MAX_TIMESTAMP,
KIP-734; the front-end contract's offset_for_time / max_timestamp_offset, engine/api/contract.py).

Segments carry their largest timestamp in metadata, so whole segments are skipped without
being read; what remains (one segment and the unsegmented tail) is read in whole fetches
and scanned with numpy, never a Python loop per record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import pyarrow as pa

from streamhouse.api.contract import TimestampOffset
from streamhouse.storage.model import SegmentInfo

SCAN_RECORDS = 50_000
NONE = TimestampOffset(-1, -1)
# (start offset, at most this many records) -> the partition's records from start, at least
# one while start is below the end offset.
Read = Callable[[int, int], Awaitable[pa.Table]]


async def first_at_or_after(segments: Sequence[SegmentInfo], end: int, ts: int, read: Read) -> TimestampOffset:
    """The earliest offset whose timestamp is >= ts, and that timestamp. Segments whose max
    timestamp is below ts are skipped by their metadata; the first other one (or the
    unsegmented tail) is scanned."""
    start = 0
    for segment in segments:
        if segment.max_timestamp >= ts:
            start = segment.base_offset
            break
        start = segment.end_offset
    # Each read returns at least one record while start < end, so this ends.
    while start < end:
        records = await read(start, SCAN_RECORDS)
        stamps = records.column("timestamp").to_numpy()
        if len(stamps) == 0:
            break
        # Offsets from the records, not counted from `start`: compacted segments have gaps.
        offsets = records.column("offset").to_numpy(zero_copy_only=False)
        hits = np.flatnonzero(stamps >= ts)
        if len(hits):
            return TimestampOffset(int(offsets[hits[0]]), int(stamps[hits[0]]))
        start = int(offsets[-1]) + 1
    return NONE


async def max_timestamp(segments: Sequence[SegmentInfo], end: int, read: Read) -> TimestampOffset:
    """The offset and timestamp of the record with the largest timestamp (the first such
    record on a tie, as Kafka keeps it); NONE for an empty partition. Only the segment
    holding the largest one and the unsegmented tail are read."""
    best_ts, best_range = -1, (0, 0)
    tail = 0
    for segment in segments:
        if segment.max_timestamp > best_ts:
            best_ts, best_range = segment.max_timestamp, (segment.base_offset, segment.end_offset)
        tail = max(tail, segment.end_offset)
    in_tail = await _first_max(read, tail, end)
    if in_tail.offset >= 0 and in_tail.timestamp > best_ts:  # strictly greater: an earlier segment wins a tie
        return in_tail
    if best_ts < 0:
        return NONE
    found = await _first_max(read, *best_range)
    return found if found.offset >= 0 else NONE


async def _first_max(read: Read, start: int, end: int) -> TimestampOffset:
    """The first offset in [start, end) holding the range's largest timestamp, and that timestamp."""
    best_offset, best_ts = -1, -1
    # Each read returns at least one record while start < end, so this ends.
    while start < end:
        records = await read(start, min(SCAN_RECORDS, end - start))
        stamps = records.column("timestamp").to_numpy(zero_copy_only=False)
        if len(stamps) == 0:
            break
        offsets = records.column("offset").to_numpy(zero_copy_only=False)
        inside = offsets < end
        stamps, offsets = stamps[inside], offsets[inside]
        if len(stamps) == 0:
            break
        top = int(np.argmax(stamps))  # argmax: the first of equal maxima
        if int(stamps[top]) > best_ts:
            best_offset, best_ts = int(offsets[top]), int(stamps[top])
        start = int(offsets[-1]) + 1
    return TimestampOffset(best_offset, best_ts)
