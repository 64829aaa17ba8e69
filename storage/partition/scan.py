"""Scan a partition for SQL and jobs (docs/DESIGN.md §7): on the partition view every reader shares
(view.py: committed segments, then the leader's unflushed buffer, the race with a roll handled
there), prune segments and row groups by offset, record time and the event-time column before
anything is decoded, read only the wanted columns, and add the buffered records with their
declared columns decoded from JSON on the spot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.model import SegmentRef, TopicInfo
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.view import PartitionView, partition_view
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.control import drop_offsets, footer_controls, without_control
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.storage.segment.decode import with_null_columns
from streamhouse.storage.segment.footer import RowGroupInfo, SegmentFooter, column_min_max, select_row_groups
from streamhouse.storage.values.json_decode import bad_values, decode_json_values, json_error_details, json_errors
from streamhouse.storage.values.schema import ValueSchema, parse_value_schema


@dataclass(frozen=True)
class ScanBounds:
    """What a query's predicates allow; every bound is conservative (never drops a match)."""

    start_offset: int = 0
    end_offset: int | None = None  # exclusive
    min_timestamp: int | None = None  # record time, ms, inclusive
    max_timestamp: int | None = None
    event_column: str | None = None  # a declared TIMESTAMP(3) column
    event_min: int | None = None  # ms, inclusive
    event_max: int | None = None

    @property
    def empty(self) -> bool:
        return (self.end_offset is not None and self.end_offset <= self.start_offset) or (
            self.min_timestamp is not None
            and self.max_timestamp is not None
            and self.min_timestamp > self.max_timestamp
        )


@dataclass
class ScanStats:
    segments_total: int = 0
    segments_kept: int = 0
    row_groups_total: int = 0
    row_groups_kept: int = 0
    buffered_rows: int = 0
    json_errors: int = 0
    json_error_offsets: list[int] = field(default_factory=list)
    # The first bad values explained ("offset 41, column 'amt': scale: …"), for the query error.
    json_error_details: list[str] = field(default_factory=list)
    # Where the partition's log began (retention, docs/DESIGN.md §4): a scan starting below it
    # starts there instead, and a job's source tells a reset from an empty read by it.
    log_start: int = 0
    # The leader's producer batches in the pinned tail (its offsets known only here until a
    # segment commit places them): a read_committed view hides an aborted one by them
    # (storage/metadata/txn_reads.py Stable.with_tail).
    tail_producers: tuple[ProducerBatch, ...] = ()

    def add(self, other: ScanStats) -> None:
        self.segments_total += other.segments_total
        self.segments_kept += other.segments_kept
        self.row_groups_total += other.row_groups_total
        self.row_groups_kept += other.row_groups_kept
        self.buffered_rows += other.buffered_rows
        self.json_errors += other.json_errors
        self.json_error_offsets += other.json_error_offsets[: max(0, 10 - len(self.json_error_offsets))]
        self.json_error_details += other.json_error_details[: max(0, 10 - len(self.json_error_details))]


@dataclass(frozen=True)
class SegmentChunk:
    """Row groups of one committed segment read together: the unit a streaming scan decodes
    (and holds) at a time. `est_bytes`: their uncompressed size by the footer (all columns)."""

    ref: SegmentRef
    row_groups: tuple[int, ...]
    columns: tuple[str, ...]  # the wanted columns this segment holds (later ones read as nulls)
    est_bytes: int
    # Its rows by the (verified) footer when all of them are within the bounds, else None: a
    # count(*) of such a chunk needs no read, as a Parquet reader counts from its metadata.
    rows: int | None = None
    # Offsets of Kafka transaction markers among these row groups (storage/records/control.py,
    # from the footer): dropped by read_chunk, never shown to SQL or jobs.
    controls: tuple[int, ...] = ()


@dataclass(frozen=True)
class PartitionPlan:
    """What a scan of one partition will read, decided before any row group is decoded:
    committed segment chunks in offset order, then the leader's buffered tail (already in
    memory: pinned from the writer). `covered`: the offsets it reads, [start, end);
    `unflushed`: whether records not yet in a segment are included (this agent leads)."""

    topic: TopicInfo
    partition: int
    bounds: ScanBounds
    wanted: tuple[str, ...]  # segment column names, "offset" first
    schema: pa.Schema  # of `wanted`
    chunks: tuple[SegmentChunk, ...]
    tail: pa.Table | None
    stats: ScanStats
    covered: tuple[int, int]
    unflushed: bool


