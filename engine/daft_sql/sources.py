"""One topic as a Daft DataFrame: its committed segment files, pruned, read by Daft straight from
the object store, followed by the unflushed tail fetched through the SDK (the agents' front-end
contract), so the query sees every acknowledged record exactly once.

Order of reads (the same reasoning as storage/partition/view.py, from outside the agent): the
segment list of each partition is read from the metadata store first, and the tail is then
fetched from where that list ends. A segment committed in between holds records at or above that
end: the fetch returns them (from the segment or the leader's buffer), so nothing is missed or
read twice.

Pruning, where it is cheap: partitions from `_partition` predicates, whole segments by their
offset and record-time range (from the metadata rows), row groups within a kept segment by the
verified footer's offsets, record times and the event-time column's statistics (the footer is
read once per segment, which also tells its physical layout and its JSON decode errors). Daft
then reads only the projected columns of the kept row groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.parquet as pq

from streamhouse.client.acked_read import read_acknowledged
from streamhouse.client.client import Client
from streamhouse.daft_sql.layout import PhysicalColumns, physical_columns, sql_expressions
from streamhouse.sql.query.catalog import check_bad_values, to_sql_table, topic_schema
from streamhouse.sql.query.pruning import TopicBounds
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.partition.scan import ScanStats
from streamhouse.storage.records.control import footer_controls
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.storage.segment.footer import select_row_groups
from streamhouse.storage.segment.reader import SegmentReader
from streamhouse.storage.values.json_decode import decode_json_values, json_error_details, json_errors
from streamhouse.storage.values.schema import parse_value_schema

__all__ = ["SegmentFile", "TopicFiles", "list_files", "object_url", "read_tails", "topic_frame"]


@dataclass(frozen=True)
class SegmentFile:
    """One kept segment: where Daft reads it, which row groups, and how its columns map."""

    url: str
    partition: int
    columns: PhysicalColumns
    row_groups: tuple[int, ...]
    controls: tuple[int, ...] = ()  # Kafka transaction markers' offsets (storage/records/control.py)


@dataclass(frozen=True)
class TopicFiles:
    """What one query reads of one topic from the object store, and where each partition's tail starts."""

    info: TopicInfo
    files: tuple[SegmentFile, ...]
    tail_starts: tuple[tuple[int, int], ...]  # (partition, first offset not in a listed segment)
    segments_listed: int
    stats: dict[int, ScanStats] = field(default_factory=dict)  # JSON decode errors per partition


def object_url(store_url: str, key: str) -> str:
    """The URL Daft reads an object at: a local path for file:// stores, s3://bucket/prefix/key."""
    parsed = urlparse(store_url)
    if parsed.scheme in ("", "file"):
        root = url2pathname(parsed.path) if parsed.scheme else store_url
        return root.rstrip("/") + "/" + key
    return store_url.rstrip("/") + "/" + key


async def list_files(
    metadata: MetadataStore, reader: SegmentReader, store_url: str, info: TopicInfo, bounds: TopicBounds
) -> TopicFiles:
    partitions = [p for p in range(info.partitions) if bounds.partitions is None or p in bounds.partitions]
    logs = await asyncio.gather(*(metadata.list_log(info.name, p) for p in partitions))
    scan = bounds.scan
    kept: list[SegmentInfo] = []
    starts: list[tuple[int, int]] = []
    listed = 0
    for p, log in zip(partitions, logs, strict=True):
        listed += len(log.segments)
        starts.append((p, log.segments[-1].end_offset if log.segments else log.log_start))
        kept += [s for s in log.segments if _may_match(s, bounds)]
    footers = await asyncio.gather(*(reader.footer(s.ref) for s in kept))
    schema = topic_schema(info)
    files: list[SegmentFile] = []
    stats: dict[int, ScanStats] = {}
    for segment, footer in zip(kept, footers, strict=True):
        groups = select_row_groups(footer, scan.start_offset, scan.end_offset, scan.min_timestamp, scan.max_timestamp)
        # The Parquet file's own column names (footer.schema is the records' logical schema).
        physical = footer.metadata.schema.to_arrow_schema()
        columns = physical_columns(physical, schema, segment.object_key)
        groups = _event_time_groups(footer.metadata, groups, columns, bounds)
        if not groups:
            continue
        count, offsets = json_errors(footer.key_values)
        if count:
            part = stats.setdefault(segment.partition, ScanStats())
            part.json_errors += count
            part.json_error_offsets += offsets[:10]
            part.json_error_details += [b.describe() for b in json_error_details(footer.key_values)][:10]
        controls = tuple(footer_controls(footer.key_values).tolist())
        url = object_url(store_url, segment.object_key)
        files.append(SegmentFile(url, segment.partition, columns, tuple(groups), controls))
    return TopicFiles(info, tuple(files), tuple(starts), listed, stats)


