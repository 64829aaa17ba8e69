"""An exactly-once Spark streaming sink into a topic (`writeStream.format("streamhouse")`).

Each task turns its rows into records column-wise (the SDK's `produce_table` conversion: a key
column, a timestamp column, the value column or every column as one JSON object) and sends each
target partition's share as ONE produce request, which the agent appends whole or not at all.
Keyed rows go where a Kafka producer puts them (murmur2); a task's keyless rows all go to one
partition (task id mod partitions), so a repeated task sends the same shares to the same places.

Repeats are what exactly-once must survive: Spark re-runs a micro-batch after a driver restart
(its checkpoint names the batch, our commit may or may not have happened) and re-runs a failed
task. The batch id (Spark's `streaming.sql.batchId` task property) and the sink's state in the
offsets store (sink_state.py) decide: a batch at or below the committed one writes nothing; a task
that may repeat an earlier attempt skips each partition that already holds its marker. Tasks read
all their input before they write, so a failure while reading input (a shuffle fetch failure, the
one that re-runs a stage) never leaves a partial write behind; speculative execution must be off
(Spark's default), as for every sink that is not transactional."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql.datasource import DataSourceStreamArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from streamhouse.api.partitioner import partition_for_keys, split_by_partition
from streamhouse.api.values import batch_from_table
from streamhouse.spark.options import SourceOptions
from streamhouse.spark.reader import bounds
from streamhouse.spark.sink_state import (
    already_written,
    commit_batch,
    ensure_floors,
    marker,
    marker_headers,
    read_state,
)
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import RECORD_SCHEMA

BATCH_ID_PROPERTY = "streaming.sql.batchId"  # what Spark's micro-batch execution sets on every task
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkCommit(WriterCommitMessage):
    """What one task did with its rows: written, or found already written (skipped)."""

    batch_id: int
    task: int
    written: int
    skipped: int


class TopicStreamWriter(DataSourceStreamArrowWriter):
    """Made on the driver when the query starts, then pickled to every task."""

    def __init__(self, options: SourceOptions, schema: StructType) -> None:
        if not options.sink_id:
            raise InvalidInputError(
                "the streamhouse sink needs option 'sinkId': it names the sink's exactly-once state "
                "(one per query writing a topic; keep it when the query restarts)"
            )
        self.options = options
        self.sink_id = options.sink_id
        with options.connect() as client:
            self.partitions = client.describe(options.topic).info.partitions  # TopicNotFoundError now
            state = ensure_floors(client, self.sink_id, options.topic, bounds(client, options.topic)[1])
        # The first batch this run writes may repeat one a crashed run began: its tasks check.
        self.first_batch = state.next_batch

    def write(self, iterator: Iterator[pa.RecordBatch]) -> SinkCommit:  # type: ignore[override]  # Arrow writer: batches, not Rows
        context = TaskContext.get()
        property_ = context.getLocalProperty(BATCH_ID_PROPERTY) if context is not None else None
        if context is None or not property_:
            raise InvalidInputError("the streamhouse sink writes streaming queries only (no micro-batch id here)")
        batch_id, task = int(property_), context.partitionId()
        batches = list(iterator)  # all input first: see the module docstring
        table = pa.Table.from_batches(batches) if batches else None
        if table is None or table.num_rows == 0:
            return SinkCommit(batch_id, task, 0, 0)
        value = marker(self.sink_id, batch_id, task)
        shares = self._shares(table, value, task)
        written = skipped = 0
        with self.options.connect(retries=False) as client:  # a lost answer fails the task, never resends
            state = read_state(client, self.sink_id, self.options.topic)
            if batch_id < state.next_batch:
                return SinkCommit(batch_id, task, 0, table.num_rows)
            may_repeat = context.attemptNumber() > 0 or batch_id <= self.first_batch
            for partition, share in sorted(shares.items()):
                floor = state.floors.get(partition, 0)
                if may_repeat and already_written(client, self.options.topic, partition, floor, value):
                    skipped += share.num_rows
                    continue
                client.transport.produce(self.options.topic, partition, share, "leader")
                written += share.num_rows
        return SinkCommit(batch_id, task, written, skipped)

    def _shares(self, table: pa.Table, value: bytes, task: int) -> dict[int, pa.RecordBatch]:
        o = self.options
        records = batch_from_table(
            table, key_column=o.key_column, timestamp_column=o.timestamp_column, value_column=o.value_column
        )
        records = records.set_column(4, RECORD_SCHEMA.field(4), marker_headers(value, records.num_rows))
        keys = records.column(2)
        ids = partition_for_keys(keys, self.partitions)
        if keys.null_count:  # keyless rows: one partition per task, the same on every attempt
            ids[np.flatnonzero(keys.is_null().to_numpy(zero_copy_only=False))] = task % self.partitions
        return split_by_partition(records, ids, self.partitions)

    def commit(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        with self.options.connect() as client:
            commit_batch(client, self.sink_id, self.options.topic, batchId, bounds(client, self.options.topic)[1])
        done = [m for m in messages if isinstance(m, SinkCommit)]
        log.info(
            "spark sink %s: batch %d committed (%d rows written, %d found already written)",
            self.sink_id,
            batchId,
            sum(m.written for m in done),
            sum(m.skipped for m in done),
        )

    def abort(self, messages: list[WriterCommitMessage | None], batchId: int) -> None:
        """Nothing to undo: what was written stays, and the batch's repeat skips it."""
        log.warning("spark sink %s: batch %d aborted; its repeat will skip what was written", self.sink_id, batchId)