async def plan_partition(
    reader: PartitionReader,
    topic: TopicInfo,
    partition: int,
    bounds: ScanBounds,
    columns: list[str],
    writer: PartitionWriter | None = None,
    *,
    chunk_bytes: int = 64 << 20,
) -> PartitionPlan:
    """Prune segments and row groups (footers only) and pin the leader's tail. The first
    chunk is one row group (a LIMIT reads no more); the others hold row groups of one
    segment up to `chunk_bytes` uncompressed, so a scan holds about that much at a time."""
    stats = ScanStats()
    schema = parse_value_schema(topic.value_schema)
    wanted = list(dict.fromkeys(["offset", *columns]))  # offsets order the pieces
    empty = _empty(wanted, schema)
    # A writer of an earlier topic of the same name (deleted, re-created) is not this one's.
    if writer is not None and writer.topic.topic_id != topic.topic_id:
        writer = None
    if bounds.empty:
        nothing = (bounds.start_offset, bounds.start_offset)
        return PartitionPlan(topic, partition, bounds, tuple(wanted), empty.schema, (), None, stats, nothing, True)
    stop = bounds.end_offset
    # Fresh: a query sees every segment committed before it started, whoever committed it.
    # Below the log start the scan starts at it: the records there are gone (retention).
    view = await partition_view(
        reader.lists, topic.name, partition, bounds.start_offset, stop, writer, fresh=True, below_start="clamp"
    )
    stats.segments_total = view.segments_listed
    stats.log_start = view.log_start
    chunks: list[SegmentChunk] = []
    for seg in view.segments:
        if (bounds.min_timestamp is not None and seg.max_timestamp < bounds.min_timestamp) or (
            bounds.max_timestamp is not None and seg.min_timestamp > bounds.max_timestamp
        ):
            continue
        footer = await reader.segments.footer(seg.ref)
        stats.row_groups_total += len(footer.row_groups)
        chosen = select_row_groups(footer, bounds.start_offset, stop, bounds.min_timestamp, bounds.max_timestamp)
        chosen = [i for i in chosen if _event_time_may_match(footer, i, bounds)]
        if not chosen:
            continue
        stats.segments_kept += 1
        stats.row_groups_kept += len(chosen)
        _count_bad_values(footer, bounds, stats)
        # A declared column added by schema evolution after this segment was written is not
        # in it: read what it has, the rest as nulls of the declared type.
        present = tuple(c for c in wanted if c in footer.schema.names)
        controls = footer_controls(footer.key_values)
        chunks += _chunks(seg.ref, footer, chosen, present, chunk_bytes, bounds, first=not chunks, controls=controls)
    tail = None
    if writer is not None and view.batches:
        tail = _buffered(writer, view, bounds, wanted, schema, stats)
        stats.tail_producers = view.producers
    end = view.buffer_range[1] if writer is not None else view.committed_end
    if stop is not None:
        end = min(end, stop)
    covered = (view.start, max(view.start, end))
    return PartitionPlan(
        topic, partition, bounds, tuple(wanted), empty.schema, tuple(chunks), tail, stats, covered, writer is not None
    )


async def read_chunk(
    reader: PartitionReader, plan: PartitionPlan, chunk: SegmentChunk, columns: list[str] | None = None
) -> pa.Table:
    """One chunk's rows within the plan's bounds, as `columns` (segment names; default: all
    the plan wants), through the verified segment read (storage/segment/reader.py)."""
    # Offsets only when nothing else is wanted: a table of no columns would have no rows.
    wanted = list(plan.wanted) if columns is None else list(dict.fromkeys(columns or ["offset"]))
    read = list(dict.fromkeys(["offset", *wanted])) if chunk.controls else wanted
    bounds = plan.bounds
    piece = await reader.segments.read(
        chunk.ref,
        start_offset=bounds.start_offset,
        end_offset=bounds.end_offset,
        min_timestamp=bounds.min_timestamp,
        max_timestamp=bounds.max_timestamp,
        columns=[c for c in read if c in chunk.columns],
        row_groups=chunk.row_groups,
    )
    if chunk.controls:
        piece = drop_offsets(piece, np.array(chunk.controls, dtype=np.int64)).select(
            [c for c in wanted if c in chunk.columns]
        )
    return with_null_columns(piece, pa.schema([plan.schema.field(c) for c in wanted]))


