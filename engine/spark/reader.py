"""Reading a topic from Spark: offsets as Spark keeps them ({"<partition>": next offset}), offset
ranges as input partitions, and one range read through the SDK's fetch as Arrow batches.

A micro-batch is the offsets between two of Spark's offset dicts, so a replayed batch (after a
driver restart, from Spark's checkpoint) reads exactly the records it read the first time:
offsets in a partition never change meaning (docs/DESIGN.md §2). Each range is read by one
Spark task with its own connection; fetch answers are Arrow tables, turned into Spark's Arrow
batches column-wise (schema.py), never a Python step per record."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from pyspark.sql.datasource import InputPartition

from streamhouse.client.client import Client
from streamhouse.spark.options import SourceOptions
from streamhouse.spark.schema import to_spark_batch
from streamhouse.storage.errors import InvalidInputError, OffsetOutOfRangeError, StreamHouseError
from streamhouse.storage.model import TopicInfo

if TYPE_CHECKING:
    from pyspark.sql.streaming.datasource import ReadLimit

# One Spark task reads at most this many offsets of a partition, so a backlog spreads over cores.
SPLIT_OFFSETS = 2_000_000
# A range that stops showing records below its end (never expected: its end was acknowledged)
# is fetched again this often, waiting this long each time, before the task fails.
_EMPTY_FETCHES = 20
_EMPTY_WAIT_MS = 250


class OffsetRange(InputPartition):
    """Offsets [start, end) of one topic partition: one Spark task's share of a batch."""

    def __init__(self, partition: int, start: int, end: int) -> None:
        super().__init__((partition, start, end))
        self.partition = partition
        self.start = start
        self.end = end


class MissingRecordsError(StreamHouseError):
    """Offsets a batch must read showed no records (they were acknowledged, so they exist)."""


def spark_offsets(offsets: Mapping[int, int]) -> dict[str, int]:
    """Spark's offset dict: JSON-able, partition numbers as strings."""
    return {str(p): int(o) for p, o in sorted(offsets.items())}


def from_spark(offsets: Mapping[str, int]) -> dict[int, int]:
    return {int(p): int(o) for p, o in offsets.items()}


def bounds(client: Client, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition: the log start and the end offset (next offset to be written)."""
    description = client.describe(topic)
    starts = {s.partition: s.log_start for s in description.partitions}
    ends = {s.partition: s.end_offset for s in description.partitions}
    for p in range(description.info.partitions):  # a partition nobody wrote yet
        starts.setdefault(p, 0)
        ends.setdefault(p, 0)
    return starts, ends


def starting_offsets(client: Client, info: TopicInfo, position: str | dict[int, int]) -> dict[int, int]:
    """Where a new query starts: "earliest" (each log start), "latest" (each end) or explicit
    offsets (partitions not named start at their log start)."""
    starts, ends = bounds(client, info.name)
    if position == "latest":
        return ends
    if position == "earliest":
        return starts
    assert isinstance(position, dict)
    unknown = sorted(p for p in position if p not in starts)
    if unknown:
        raise InvalidInputError(
            f"startingOffsets names partition(s) {unknown} of topic {info.name!r}, which has {info.partitions}"
        )
    return {p: max(position.get(p, starts[p]), starts[p]) for p in starts}


def limited(start: Mapping[int, int], ends: Mapping[int, int], limit: ReadLimit) -> dict[int, int]:
    """The end offsets of the next batch: everything available, or with ReadMaxRows about that
    many records shared out evenly over the partitions that have any (whole-array arithmetic)."""
    from pyspark.sql.streaming.datasource import ReadMaxRows

    parts = sorted(set(start) | set(ends))
    lo = np.array([start.get(p, 0) for p in parts], dtype=np.int64)
    hi = np.maximum(np.array([ends.get(p, 0) for p in parts], dtype=np.int64), lo)
    if isinstance(limit, ReadMaxRows):
        available = hi - lo
        budget = int(limit.max_rows)
        take = np.zeros_like(available)
        while budget > 0 and bool((available > take).any()):  # a few rounds at most: per partition, not record
            open_ = available > take
            share = max(1, budget // int(open_.sum()))
            step = np.where(open_, np.minimum(available - take, share), 0)
            step = np.minimum(step, np.maximum(budget - (np.cumsum(step) - step), 0))
            take += step
            budget -= int(step.sum())
        hi = lo + take
    return {p: int(h) for p, h in zip(parts, hi, strict=True)}


def ranges(start: Mapping[int, int], end: Mapping[int, int]) -> list[OffsetRange]:
    """The input partitions between two offset dicts: each partition's new offsets, split into
    pieces of at most SPLIT_OFFSETS."""
    out: list[OffsetRange] = []
    for p in sorted(end):
        lo, hi = start.get(p, 0), end[p]
        out += [OffsetRange(p, s, min(s + SPLIT_OFFSETS, hi)) for s in range(lo, hi, SPLIT_OFFSETS)]
    return out


def read_range(
    options: SourceOptions, info: TopicInfo, piece: OffsetRange, target: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The records of `piece` as Spark Arrow batches of `target`, at most `fetch_records` each.
    Offsets below the log start (retention removed them) are passed over, as a Kafka consumer
    with auto.offset.reset=earliest does; gaps (compaction) simply hold no records."""
    with options.connect() as client:
        offset, empty = piece.start, 0
        while offset < piece.end:
            wanted = min(options.fetch_records, piece.end - offset)
            try:
                result = client.transport.fetch(
                    info.name, piece.partition, offset, max_records=wanted, max_wait_ms=_EMPTY_WAIT_MS if empty else 0
                )
            except OffsetOutOfRangeError as exc:
                offset = max(offset + 1, exc.log_start)
                continue
            records = _below(result.records, piece.end)
            if records.num_rows:
                empty = 0
                yield to_spark_batch(records, piece.partition, info, target)
            elif result.next_offset <= offset:
                empty += 1
                if empty >= _EMPTY_FETCHES:
                    raise MissingRecordsError(
                        f"topic {info.name!r} partition {piece.partition}: offsets {offset} to {piece.end - 1} "
                        f"showed no records in {_EMPTY_FETCHES} fetches"
                    )
                time.sleep(_EMPTY_WAIT_MS / 1000)
                continue
            offset = max(result.next_offset, offset + records.num_rows)


def _below(records: pa.Table, end: int) -> pa.Table:
    """The fetched rows before `end` (a fetch may return more than the range wants)."""
    if not records.num_rows:
        return records
    offsets = records.column("offset").to_numpy()
    cut = int(np.searchsorted(offsets, end, side="left"))
    return records if cut == records.num_rows else records.slice(0, cut)
