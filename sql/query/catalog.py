"""Topics as tables (docs/DESIGN.md §7): the SQL schema of a topic, the source the engine reads topics
through, and the scan of a topic: its partitions planned (pruned by footers, the leaders' tails
pinned) and handed to DataFusion as a stream that decodes as it is pulled (sql/query/stream.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.pruning import TopicBounds
from streamhouse.sql.query.stream import TopicDataset, TopicStream
from streamhouse.sql.query.unsliced import unsliced
from streamhouse.storage.metadata.log_start import PartitionStats
from streamhouse.storage.metadata.txn_reads import CommittedReads
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.partition.scan import PartitionPlan, ScanBounds, ScanStats, SegmentChunk
from streamhouse.storage.values.check import ignores_errors
from streamhouse.storage.values.schema import ValueSchema, parse_value_schema
from streamhouse.storage.values.types import TIMESTAMP

SYSTEM_FIELDS = (
    pa.field("_partition", pa.int32(), nullable=False),
    pa.field("_offset", pa.int64(), nullable=False),
    pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("_key", pa.binary()),
)
VALUE_FIELD = pa.field("_value", pa.binary())
IGNORE_ERRORS = "json.ignore-errors"
# SQL column → the segment column it is read from (declared columns: "v." + name).
_SEGMENT_COLUMN = {"_offset": "offset", "_timestamp": "timestamp", "_key": "key", "_value": "value"}


class TopicSource(Protocol):
    """Where the SQL engine finds topics and their records: an agent, or the embedded engine."""

    async def list_topics(self) -> list[TopicInfo]: ...

    async def get_topic(self, name: str) -> TopicInfo: ...

    async def create_topic(
        self, name: str, partitions: int, config: dict[str, str], value_schema: str | None
    ) -> TopicInfo: ...

    async def delete_topic(self, name: str) -> None: ...

    async def alter_topic(
        self, name: str, set_config: Mapping[str, str], reset: Sequence[str], add_partitions: int | None
    ) -> TopicInfo: ...

    async def end_offset(self, topic: str, partition: int) -> int: ...

    async def partition_stats(self, topic: str) -> list[PartitionStats]:
        """Per partition: log start, durable end, segments and bytes, last compaction
        (DESCRIBE TOPIC). TopicNotFoundError."""
        ...

    async def scan(
        self, topic: TopicInfo, partition: int, bounds: ScanBounds, columns: list[str], *, tail: bool = False
    ) -> tuple[pa.Table, ScanStats]:
        """Rows of one partition within `bounds`, `columns` named as the segment names them:
        committed segments, plus the leader's unflushed buffer when `tail` (ad-hoc SQL; jobs
        read committed segments only)."""
        ...

    async def plan_scan(
        self, topic: TopicInfo, partition: int, bounds: ScanBounds, columns: list[str], chunk_bytes: int
    ) -> PartitionPlan:
        """What a scan of one partition reads (storage/partition/scan.py plan_partition)."""
        ...

    async def read_chunk(self, plan: PartitionPlan, chunk: SegmentChunk, columns: list[str]) -> pa.Table:
        """One chunk of a plan, `columns` named as the segment names them."""
        ...


def topic_schema(info: TopicInfo) -> pa.Schema:
    """The table a topic is: system columns, then its declared columns or `_value`."""
    declared = parse_value_schema(info.value_schema)
    fields: list[pa.Field[Any]] = list(SYSTEM_FIELDS)
    fields += list(declared.arrow_schema()) if declared is not None else [VALUE_FIELD]
    return pa.schema(fields)


@dataclass
class TopicScan:
    """One topic read for one query: what pruning kept, and the stream DataFusion pulls."""

    info: TopicInfo
    dataset: TopicDataset
    partitions_total: int
    partitions_kept: int
    stats: ScanStats = field(default_factory=ScanStats)

    @property
    def stream(self) -> TopicStream:
        return self.dataset.stream

    def coverage(self) -> list[dict[str, Any]]:
        """Per partition read: the offsets [start, end) the query saw, and whether records not
        yet in a segment were among them (only on the partition's leader). Read committed, the
        end is the last stable offset where an open transaction holds the partition."""

        def end(plan: PartitionPlan) -> int:
            view = self.stream.views.get(plan.partition)
            return plan.covered[1] if view is None else max(plan.covered[0], view.stable_end(plan.covered[1]))

        return [
            {"partition": p.partition, "start": p.covered[0], "end": end(p), "unflushed_included": p.unflushed}
            for p in self.stream.plans
        ]


async def scan_topic(
    source: TopicSource,
    info: TopicInfo,
    bounds: TopicBounds,
    columns: Iterable[str] | None,
    chunk_bytes: int,
    committed: CommittedReads | None = None,
) -> TopicScan:
    """Plan a topic's partitions concurrently; `columns` are the SQL columns the query may use
    (None: all), always in the topic's schema order. Nothing is decoded yet, but bad values in
    what would be read are refused now (check_bad_values). With `committed`, the rows are read
    committed (storage/metadata/txn_reads.py): none at or past a partition's last stable offset,
    none of an aborted Kafka transaction."""
    schema = topic_schema(info)
    names = schema.names if columns is None else [n for n in schema.names if n in set(columns)]
    declared = parse_value_schema(info.value_schema)
    segment_columns = [_segment_name(n, declared) for n in names if n != "_partition"]
    wanted = [p for p in range(info.partitions) if bounds.partitions is None or p in bounds.partitions]
    plans = await asyncio.gather(
        *(source.plan_scan(info, p, bounds.scan, segment_columns, chunk_bytes) for p in wanted)
    )
    stats = ScanStats()
    for plan in plans:
        check_bad_values(info, plan.partition, plan.stats, names)
        stats.add(plan.stats)

    def to_sql(table: pa.Table, partition: int, chosen: Sequence[str]) -> pa.Table:
        return _to_sql(table, partition, chosen, declared, schema)

    stream = TopicStream(
        list(plans), source.read_chunk, to_sql, lambda n: _segment_name(n, declared), asyncio.get_running_loop()
    )
    if committed is not None:
        found = await asyncio.gather(
            *(committed.stable(info.name, p.partition, p.covered[0], fresh=True) for p in plans)
        )
        held = [v.with_tail(p.stats.tail_producers) for p, v in zip(plans, found, strict=True)]
        stream.views = {p.partition: v for p, v in zip(plans, held, strict=True) if not v.shows_all}
    dataset = TopicDataset(stream, pa.schema([schema.field(n) for n in names]))
    return TopicScan(info, dataset, info.partitions, len(wanted), stats)


async def split_small(
    scans: Mapping[str, TopicScan], chunk_bytes: int
) -> tuple[dict[str, pa.Table], dict[str, TopicDataset]]:
    """Topics that fit in one read chunk read now, whole (DataFusion then knows their sizes:
    a join builds on the smaller side), and the others as the streams DataFusion pulls."""
    tables: dict[str, pa.Table] = {}
    streams: dict[str, TopicDataset] = {}
    for name, scan in scans.items():
        if scan.stream.estimated_bytes <= chunk_bytes:
            tables[name] = await scan.stream.read_all(scan.dataset.schema.names, scan.dataset.schema)
        else:
            streams[name] = scan.dataset
    return tables, streams


def check_bad_values(info: TopicInfo, partition: int, stats: ScanStats, columns: Iterable[str]) -> None:
    """SqlError if the scanned rows hold values that did not fit the declared columns and the
    query reads a declared column: those rows would read as nulls. Queries of system columns
    only (count(*), _offset, _key, _value) are not affected; nor are topics that set
    json.ignore-errors, read from `info` as it is now (a setting changed after the rows were
    written applies)."""
    if not stats.json_errors or ignores_errors(info):
        return
    declared = [c for c in columns if not c.startswith("_")]
    if not declared:
        return
    if stats.json_error_details:
        first = stats.json_error_details[0]
    else:  # a segment written before bad values were explained in its footer
        offset = stats.json_error_offsets[0] if stats.json_error_offsets else "?"
        first = f"offset {offset}: the value does not match the declared columns"
    raise SqlError(
        f"topic {info.name!r}, partition {partition}, {first} ({stats.json_errors} such rows in this partition); "
        f"this query reads the declared column(s) {', '.join(declared)}. Fix the producer, query only system "
        f"columns, or set '{IGNORE_ERRORS}' = 'true' on the topic to read such rows as nulls",
        name=info.name,
    )


def _segment_name(column: str, declared: ValueSchema | None) -> str:
    if column in _SEGMENT_COLUMN:
        return _SEGMENT_COLUMN[column]
    assert declared is not None, f"{column} is declared only on topics with columns"
    return "v." + column


def _to_sql(
    table: pa.Table, partition: int, names: Sequence[str], declared: ValueSchema | None, schema: pa.Schema
) -> pa.Table:
    arrays: list[Any] = []
    for name in names:
        target = schema.field(name)
        if name == "_partition":
            arrays.append(pa.repeat(pa.scalar(partition, pa.int32()), table.num_rows))
            continue
        column = table.column(_segment_name(name, declared))
        if name == "_timestamp":
            column = column.cast(TIMESTAMP).cast(target.type)  # epoch ms, zero-copy
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema([schema.field(n) for n in names]))


def segment_columns(info: TopicInfo) -> list[str]:
    """Every column of a topic as the segment names it (what a scan must read for `SELECT *`)."""
    declared = parse_value_schema(info.value_schema)
    return [_segment_name(n, declared) for n in topic_schema(info).names if n != "_partition"]


def to_sql_table(table: pa.Table, partition: int, info: TopicInfo) -> pa.Table:
    """Scanned rows of one partition (segment column names) as the topic's SQL table."""
    schema = topic_schema(info)
    return _to_sql(table, partition, schema.names, parse_value_schema(info.value_schema), schema)


# DataFusion splits work by input partition: two per core of this machine class.
INPUT_PARTITIONS = 4


def partitioned(table: pa.Table) -> list[list[pa.RecordBatch]]:
    """A table as DataFusion input partitions (so a query over it runs on several cores)."""
    batches = table.to_batches(max_chunksize=max(1, -(-table.num_rows // INPUT_PARTITIONS)))
    if not batches:
        return [[pa.RecordBatch.from_pylist([], schema=table.schema)]]
    batches = [unsliced(b) for b in batches]
    return [batches[i::INPUT_PARTITIONS] for i in range(min(INPUT_PARTITIONS, len(batches)))]
