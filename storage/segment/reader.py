"""Reading committed segments from the object store (docs/DESIGN.md §4): footer by one range GET
(verified against the CRC the metadata row carries, then cached: segments are immutable),
row groups pruned by offset and time, only the needed row groups fetched (one GET per
contiguous run, through the block cache if one is given), verified and decoded off the event
loop, then rows cut exactly to the requested bounds. A read of a whole object (up to
`whole_object_bytes`) is one GET of it, decoded in place.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.model import SegmentRef
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.segment.decode import Chunk
from streamhouse.storage.segment.format import (
    SegmentFooter,
    decode_row_groups,
    decode_segment,
    parse_footer,
    select_row_groups,
)


class BlockCacheLike(Protocol):
    """What the reader needs of a block cache (storage/segment/cache.py's BlockCache fits)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, data: bytes) -> None: ...


P = ParamSpec("P")
T = TypeVar("T")
# Told about every damaged segment found; the agent logs and counts it, storage stays metrics-free.
CorruptHook = Callable[[SegmentRef, CorruptDataError], None]


def _reports_corruption(
    method: Callable[Concatenate[SegmentReader, SegmentRef, P], Awaitable[T]],
) -> Callable[Concatenate[SegmentReader, SegmentRef, P], Coroutine[Any, Any, T]]:
    """Call the reader's `on_corrupt` hook before a CorruptDataError leaves `method`."""

    @functools.wraps(method)
    async def reporting(self: SegmentReader, ref: SegmentRef, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, ref, *args, **kwargs)
        except CorruptDataError as exc:
            if self.on_corrupt is not None:
                self.on_corrupt(ref, exc)
            raise

    return reporting


class SegmentReader:
    """Reads records of committed segments. One per process is enough; it is not thread-safe
    (use it from one event loop)."""

    def __init__(
        self,
        store: ObjectStore,
        cache: BlockCacheLike | None = None,
        footer_cache_entries: int = 1024,
        *,
        part_bytes: int = 8 << 20,
        whole_object_bytes: int = 64 << 20,
    ) -> None:
        self._store = store
        self._cache = cache
        # Keyed by the whole ref (key, size, footer length and CRC), so a footer can never be
        # used for an object other than the one the metadata row describes.
        self._footers: OrderedDict[SegmentRef, SegmentFooter] = OrderedDict()
        self._loading: dict[SegmentRef, asyncio.Future[SegmentFooter]] = {}
        self._footer_entries = footer_cache_entries
        # Large reads are cut into parts of about this many bytes, each fetched and decoded on
        # its own: parts decode on several cores (pyarrow decodes row groups one after another)
        # and one part's decoding overlaps the next one's transfer.
        self._part_bytes = part_bytes
        # A read of every row group of an object up to this size is one GET of the object
        # (which also brings the footer when it is not cached yet); larger ones go in parts.
        self._whole_object_bytes = whole_object_bytes
        self.bytes_fetched = 0
        self.row_groups_read = 0
        self.footers_fetched = 0
        self.gets = 0
        self.cached_blocks_rejected = 0  # cache entries that failed verification (refetched)
        self.on_corrupt: CorruptHook | None = None

    @property
    def store(self) -> ObjectStore:
        """The object store read (SQL reads local segment files by path: sql/query/native.py)."""
        return self._store

    @_reports_corruption
    async def footer(self, ref: SegmentRef) -> SegmentFooter:
        """The segment's verified footer (row group ranges, statistics, schema)."""
        found = self._cached_footer(ref)
        if found is not None:
            return found
        # Readers arriving together at a new segment share one footer fetch.
        loading = self._loading.get(ref)
        if loading is None:
            loading = asyncio.ensure_future(self._load_footer(ref))
            self._loading[ref] = loading
            loading.add_done_callback(lambda done: self._loaded(ref, done))
        return await asyncio.shield(loading)

    def _cached_footer(self, ref: SegmentRef) -> SegmentFooter | None:
        found = self._footers.get(ref)
        if found is not None:
            self._footers.move_to_end(ref)
        return found

    def _loaded(self, ref: SegmentRef, done: asyncio.Future[SegmentFooter]) -> None:
        self._loading.pop(ref, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every waiter was cancelled

    async def _load_footer(self, ref: SegmentRef) -> SegmentFooter:
        if not 8 < ref.footer_length <= ref.size_bytes - 4:
            raise CorruptDataError(
                f"metadata gives footer length {ref.footer_length} for {ref.size_bytes} bytes",
                source=ref.object_key,
            )
        tail = await self._get(ref.object_key, ref.size_bytes - ref.footer_length, ref.size_bytes)
        return self._remember(ref, await run_blocking(self._parse, ref, tail))

    @_reports_corruption
    async def read(
        self,
        ref: SegmentRef,
        *,
        start_offset: int | None = None,
        end_offset: int | None = None,
        min_timestamp: int | None = None,
        max_timestamp: int | None = None,
        columns: Sequence[str] | None = None,
        row_groups: Sequence[int] | None = None,
        max_rows: int | None = None,
    ) -> pa.Table:
        """Records with offset in [start_offset, end_offset) and timestamp in
        [min_timestamp, max_timestamp] (inclusive); None leaves a side unbounded.
        `row_groups` narrows the row groups read further (a caller's own pruning).
        `max_rows`: at most the first that many (a fetch; in a gapped segment they may span
        more offsets than rows, so only the row groups needed are read)."""
        if max_rows is not None and min_timestamp is None and max_timestamp is None:
            known = self._cached_footer(ref) or await self.footer(ref)
            if known.dense:  # rows are offsets: the bound is an offset bound
                first = known.base_offset if start_offset is None else max(start_offset, known.base_offset)
                end_offset = first + max_rows if end_offset is None else min(end_offset, first + max_rows)
                max_rows = None
        bounds = (start_offset, end_offset, min_timestamp, max_timestamp)
        footer = self._cached_footer(ref)
        whole: bytes | memoryview | None = None
        unbounded = bounds == (None, None, None, None)
        if footer is None and unbounded and self._cache is None and ref.size_bytes <= self._whole_object_bytes:
            # Everything is wanted and the object is small: one GET brings footer and data.
            whole = await self._get(ref.object_key)
            footer = self._remember(ref, await run_blocking(self._parse_whole, ref, whole))
        if footer is None:
            footer = await self.footer(ref)
        selected = select_row_groups(footer, *bounds)
        if row_groups is not None:
            allowed = set(row_groups)
            selected = [i for i in selected if i in allowed]
        if max_rows is not None:
            selected = _enough_groups(footer, selected, max_rows)
        wanted = None if columns is None else list(columns)
        by_time = min_timestamp is not None or max_timestamp is not None
        if wanted is not None and by_time and "timestamp" not in wanted:
            wanted.append("timestamp")  # needed to cut rows by time; dropped again below
        by_offset = start_offset is not None or end_offset is not None
        if wanted is not None and by_offset and not footer.dense and "offset" not in wanted:
            wanted.append("offset")  # a gapped segment is cut by searching its offsets
        if not selected:
            return decode_row_groups(footer, {}, columns)  # an empty table of the right columns
        table = await self._fetch_and_decode(ref, footer, selected, wanted, whole)
        self.row_groups_read += len(selected)
        table = _cut(footer, table, selected, *bounds)
        if max_rows is not None and table.num_rows > max_rows:
            table = table.slice(0, max_rows)
        return table if columns is None else table.select(list(columns))

    async def _fetch_and_decode(
        self,
        ref: SegmentRef,
        footer: SegmentFooter,
        selected: list[int],
        columns: list[str] | None,
        whole: bytes | memoryview | None,
    ) -> pa.Table:
        cached: dict[int, Chunk] = {}
        if self._cache is not None:
            for i in selected:
                block = await self._cache.get(f"{ref.object_key}#{i}")
                if block is not None and _intact(footer, i, block):
                    cached[i] = block
                elif block is not None:
                    self.cached_blocks_rejected += 1
        everything = len(selected) == len(footer.row_groups) and not cached
        if whole is None and everything and ref.size_bytes <= self._whole_object_bytes:
            # All of a not-too-large object: one GET, decoded in place by the fastest path.
            whole = await self._get(ref.object_key)
        if whole is not None:
            return await self._decode_whole(ref, footer, whole, columns)
        parts = self._split(footer, selected)
        threads = len(parts) == 1  # one part: let pyarrow decode its columns in parallel
        return _concat(
            await asyncio.gather(
                *(self._fetch_part(ref.object_key, footer, part, cached, columns, threads) for part in parts)
            )
        )

    async def _fetch_part(
        self,
        key: str,
        footer: SegmentFooter,
        part: list[int],
        cached: dict[int, Chunk],
        columns: list[str] | None,
        threads: bool,
    ) -> pa.Table:
        runs = _runs([i for i in part if i not in cached])
        # A run from the first row group is fetched from byte 0: its buffer's positions are
        # file positions, so pyarrow can read it in place instead of through Python.
        starts = [0 if run[0] == 0 else footer.row_groups[run[0]].byte_start for run in runs]
        datas = await asyncio.gather(
            *(self._get(key, s, footer.row_groups[run[-1]].byte_end) for s, run in zip(starts, runs, strict=True))
        )
        chunks = {i: cached[i] for i in part if i in cached}
        for start, run, data in zip(starts, runs, datas, strict=True):
            view = memoryview(data)
            for i in run:
                rg = footer.row_groups[i]
                chunks[i] = view[rg.byte_start - start : rg.byte_end - start]
                if self._cache is not None:
                    await self._cache.put(f"{key}#{i}", bytes(chunks[i]))
        if len(runs) == 1 and starts[0] == 0 and len(runs[0]) == len(part):
            return await run_blocking(decode_segment, footer, datas[0], columns, part, use_threads=threads)
        return await run_blocking(decode_row_groups, footer, chunks, columns, use_threads=threads)

    async def _decode_whole(
        self, ref: SegmentRef, footer: SegmentFooter, data: bytes | memoryview, columns: list[str] | None
    ) -> pa.Table:
        if len(data) != ref.size_bytes:
            raise CorruptDataError(
                f"object has {len(data)} bytes, metadata says {ref.size_bytes}", source=ref.object_key
            )
        if self._cache is not None:
            view = memoryview(data)
            for rg in footer.row_groups:
                await self._cache.put(f"{ref.object_key}#{rg.index}", bytes(view[rg.byte_start : rg.byte_end]))
        # One thread: on this 2-core class of machine pyarrow's own threads made a whole-segment
        # decode slower (17 M rec/s single-threaded vs ~11 M threaded), and the IO pool already
        # decodes several reads side by side.
        return await run_blocking(decode_segment, footer, data, columns, use_threads=False)

    def _split(self, footer: SegmentFooter, selected: list[int]) -> list[list[int]]:
        """Consecutive parts of about `part_bytes` each (equal shares of the total)."""
        total = sum(footer.row_groups[i].num_bytes for i in selected)
        k = max(1, min(len(selected), -(-total // self._part_bytes)))
        parts: list[list[int]] = [[]]
        done = 0
        for i in selected:
            if parts[-1] and done >= total * len(parts) / k:
                parts.append([])
            parts[-1].append(i)
            done += footer.row_groups[i].num_bytes
        return parts

    async def _get(self, key: str, start: int | None = None, end: int | None = None) -> bytes | memoryview:
        data = await self._store.get(key, start, end)
        self.gets += 1
        self.bytes_fetched += len(data)
        return data

    def _parse(self, ref: SegmentRef, tail: bytes | memoryview) -> SegmentFooter:
        return parse_footer(tail, size_bytes=ref.size_bytes, footer_crc=ref.footer_crc, source=ref.object_key)

    def _parse_whole(self, ref: SegmentRef, data: bytes | memoryview) -> SegmentFooter:
        if len(data) != ref.size_bytes or not 8 < ref.footer_length <= len(data) - 4:
            raise CorruptDataError(
                f"object has {len(data)} bytes, metadata says {ref.size_bytes} with a {ref.footer_length}-byte footer",
                source=ref.object_key,
            )
        return self._parse(ref, data[-ref.footer_length :])

    def _remember(self, ref: SegmentRef, footer: SegmentFooter) -> SegmentFooter:
        self.footers_fetched += 1
        self._footers[ref] = footer
        while len(self._footers) > self._footer_entries:
            self._footers.popitem(last=False)
        return footer


def _intact(footer: SegmentFooter, index: int, block: bytes) -> bool:
    """A cached block is re-verified before use: a damaged disk-tier entry is refetched,
    not reported as a corrupt segment."""
    rg = footer.row_groups[index]
    return len(block) == rg.num_bytes and crc32c(block) == rg.crc


def _enough_groups(footer: SegmentFooter, selected: list[int], max_rows: int) -> list[int]:
    """The leading row groups of `selected` that hold `max_rows` rows even if the first one is
    cut (its rows before the start do not count: it counts for nothing)."""
    total = 0
    for n, i in enumerate(selected[1:], start=1):
        total += footer.row_groups[i].num_rows
        if total >= max_rows:
            return selected[: n + 1]
    return selected


def _runs(indices: list[int]) -> list[list[int]]:
    """Consecutive row groups are adjacent bytes: one GET per run."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _concat(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _cut(
    footer: SegmentFooter,
    table: pa.Table,
    selected: list[int],
    start_offset: int | None,
    end_offset: int | None,
    min_timestamp: int | None,
    max_timestamp: int | None,
) -> pa.Table:
    """Rows exactly within the bounds. Offset bounds are zero-copy slices: where a row group is
    dense by arithmetic, in a gapped (compacted) one by a binary search of its offsets, never
    row = offset - base. Only row groups straddling a time bound are filtered."""
    pieces: list[pa.Table] = []
    changed = False
    row = 0
    for i in selected:
        rg = footer.row_groups[i]
        if rg.dense or (start_offset is None and end_offset is None):
            lo = 0 if start_offset is None else min(rg.num_rows, max(0, start_offset - rg.base_offset))
            hi = rg.num_rows if end_offset is None else max(lo, min(rg.num_rows, end_offset - rg.base_offset))
        else:
            offsets = table.column("offset").slice(row, rg.num_rows).to_numpy()
            lo = 0 if start_offset is None else int(np.searchsorted(offsets, start_offset, side="left"))
            hi = rg.num_rows if end_offset is None else max(lo, int(np.searchsorted(offsets, end_offset, side="left")))
        piece = table.slice(row + lo, hi - lo)
        changed |= hi - lo != rg.num_rows
        if not _inside(rg.min_timestamp, rg.max_timestamp, min_timestamp, max_timestamp):
            ts = piece.column("timestamp")
            mask = None
            if min_timestamp is not None:
                mask = pc.greater_equal(ts, pa.scalar(min_timestamp, pa.int64()))
            if max_timestamp is not None:
                upper = pc.less_equal(ts, pa.scalar(max_timestamp, pa.int64()))
                mask = upper if mask is None else pc.and_(mask, upper)
            if mask is not None:
                piece = piece.filter(mask)
                changed = True
        pieces.append(piece)
        row += rg.num_rows
    return pa.concat_tables(pieces) if changed else table


def _inside(lo: int | None, hi: int | None, min_ts: int | None, max_ts: int | None) -> bool:
    """Whether every timestamp in [lo, hi] already satisfies the bounds (no filter needed)."""
    if min_ts is not None and (lo is None or lo < min_ts):
        return False
    return not (max_ts is not None and (hi is None or hi > max_ts))
