"""A topic as a streaming DataFusion source (docs/DESIGN.md §7): what a query reads is planned
first (sql/query/catalog.py: partitions, segments and row groups pruned by footer alone), then
decoded chunk by chunk only as DataFusion pulls batches, so a query holds a few chunks of a
topic at a time, never the whole of it.

DataFusion's Python API takes a pyarrow Dataset as a table (`register_dataset`): it asks the
dataset for fragments, and each fragment's scanner for record batches, with the columns the
plan needs (projection) and the filters it could translate (which it then leaves to the source:
they are applied here exactly, per batch). TopicDataset is such a dataset with one fragment per
topic; its batches come from a generator that DataFusion drives on its own threads, and each
chunk is read on the agent's event loop (segments go through the verified segment reader,
storage/partition/scan.py read_chunk), one chunk at first (a LIMIT satisfied by it reads no
more), then with reads kept in flight ahead of the consumer. One fragment, not one per
partition: DataFusion then spreads the batches over its cores behind a round-robin exchange,
which is what keeps a cancelled join stoppable (sql/query/run.py, _source_batches)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from streamhouse.storage.metadata.txn_reads import Stable
from streamhouse.storage.partition.scan import PartitionPlan, SegmentChunk

# Reads kept in flight once the consumer asked for a second chunk (two cores: two decodes).
READ_AHEAD = 2
_POLL_S = 1.0  # how often a waiting DataFusion thread checks that the agent's loop still runs

# (plan, chunk, segment columns) -> the chunk's rows as the segment names them
ChunkReader = Callable[[PartitionPlan, SegmentChunk, list[str]], Any]
# (segment rows, partition, SQL names) -> the rows as the topic's SQL table
ToSql = Callable[[pa.Table, int, Sequence[str]], pa.Table]


@dataclass
class StreamStats:
    """What the scans of one topic decoded (a scan may run more than once: a self-join)."""

    chunks_read: int = 0
    row_groups_read: int = 0
    rows_read: int = 0


@dataclass
class TopicStream:
    """The plans of one topic's partitions and how to turn them into SQL batches."""

    plans: list[PartitionPlan]
    read_chunk: ChunkReader
    to_sql: ToSql
    segment_name: Callable[[str], str]
    loop: asyncio.AbstractEventLoop
    stats: StreamStats = field(default_factory=StreamStats)
    error: BaseException | None = None  # the first read error, raised as it is by run_query
    # Read committed (storage/metadata/txn_reads.py): per partition with Kafka transactions to
    # hide, its last stable offset and aborted ranges; rows past the one or in the others are
    # dropped as chunks are read. Partitions not here are shown whole.
    views: dict[int, Stable] = field(default_factory=dict)

    @property
    def tail_bytes(self) -> int:
        """The leaders' buffered rows the plans pinned (already in memory)."""
        return sum(p.tail.nbytes for p in self.plans if p.tail is not None)

    @property
    def estimated_bytes(self) -> int:
        """What reading all of it would hold: the chunks by their footers, plus the tails."""
        return sum(c.est_bytes for p in self.plans for c in p.chunks) + self.tail_bytes

    async def read_all(self, names: Sequence[str], schema: pa.Schema) -> pa.Table:
        """Every chunk read now, on the loop, as one table of `names` (a small topic)."""
        pieces = [await self._read(plan, chunk, names) for plan, chunk in self._work()]
        return pa.concat_tables(pieces) if pieces else schema.empty_table()

    async def count_rows(self) -> int:
        """The rows a scan of it reads (EXPLAIN): footer counts where whole row groups are
        inside the bounds, else their offsets read."""
        total = 0
        for plan, chunk in self._work():
            if chunk is None:
                total += plan.tail.num_rows if plan.tail is not None else 0
            else:
                total += chunk.rows if chunk.rows is not None else (await self.read_chunk(plan, chunk, [])).num_rows
        return total

    def _work(self) -> list[tuple[PartitionPlan, SegmentChunk | None]]:
        work: list[tuple[PartitionPlan, SegmentChunk | None]] = []
        for plan in self.plans:
            work += [(plan, chunk) for chunk in plan.chunks]
            if plan.tail is not None:
                work.append((plan, None))  # the tail: in memory already
        return work

    def tables(self, names: Sequence[str]) -> Iterator[pa.Table]:
        """The topic's rows as SQL tables of `names`, chunk by chunk. Runs on a DataFusion
        thread: every read is handed to the event loop and waited for here."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("a topic stream is pulled on the event loop that reads it: it would wait for itself")
        work = self._work()
        pending: deque[concurrent.futures.Future[pa.Table]] = deque()
        started = 0
        pulled = 0
        try:
            while started < len(work) or pending:
                ahead = 1 if pulled == 0 else READ_AHEAD
                while started < len(work) and len(pending) < ahead:
                    plan, chunk = work[started]
                    pending.append(asyncio.run_coroutine_threadsafe(self._read(plan, chunk, names), self.loop))
                    started += 1
                table = self._wait(pending.popleft())
                pulled += 1
                yield table
        finally:
            for future in pending:
                future.cancel()

    async def _read(self, plan: PartitionPlan, chunk: SegmentChunk | None, names: Sequence[str]) -> pa.Table:
        columns = [self.segment_name(n) for n in names if n != "_partition"]
        view = self.views.get(plan.partition)
        try:
            if chunk is None:
                assert plan.tail is not None
                rows = plan.tail.select(list(dict.fromkeys(["offset", *columns])))
            elif not names and chunk.rows is not None and view is None:  # count(*): the footer's row count
                rows = pa.table({"rows": pa.nulls(chunk.rows)}).select([])
            else:
                # A view filters by offset: read it too (no columns reads the offsets alone).
                read = columns if view is None or not columns else list(dict.fromkeys(["offset", *columns]))
                rows = await self.read_chunk(plan, chunk, read)
                self.stats.chunks_read += 1
                self.stats.row_groups_read += len(chunk.row_groups)
        except BaseException as exc:
            if self.error is None and not isinstance(exc, asyncio.CancelledError):
                self.error = exc
            raise
        self.stats.rows_read += rows.num_rows
        if view is not None:
            rows = view.committed(rows)
        if not names:  # count(*): rows without columns (a table of no arrays would have no rows)
            return rows.select([])
        return self.to_sql(rows, plan.partition, names)

    def _wait(self, future: concurrent.futures.Future[pa.Table]) -> pa.Table:
        while True:
            try:
                return future.result(timeout=_POLL_S)
            except concurrent.futures.TimeoutError:
                if self.loop.is_closed() or not self.loop.is_running():
                    future.cancel()
                    raise RuntimeError("the engine stopped while a query was reading a topic") from None


class TopicDataset(ds.Dataset):
    """A topic as the pyarrow Dataset DataFusion reads (see the module docstring). Only the
    members DataFusion calls are provided; pyarrow's own scanning of it is not supported."""

    def __init__(self, stream: TopicStream, schema: pa.Schema) -> None:  # no super(): pyarrow forbids it
        self.stream = stream
        self._schema = schema

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def scanner(self, *args: Any, columns: list[str] | None = None, filter: Any = None, **kwargs: Any) -> _Scanner:  # type: ignore[override]
        return _Scanner(self, columns, filter, 0)

    def get_fragments(self, filter: Any = None) -> list[_Fragment]:
        return [_Fragment(self)]