async def scan_partition(
    reader: PartitionReader,
    topic: TopicInfo,
    partition: int,
    bounds: ScanBounds,
    columns: list[str],
    writer: PartitionWriter | None = None,
) -> tuple[pa.Table, ScanStats]:
    """Rows of one partition within `bounds` (offset and record-time exactly, event time by
    row group only: SQL filters the rest), with `columns` named as the segment names them
    (record columns, then "v.<declared>"), all in one table (jobs; SQL streams the plan)."""
    plan = await plan_partition(reader, topic, partition, bounds, columns, writer)
    pieces = [await read_chunk(reader, plan, chunk) for chunk in plan.chunks]
    if plan.tail is not None:
        pieces.append(plan.tail)
    if not pieces:
        return plan.schema.empty_table(), plan.stats
    return pa.concat_tables([p.select(list(plan.wanted)) for p in pieces]), plan.stats


def _count_bad_values(footer: SegmentFooter, bounds: ScanBounds, stats: ScanStats) -> None:
    stop = bounds.end_offset
    count, offsets = json_errors(footer.key_values)
    details = json_error_details(footer.key_values)
    if count and count == len(offsets):
        # Every bad offset is known: only those within the scanned offsets count, so a
        # query bounded away from them is not refused for them.
        inside = [o for o in offsets if o >= bounds.start_offset and (stop is None or o < stop)]
        count, offsets = len(inside), inside
        details = [b for b in details if b.offset in inside]
    stats.json_errors += count
    stats.json_error_offsets += offsets
    stats.json_error_details += [b.describe() for b in details]


def _chunks(
    ref: SegmentRef,
    footer: SegmentFooter,
    chosen: list[int],
    present: tuple[str, ...],
    limit: int,
    bounds: ScanBounds,
    *,
    first: bool,
    controls: np.ndarray[Any, Any] | None = None,
) -> list[SegmentChunk]:
    sizes = footer.row_group_bytes
    out: list[SegmentChunk] = []
    group: list[int] = []
    size = 0  # of the row groups in `group`

    def close() -> None:
        inside = all(_wholly_inside(footer.row_groups[j], bounds) for j in group)
        low, high = footer.row_groups[group[0]].first_offset, footer.row_groups[group[-1]].last_offset
        mine = () if controls is None else tuple(controls[(controls >= low) & (controls <= high)].tolist())
        rows = sum(footer.row_groups[j].num_rows for j in group) if inside and not mine else None
        out.append(SegmentChunk(ref, tuple(group), present, size, rows, mine))

    for i in chosen:
        if group and (size + sizes[i] > limit or (first and not out)):
            close()
            group, size = [], 0
        group.append(i)
        size += sizes[i]
    if group:
        close()
    return out


def _wholly_inside(rg: RowGroupInfo, bounds: ScanBounds) -> bool:
    stop, low, high = bounds.end_offset, bounds.min_timestamp, bounds.max_timestamp
    return (
        rg.first_offset >= bounds.start_offset
        and (stop is None or rg.last_offset < stop)
        and (low is None or (rg.min_timestamp is not None and rg.min_timestamp >= low))
        and (high is None or (rg.max_timestamp is not None and rg.max_timestamp <= high))
    )


def _event_time_may_match(footer: SegmentFooter, index: int, bounds: ScanBounds) -> bool:
    if bounds.event_column is None or (bounds.event_min is None and bounds.event_max is None):
        return True
    # The footer's statistics by segment column name, in either segment layout.
    found = column_min_max(footer, index, "v." + bounds.event_column)
    if found is None:
        return True
    low, high = found  # TIMESTAMP(MILLIS): int64 ms
    return not (
        (bounds.event_min is not None and high < bounds.event_min)
        or (bounds.event_max is not None and low > bounds.event_max)
    )


