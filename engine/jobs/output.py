"""What a job writes: its result rows as JSON records of its output topic, encoded straight
into segments that the job's checkpoint commits (no WAL, no partition writer: the checkpoint
transaction is what makes them visible, exactly once)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.api.values import batch_from_table
from streamhouse.storage.clock import now_ms
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.partition.roll import segment_key
from streamhouse.storage.records.schema import RECORD_SCHEMA, assign_offsets
from streamhouse.storage.segment.format import EncodedSegment, encode_segment
from streamhouse.storage.values.json_decode import with_declared_columns
from streamhouse.storage.values.schema import Column, ValueSchema, Watermark, parse_value_schema
from streamhouse.storage.values.types import sql_type


def output_schema(result: pa.Schema) -> ValueSchema:
    """The declared columns of a materialized view's topic: the SELECT's columns, so the view
    is queryable like any topic. `window_time` (if selected) is its event time, so windows
    can be stacked on a view."""
    columns = tuple(Column(_public(f.name), sql_type(f.type)) for f in result if _kept(f.name))
    watermark = Watermark("window_time", 0) if "window_time" in result.names else None
    return ValueSchema(columns, watermark)


def encode_output(
    rows: pa.Table, topic: TopicInfo, partition: int, base_offset: int, epoch: int, checkpoint: int
) -> tuple[EncodedSegment, SegmentInfo]:
    """One segment holding `rows` as JSON records at [base_offset, base_offset + n). The key
    carries the checkpoint number: a retried checkpoint after a failed commit may hold other
    rows at the same offsets, and an object is never overwritten."""
    kept = rows.select([c for c in rows.column_names if _kept(c)])
    batch = batch_from_table(kept.rename_columns([_public(c) for c in kept.column_names]))
    now = now_ms()
    table = pa.Table.from_batches([assign_offsets(_stamped(batch, now), base_offset)], schema=RECORD_SCHEMA)
    extra: dict[str, str] = {}
    schema = parse_value_schema(topic.value_schema)
    if schema is not None:
        table, extra = with_declared_columns(table, schema)
    encoded = encode_segment(table, topic=topic.name, partition=partition, epoch=epoch, extra_metadata=extra)
    key = segment_key(topic.name, partition, base_offset, epoch).replace(".parquet", f"-c{checkpoint}.parquet")
    info = encoded.info(topic=topic.name, partition=partition, object_key=key, epoch=epoch)
    return encoded, info


def _stamped(batch: pa.RecordBatch, now_ms: int) -> pa.RecordBatch:
    stamps: Any = pa.array(np.full(batch.num_rows, now_ms, dtype=np.int64))
    return batch.set_column(1, RECORD_SCHEMA.field(1), stamps)


# An update stream's row kind (+I, -U, +U) is `_op` in the operator's output; in the topic it
# is the column `op` (declared columns cannot start with _, the system columns' prefix).
# Other _ columns (system columns a query selected) are not written.
def _kept(name: str) -> bool:
    return name == "_op" or not name.startswith("_")


def _public(name: str) -> str:
    return "op" if name == "_op" else name
