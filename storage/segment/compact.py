"""Log compaction's kernel (issue 14 item 2, docs/DESIGN.md §4); pure, synchronous, IO-free.

Given the records of a partition's cleanable range (every committed segment but the newest, in
offset order), decide which survive: per key the record with the highest offset, and of those the
tombstones (null value) only while they are younger than `delete.retention.ms`. Surviving records
are kept byte for byte (offset, timestamp, key, value, headers, typed columns): offsets never
change, so a compacted segment covers its old range with gaps (format.encode_segment `covers=`).

When is a tombstone old enough? Kafka keeps a tombstone for `delete.retention.ms` after the
cleaner first cleaned the segment holding it, so a consumer that read the log up to the dirty
section within that time sees every delete. We do the same without per-record state: every pass
cleans the partition from its start to the end of its cleanable range E at time T, so a record
at offset o was first cleaned by the first pass whose E exceeded o. Compacted segments carry that
history in their footer (KEY_CLEAN_HISTORY: [[E, T], …], only the pairs their range needs), and
`first_cleaned_ms` maps offsets to their T in one searchsorted (offsets past every E: now).

Records without a key have no "latest": Kafka refuses them on compacted topics at produce time
(the agent does too, engine/agent/service.py) and its cleaner drops any stored earlier, before
the topic became compacted. We drop them as well (counted in `CompactionCounts.keyless`).

Everything is whole-column Arrow/numpy: a hash group-by (max offset per key), a set membership
over offsets, one filter. No Python runs per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidInputError


class KeyRequiredError(InvalidInputError):
    """A record without a key was produced to a compacted topic (cleanup.policy contains
    'compact'): it could never be compacted, so it is refused, as Kafka refuses it (INVALID_RECORD).
    `index` is the first such record's position in its batch; nothing of the batch was stored."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


def require_keys(topic: str, keys: pa.Array[Any] | pa.ChunkedArray[Any]) -> None:
    """KeyRequiredError naming the first record of `keys` without a key (one vectorised test)."""
    if keys.null_count:
        first = int(pc.index(pc.is_null(keys), True).as_py())
        raise KeyRequiredError(
            f"{topic}: record {first} has no key; a compacted topic (cleanup.policy compact) keeps the "
            "latest value per key, so every record needs one",
            index=first,
        )


# Footer key of compacted segments: JSON [[end_offset, cleaned_ms], …] by end_offset (see above).
KEY_CLEAN_HISTORY = "streamhouse.clean_history"

Int64s = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class CompactionCounts:
    """What one pass over some records did."""

    records_in: int
    records_out: int
    superseded: int  # an older record of a key with a newer one
    tombstones_dropped: int  # latest of their key, older than delete.retention.ms
    keyless: int  # records without a key (dropped, as Kafka's cleaner does)


@dataclass(frozen=True)
class CleanHistory:
    """When offsets were first cleaned: offsets below ends[i] (and not below ends[i-1]) at
    times[i]. Ends strictly ascend."""

    ends: tuple[int, ...] = ()
    times: tuple[int, ...] = ()

    @classmethod
    def merged(cls, pairs: Iterable[tuple[int, int]]) -> CleanHistory:
        """The union of several segments' pairs (each segment keeps the pairs its range needs);
        for one end, the earliest time (a pass cannot clean an offset before an earlier one did)."""
        best: dict[int, int] = {}
        for end, at in pairs:
            best[end] = min(at, best.get(end, at))
        ends = sorted(best)
        # A later end with an earlier time would be a clock step back: times never go down.
        times = np.maximum.accumulate(np.array([best[e] for e in ends], dtype=np.int64))
        return cls(tuple(ends), tuple(int(t) for t in times.tolist()))

    @classmethod
    def from_footer(cls, metadata: Mapping[bytes, bytes] | None) -> list[tuple[int, int]]:
        """The pairs a segment footer carries ([] for a segment never compacted)."""
        raw = (metadata or {}).get(KEY_CLEAN_HISTORY.encode())
        if raw is None:
            return []
        return [(int(end), int(at)) for end, at in json.loads(raw)]

    def then(self, end: int, now_ms: int) -> CleanHistory:
        """This history after a pass cleaned everything below `end` at `now_ms`."""
        if self.ends and end <= self.ends[-1]:
            return self
        return CleanHistory((*self.ends, end), (*self.times, max(now_ms, self.times[-1] if self.times else now_ms)))

    def for_range(self, base: int, end: int) -> dict[str, str]:
        """The footer entry of a compacted segment covering [base, end): the pairs whose span
        overlaps it (the first end above `base` up to the first end at or past `end`)."""
        lo = int(np.searchsorted(self.ends, base, side="right"))
        hi = int(np.searchsorted(self.ends, end, side="left")) + 1
        pairs = [[e, t] for e, t in zip(self.ends[lo:hi], self.times[lo:hi], strict=True)]
        return {KEY_CLEAN_HISTORY: json.dumps(pairs, separators=(",", ":"))} if pairs else {}

    def first_cleaned_ms(self, offsets: Int64s, now_ms: int) -> Int64s:
        """Per offset, when a pass first cleaned it (`now_ms` for offsets never cleaned)."""
        if not self.ends:
            return np.full(len(offsets), now_ms, dtype=np.int64)
        times = np.append(np.asarray(self.times, dtype=np.int64), now_ms)
        return times[np.searchsorted(np.asarray(self.ends, dtype=np.int64), offsets, side="right")]