def _buffered(
    writer: PartitionWriter,
    view: PartitionView,
    bounds: ScanBounds,
    wanted: list[str],
    schema: ValueSchema | None,
    stats: ScanStats,
) -> pa.Table | None:
    """The leader's unflushed rows in bounds, from the batches the view pinned. Declared
    columns are decoded once per buffered batch and kept beside it until it is flushed."""
    offsets = view.buffer_range
    start, end = offsets
    if end <= start:
        return None
    declared = schema is not None and any(c.startswith("v.") for c in wanted)
    pieces: list[pa.Table] = []
    for base, batch in view.batches:
        table = pa.Table.from_batches([batch], schema=RECORD_SCHEMA)
        if declared and schema is not None:
            table = _with_decoded(writer, base, table, schema, stats, offsets, view.derived.get(base))
        lo = max(start, base) - base
        hi = min(end, base + batch.num_rows) - base
        if hi > lo:  # Kafka transaction markers are not records to SQL or jobs
            pieces.append(without_control(table.slice(lo, hi - lo)).select(wanted))
    if not pieces:
        return None
    table = pa.concat_tables(pieces)
    if bounds.min_timestamp is not None or bounds.max_timestamp is not None:
        ts = table.column("timestamp")
        low = bounds.min_timestamp if bounds.min_timestamp is not None else -(2**63)
        high = bounds.max_timestamp if bounds.max_timestamp is not None else 2**63 - 1
        keep = pc.and_(pc.greater_equal(ts, pa.scalar(low, pa.int64())), pc.less_equal(ts, pa.scalar(high, pa.int64())))
        table = table.filter(cast(Any, keep))
    stats.buffered_rows += table.num_rows
    return table


def _with_decoded(
    writer: PartitionWriter,
    base: int,
    table: pa.Table,
    schema: ValueSchema,
    stats: ScanStats,
    wanted_range: tuple[int, int],
    pinned: pa.Table | None = None,
) -> pa.Table:
    decoded = pinned if pinned is not None else writer.derived.get(base)
    if decoded is None:
        result = decode_json_values(table.column("value"), schema)
        columns = dict(zip(schema.segment_schema().names, result.table.columns, strict=True))
        bad = cast(list[int], table.column("offset").take(result.bad_rows).to_pylist())
        explained = [
            [b.offset, b.describe()]
            for b in bad_values(
                table.column("value").combine_chunks(), table.column("offset").combine_chunks(), result.bad_rows, schema
            )
        ]
        # The bad offsets ride along as metadata, so a cached batch still reports them.
        decoded = pa.Table.from_arrays(list(columns.values()), names=list(columns))
        decoded = decoded.replace_schema_metadata(
            {"bad_offsets": ",".join(map(str, bad)), "bad_details": json.dumps(explained)}
        )
        if base >= writer.buffer_start:  # a batch flushed meanwhile must not be cached forever
            writer.derived[base] = decoded
    raw = (decoded.schema.metadata or {}).get(b"bad_offsets", b"")
    if raw:
        offsets = [int(o) for o in raw.split(b",") if wanted_range[0] <= int(o) < wanted_range[1]]
        stats.json_errors += len(offsets)
        stats.json_error_offsets += offsets[:10]
        details = json.loads((decoded.schema.metadata or {}).get(b"bad_details", b"[]"))
        stats.json_error_details += [text for o, text in details if wanted_range[0] <= o < wanted_range[1]]
    for name, column in zip(decoded.column_names, decoded.columns, strict=True):
        table = table.append_column(name, column)
    # Decoded before schema evolution grew the columns: those rows lack the new ones (nulls),
    # and a ROW since widened by nested fields is widened (with_null_columns, like segments).
    conformed = with_null_columns(table.select(decoded.column_names), schema.segment_schema())
    for name, column in zip(conformed.column_names, conformed.columns, strict=True):
        if name in decoded.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(conformed.schema.field(name), column)
    return table


def _empty(wanted: list[str], schema: ValueSchema | None) -> pa.Table:
    fields: dict[str, pa.Field[Any]] = {f.name: f for f in RECORD_SCHEMA}
    if schema is not None:
        fields.update({f.name: f for f in schema.segment_schema()})
    return pa.schema([fields[c] for c in wanted]).empty_table()