class _Fragment:
    def __init__(self, dataset: TopicDataset) -> None:
        self._dataset = dataset

    def scanner(
        self, schema: Any = None, columns: list[str] | None = None, filter: Any = None, batch_size: int = 8192, **_: Any
    ) -> _Scanner:
        return _Scanner(self._dataset, columns, filter, batch_size)


class _Scanner:
    def __init__(self, dataset: TopicDataset, columns: list[str] | None, predicate: Any, batch_size: int) -> None:
        schema = dataset.schema
        self._dataset = dataset
        self._columns = schema.names if columns is None else list(columns)
        self._predicate = predicate
        self._batch_size = max(1, batch_size)
        self.projected_schema = pa.schema([schema.field(c) for c in self._columns])

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        from streamhouse.sql.query.unsliced import unsliced

        # A filter DataFusion pushed down is ours to apply, and may name columns it does not
        # project: read every column the query uses then.
        names = self._dataset.schema.names if self._predicate is not None else self._columns
        for table in self._dataset.stream.tables(names):
            if self._predicate is not None:
                table = table.filter(self._predicate)
            if table.num_columns != len(self._columns) or self._predicate is not None:
                table = table.select(self._columns)
            for batch in table.to_batches(max_chunksize=self._batch_size):
                yield unsliced(batch)