def _event_time_groups(
    metadata: pq.FileMetaData, groups: list[int], columns: PhysicalColumns, bounds: TopicBounds
) -> list[int]:
    """The row groups whose event-time statistics may meet the query's event-time range (the
    topic's WATERMARK column; TIMESTAMP(3) is stored as int64 ms in both layouts)."""
    scan = bounds.scan
    if scan.event_column is None or (scan.event_min is None and scan.event_max is None):
        return groups
    name = columns.physical(scan.event_column) if scan.event_column in dict(columns.source) else None
    if name is None:
        return groups
    low, high = scan.event_min if scan.event_min is not None else -(2**63), scan.event_max
    kept = []
    for index in groups:
        group = metadata.row_group(index)
        # Parquet leaf columns, not Arrow fields: nested columns take several leaves.
        leaf = next((j for j in range(group.num_columns) if group.column(j).path_in_schema == name), None)
        stats = group.column(leaf).statistics if leaf is not None else None
        if stats is None or not stats.has_min_max:
            kept.append(index)
            continue
        least, most = int(cast(int, stats.min_raw)), int(cast(int, stats.max_raw))
        if most >= low and (high is None or least <= high):
            kept.append(index)
    return kept


def _may_match(segment: SegmentInfo, bounds: TopicBounds) -> bool:
    scan = bounds.scan
    if segment.end_offset <= scan.start_offset or (
        scan.end_offset is not None and segment.base_offset >= scan.end_offset
    ):
        return False
    if scan.min_timestamp is not None and segment.max_timestamp < scan.min_timestamp:
        return False
    return not (scan.max_timestamp is not None and segment.min_timestamp > scan.max_timestamp)


def read_tails(client: Client, topic: TopicFiles, end_offset: int | None) -> pa.Table:
    """The records after the listed segments, every partition, as the topic's SQL table
    (declared columns decoded from JSON as the agent's scan does). Fetched batch by batch up
    to the end each answer reports."""
    info = topic.info
    pieces: list[pa.Table] = []
    for partition, start in topic.tail_starts:
        records = _fetch(client, info.name, partition, start, end_offset)
        if records.num_rows:
            pieces.append(_as_sql(records, partition, topic))
    if not pieces:
        return topic_schema(info).empty_table()
    return pa.concat_tables(pieces)


def _fetch(client: Client, topic: str, partition: int, start: int, stop: int | None) -> pa.Table:
    batches = list(read_acknowledged(client.transport, topic, partition, start, stop=stop))
    return pa.concat_tables(batches).select(RECORD_SCHEMA.names) if batches else RECORD_SCHEMA.empty_table()


def _as_sql(records: pa.Table, partition: int, topic: TopicFiles) -> pa.Table:
    declared = parse_value_schema(topic.info.value_schema)
    table = records.drop_columns(["headers"])
    if declared is not None:
        decoded = decode_json_values(table.column("value"), declared)
        for name, column in zip(declared.segment_schema().names, decoded.table.columns, strict=True):
            table = table.append_column(name, column)
        if len(decoded.bad_rows):
            bad = [int(o or 0) for o in table.column("offset").take(decoded.bad_rows).to_pylist()[:10]]
            part = topic.stats.setdefault(partition, ScanStats())
            part.json_errors += len(decoded.bad_rows)
            part.json_error_offsets += bad
    return to_sql_table(table, partition, topic.info)


def check_values(topic: TopicFiles, columns: Sequence[str]) -> None:
    """SqlError when rows read hold values that did not fit the declared columns the query
    reads (the agent's rule, sql/query/catalog.py check_bad_values)."""
    for partition, stats in sorted(topic.stats.items()):
        check_bad_values(topic.info, partition, stats, columns)


def topic_frame(topic: TopicFiles, tail: pa.Table, io_config: Any) -> Any:
    """The topic as one lazy daft.DataFrame: one Parquet scan per (partition, file layout), each
    projected onto the SQL columns, then the tail."""
    import daft

    schema = topic_schema(topic.info)
    groups: dict[tuple[int, PhysicalColumns], list[SegmentFile]] = {}
    for file in topic.files:
        groups.setdefault((file.partition, file.columns), []).append(file)
    frames = []
    for (partition, columns), files in groups.items():
        scan = daft.read_parquet(
            [f.url for f in files], row_groups=[list(f.row_groups) for f in files], io_config=io_config
        )
        frame = scan.select(*sql_expressions(columns, schema, partition, schema.names))
        controls = [o for f in files for o in f.controls]
        if controls:  # Kafka transaction markers are no rows of the topic
            frame = frame.where(~daft.col("_offset").is_in(controls))
        frames.append(frame)
    frames.append(daft.from_arrow(tail.cast(schema)))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.concat(other)
    return frame
