"""Committed segments read by DataFusion's own Parquet reader (issue 16: scans as fast as DuckDB's).

The streaming path (stream.py) hands DataFusion batches our segment reader decoded, chunk by
chunk in Python, after checksumming whole row groups: a scan of three small columns fetched and
checksummed every column. Since segments are plain Parquet (layout 2), DataFusion can read them
itself: only the projected column chunks, row groups pruned by their statistics, on all cores,
without Python in the loop. This module registers a topic as such a view (one `read_parquet`
per committed segment file, its columns relabelled to the topic's SQL table, the rows cut to the
plan's offset and time bounds), unioned with the stream of whatever must still go through our
reader (the leader's unflushed tail, segments without column CRCs, partitions with Kafka
transactions to hide, segments with transaction markers).

Integrity, as strong as the stream path's: every byte DataFusion may use is checksummed, and no
answer leaves run_query before those checks passed. Per file: its footer (DataFusion parses the
file's own, so its CRC is checked against the metadata row again) and every column chunk of the
columns the query uses in the row groups the plan keeps, against the per-column-chunk CRC32Cs the
writer recorded (storage/segment/column_crcs.py); the `_offset` chunks of every row group when a
file's rows are cut by offset, so no row of an unchecked row group can pass the cut. The checks
run beside the query on the IO pool (they read a few percent of what a whole-row-group check
read), each chunk once per process while its file is unchanged (native_check.py); a mismatch
ends the query with CorruptDataError naming the object. DataFusion's page index
and bloom filters are turned off (bytes outside the checked column chunks and footer).

Used for a topic only when the store is local (DataFusion reads the files by path), the query has
no LIMIT (the stream path reads a single row group then; checking whole files would cost more),
the scan spans more than a few read chunks (a point lookup streams its one row group), every
column it uses is of a flat type with a lowercase name, and it reads some column (count(*) is
answered from footers by the stream path)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from datafusion import DataFrame, Expr, LogicalPlan, SessionContext, col, lit
from datafusion.expr import TableScan

from streamhouse.sql.query.native_check import FileCheck, check_files, footer_crcs, footer_leaves
from streamhouse.sql.query.stream import TopicDataset
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.model import SegmentRef
from streamhouse.storage.object_store.keys import check_key
from streamhouse.storage.object_store.local import LocalObjectStore
from streamhouse.storage.partition.scan import PartitionPlan, SegmentChunk
from streamhouse.storage.segment.field_ids import physical_name
from streamhouse.storage.segment.footer import SegmentFooter
from streamhouse.storage.segment.reader import SegmentReader

# DataFusion settings for a context that reads segment files natively (see the module doc).
SETTINGS = {
    "datafusion.execution.parquet.enable_page_index": "false",
    "datafusion.execution.parquet.bloom_filter_on_read": "false",
    "datafusion.execution.parquet.schema_force_view_types": "false",
    # Per-file statistics at planning would read every footer once more (measured: seconds
    # for 500 files); row groups are still pruned by their statistics as the files are read.
    "datafusion.execution.collect_statistics": "false",
    # Two per core: on a loaded 2-core box, two partitions left one core idle at the final
    # aggregation whenever the other's thread was descheduled (50 M bids: 1.6-2.1x DuckDB's
    # wall time with 2, 1.0-1.3x with 4, at the same CPU time).
    "datafusion.execution.target_partitions": "4",
}
# Names DataFusion's col() takes as they are (it lowercases unquoted identifiers).
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_LIMIT = re.compile(r"\blimit\b", re.IGNORECASE)
# A scan of at most this many read chunks streams: DataFusion's file reads and the checks of
# whole column chunks cost more than decoding a few row groups (a point lookup: 12 vs ~300 ms).
_MIN_CHUNKS = 4


@dataclass(frozen=True)
class NativeFile:
    """One committed segment DataFusion reads, and what must be checked before its rows count."""

    path: str
    ref: SegmentRef
    footer: SegmentFooter
    partition: int
    offsets: tuple[tuple[int, int], ...] | None  # [lo, hi) ranges of rows kept; None: all
    times: tuple[int | None, int | None]  # record time bounds (ms, inclusive) when they cut rows
    groups: tuple[int, ...]  # row groups the plan keeps: their `leaves` DataFusion reads are checked
    leaves: tuple[tuple[str, int], ...]  # (file column, its leaf) the query may read
    offset_leaves: tuple[int, ...]  # checked in every row group when the rows are cut by offset

    @property
    def whole(self) -> bool:
        return self.offsets is None and self.times == (None, None)

    def check(self, scanned: set[str] | None) -> FileCheck:
        """What must be checked when DataFusion's scans read the file columns `scanned`
        (None: all of them)."""
        every = range(len(self.footer.row_groups))
        chunks: list[tuple[int, Sequence[int]]] = [
            (j, self.groups) for name, j in self.leaves if scanned is None or name in scanned
        ]
        chunks += [(j, every) for j in self.offset_leaves]
        return FileCheck(self.path, self.ref, self.footer, tuple(chunks))


@dataclass
class NativeTopic:
    """A topic as DataFusion reads it: segment files natively, the rest as a stream."""

    schema: pa.Schema  # the SQL columns the query may use
    physical: dict[str, str]  # SQL column -> its name in a layout-2 segment file
    file_schema: pa.Schema  # what DataFusion reads of the files (absent columns: nulls)
    files: list[NativeFile]
    rest: TopicDataset | None
    links: str | None = None

    def frame(self, ctx: SessionContext, name: str) -> DataFrame:
        """The topic's rows as DataFusion reads them. Whole files go into one listing table (a
        directory of links, `_p=<partition>/`, so DataFusion spreads them over its cores and
        plans them once); files cut by offset or time are read one by one with their filter."""
        frames: list[DataFrame] = []
        whole = [f for f in self.files if f.whole]
        if whole:
            self.links = tempfile.mkdtemp(prefix="streamhouse-native-")
            for i, f in enumerate(whole):
                folder = os.path.join(self.links, f"_p={f.partition}")
                os.makedirs(folder, exist_ok=True)
                os.symlink(f.path, os.path.join(folder, f"{i:06d}.parquet"))
            hidden = f"__files_{name}"
            partition: list[tuple[str, str | pa.DataType]] = [("_p", pa.int32())]
            ctx.register_listing_table(hidden, self.links, partition, ".parquet", self.file_schema)
            frames.append(ctx.table(hidden).select(*self._columns(col("_p"))))
        for f in self.files:
            if not f.whole:
                df = ctx.read_parquet(f.path, schema=self.file_schema).filter(_cut(f))
                frames.append(df.select(*self._columns(lit(f.partition))))
        if self.rest is not None:
            hidden = f"__streamed_{name}"
            ctx.register_dataset(hidden, self.rest)
            frames.append(ctx.table(hidden))
        out = frames[0]
        for other in frames[1:]:
            out = out.union(other)
        return out

    def _columns(self, partition: Expr) -> list[Expr]:
        exprs = []
        for field in self.schema:
            if field.name == "_partition":
                expr = partition.cast(field.type)
            elif self.physical[field.name] in self.file_schema.names:
                expr = col(self.physical[field.name]).cast(field.type)
            else:  # declared after every file was written
                expr = lit(None).cast(field.type)
            exprs.append(expr.alias(field.name))
        return exprs

    async def verify(self, scanned: set[str] | None) -> None:
        """Check every byte DataFusion may read of the files (native_check.py) when its scans
        read the file columns `scanned` (scanned_columns; None: all), in one worker: the
        checks hold the GIL for most of their short CRC calls, so a second one would not run
        beside the first, only take CPU from DataFusion."""
        stop = threading.Event()
        try:
            await run_blocking(check_files, [f.check(scanned) for f in self.files], stop)
        finally:
            stop.set()  # cancelled: the worker stops before its next file

    def close(self) -> None:
        if self.links is not None:
            shutil.rmtree(self.links, ignore_errors=True)
            self.links = None


def scanned_columns(plan: LogicalPlan) -> set[str] | None:
    """The columns the table scans of an optimized plan read (None: some scan reads all): their
    projections, and any column named in the filters pushed into them. A superset is safe (more
    is checked); DataFusion's Parquet reader decodes only the projected column chunks, the
    pushed filters prune row groups by footer statistics (and would read their columns, were
    filters evaluated in the scan)."""
    found: set[str] = set()
    pending = [plan]
    while pending:
        node = pending.pop()
        pending += node.inputs()
        scan = node.to_variant()
        if isinstance(scan, TableScan):
            projection = scan.projection()
            if not projection:
                return None
            found.update(name for _, name in projection)
            filters = " ".join(str(f) for f in scan.filters())
            found.update(re.findall(r"\w+", filters))
    return found


def native_ok(sql: str, explain: bool) -> bool:
    """Whether a query may read segment files natively (no LIMIT anywhere, not EXPLAIN)."""
    return not explain and _LIMIT.search(sql) is None


async def native_topic(segments: SegmentReader, dataset: TopicDataset) -> NativeTopic | None:
    """The topic as files DataFusion reads plus the stream of the rest, or None when nothing
    (or nothing worth it) can be read natively."""
    store = segments.store
    names = [n for n in dataset.schema.names if n != "_partition"]
    stream = dataset.stream
    physical = {n: physical_name(stream.segment_name(n)) for n in names}
    if not isinstance(store, LocalObjectStore) or not names:
        return None
    if sum(len(p.chunks) for p in stream.plans) <= _MIN_CHUNKS:
        return None  # a small read (a point lookup): the stream reads just its row groups
    for f in dataset.schema:
        if not _NAME.match(f.name) or pa.types.is_nested(f.type) or pa.types.is_dictionary(f.type):
            return None
    files: list[NativeFile] = []
    kept: list[PartitionPlan] = []
    for plan in stream.plans:
        if plan.partition in stream.views:  # Kafka transactions to hide: the stream filters them
            kept.append(plan)
            continue
        rest: list[SegmentChunk] = []
        by_ref: dict[SegmentRef, list[SegmentChunk]] = {}
        for chunk in plan.chunks:
            by_ref.setdefault(chunk.ref, []).append(chunk)
        for ref, chunks in by_ref.items():
            found = await _native_file(segments, store, plan, ref, chunks, list(physical.values()))
            if found is None:
                rest += chunks
            else:
                files.append(found)
        kept.append(replace(plan, chunks=tuple(rest)))
    if not files:
        return None
    left = TopicDataset(replace(stream, plans=kept), dataset.schema)
    has_rest = any(p.chunks or p.tail is not None for p in kept)
    return NativeTopic(dataset.schema, physical, _file_schema(files, physical), files, left if has_rest else None)


def _file_schema(files: list[NativeFile], physical: dict[str, str]) -> pa.Schema:
    """The file columns read, typed as the newest file holding each stores it (with `_offset`
    and `_timestamp`, which the cuts filter on; DataFusion reads only what a plan uses).
    Without the fields' metadata (the Parquet field ids): with it, DataFusion's scans took 10 %
    more CPU (10 M bids, the bench's TUMBLE: 0.72 vs 0.65 s), and nothing here reads it."""
    fields: dict[str, pa.Field[Any]] = {}
    wanted = {"_offset", "_timestamp", *physical.values()}
    for f in reversed(files):
        stored = f.footer.metadata.schema.to_arrow_schema()
        for name in wanted - set(fields):
            if name in stored.names:
                fields[name] = stored.field(name).remove_metadata()
        if len(fields) == len(wanted):
            break
    order = dict.fromkeys(["_offset", "_timestamp", *physical.values()])
    return pa.schema([fields[n] for n in order if n in fields])


async def _native_file(
    segments: SegmentReader,
    store: LocalObjectStore,
    plan: PartitionPlan,
    ref: SegmentRef,
    chunks: list[SegmentChunk],
    physical: Sequence[str],
) -> NativeFile | None:
    if any(getattr(c, "controls", ()) for c in chunks):  # Kafka transaction markers: dropped by the stream
        return None
    if any(len(c.columns) != len(plan.wanted) for c in chunks):  # written before a column was declared
        return None
    footer = await segments.footer(ref)
    if footer.layout != 2 or footer_crcs(footer) is None:
        return None
    groups = sorted({g for c in chunks for g in c.row_groups})
    bounds = plan.bounds
    rows = footer.row_groups
    # Offsets kept: the runs of row groups the plan chose, cut to the bounds.
    ranges: list[tuple[int, int]] = []
    for g in groups:
        lo, hi = max(rows[g].base_offset, bounds.start_offset), rows[g].end_offset
        if bounds.end_offset is not None:
            hi = min(hi, bounds.end_offset)
        if ranges and ranges[-1][1] == rows[g].base_offset:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    whole = ranges == [(footer.base_offset, footer.end_offset)]
    low, high = bounds.min_timestamp, bounds.max_timestamp
    cut_time = (low is not None and footer.min_timestamp < low) or (high is not None and footer.max_timestamp > high)
    read = [*physical, *(["_timestamp"] if cut_time else [])]
    return NativeFile(
        path=str(store.root.joinpath(*check_key(ref.object_key))),
        ref=ref,
        footer=footer,
        partition=plan.partition,
        offsets=None if whole else tuple(ranges),
        times=(low, high) if cut_time else (None, None),
        groups=tuple(groups),
        leaves=tuple((n, j) for n in read for j in footer_leaves(footer, n)),
        offset_leaves=() if whole else tuple(footer_leaves(footer, "_offset")),
    )


def _cut(f: NativeFile) -> Expr:
    condition: Expr | None = None
    for lo, hi in f.offsets or ():
        one = (col("_offset") >= lit(lo)) & (col("_offset") < lit(hi))
        condition = one if condition is None else condition | one
    low, high = f.times
    ms = col("_timestamp").cast(pa.int64())
    for bound in ([ms >= lit(low)] if low is not None else []) + ([ms <= lit(high)] if high is not None else []):
        condition = bound if condition is None else condition & bound
    assert condition is not None
    return condition


async def split_native(
    source: object, streams: dict[str, TopicDataset], sql: str, *, explain: bool
) -> tuple[dict[str, TopicDataset], dict[str, NativeTopic]]:
    """The topics of `streams` DataFusion may read natively, and the streams left. `source` is
    the engine's topic source: an agent's (AgentTopics) has the segment reader and its store."""
    segments = getattr(getattr(getattr(source, "manager", None), "reader", None), "segments", None)
    if not isinstance(segments, SegmentReader) or not native_ok(sql, explain):
        return streams, {}
    natives: dict[str, NativeTopic] = {}
    for name, dataset in streams.items():
        found = await native_topic(segments, dataset)
        if found is not None:
            natives[name] = found
    return {n: d for n, d in streams.items() if n not in natives}, natives