def surviving_offsets(
    offsets: pa.Array[Any] | pa.ChunkedArray[Any],
    keys: pa.Array[Any] | pa.ChunkedArray[Any],
    tombstone: pa.Array[Any] | pa.ChunkedArray[Any],
    *,
    now_ms: int,
    delete_retention_ms: int,
    history: CleanHistory = CleanHistory(),
    keep_tombstones_of: pa.Array[Any] | None = None,
) -> tuple[Int64s, CompactionCounts]:
    """The offsets that survive (ascending) among records given as three equal-length columns
    (offsets unique; `tombstone` true where the value is null), and what was dropped. Only the
    key and the value's nullness matter, so a caller may read just those columns.
    `keep_tombstones_of`: keys whose tombstones stay even when expired (see compact_segments)."""
    n = len(offsets)
    if not len(keys) == len(tombstone) == n:
        raise InvalidInputError(f"compaction columns differ in length: {n}, {len(keys)}, {len(tombstone)}")
    if delete_retention_ms < 0:
        raise InvalidInputError(f"delete.retention.ms must be >= 0, got {delete_retention_ms}")
    if n == 0:
        return np.zeros(0, dtype=np.int64), CompactionCounts(0, 0, 0, 0, 0)
    table = pa.Table.from_arrays([_chunked(offsets), _chunked(keys), _chunked(tombstone)], names=["o", "k", "t"])
    keyed = table.filter(pc.is_valid(table.column("k")))
    keyless = n - keyed.num_rows
    latest = keyed.group_by("k", use_threads=False).aggregate([("o", "max")]).column("o_max")
    winners = keyed.filter(pc.is_in(keyed.column("o"), value_set=latest.combine_chunks()))
    win_offsets = _int64(winners.column("o"))
    dead = _bools(winners.column("t"))
    if dead.any():
        cleaned = history.first_cleaned_ms(win_offsets[dead], now_ms)
        expired = np.zeros(len(win_offsets), dtype=bool)
        expired[dead] = now_ms - cleaned >= delete_retention_ms
        if keep_tombstones_of is not None and len(keep_tombstones_of):
            pinned = pc.is_in(winners.column("k"), value_set=keep_tombstones_of.cast(winners.column("k").type))
            expired &= ~_bools(pinned)
    else:
        expired = dead
    kept = np.sort(win_offsets[~expired])
    counts = CompactionCounts(
        records_in=n,
        records_out=len(kept),
        superseded=keyed.num_rows - winners.num_rows,
        tombstones_dropped=int(expired.sum()),
        keyless=keyless,
    )
    return kept, counts


def compact_records(
    table: pa.Table, *, now_ms: int, delete_retention_ms: int, history: CleanHistory = CleanHistory()
) -> tuple[pa.Table, CompactionCounts]:
    """`table` (RECORD_SCHEMA columns first, any typed columns after) with only the surviving
    records, in offset order, every column kept as it was."""
    kept, counts = surviving_offsets(
        table.column("offset"),
        table.column("key"),
        pc.is_null(table.column("value")),
        now_ms=now_ms,
        delete_retention_ms=delete_retention_ms,
        history=history,
    )
    return keep_offsets(table, kept), counts


def keep_offsets(table: pa.Table, kept: Int64s | Sequence[int]) -> pa.Table:
    """The rows of `table` whose offset is in `kept` (a filter: row order is kept)."""
    mask = pc.is_in(table.column("offset"), value_set=pa.array(kept, pa.int64()))
    return table.filter(mask)


def _int64(column: pa.ChunkedArray[Any]) -> Int64s:
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _chunked(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.ChunkedArray[Any]:
    return column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])


def _bools(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=bool)


__all__ = [
    "KEY_CLEAN_HISTORY",
    "CleanHistory",
    "CompactionCounts",
    "KeyRequiredError",
    "compact_records",
    "keep_offsets",
    "require_keys",
    "surviving_offsets",
]
