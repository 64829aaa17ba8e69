"""The exactly-once state of a Spark sink, kept in the target topic's consumer-group offsets store
(the agent's metadata database, no extra service), and the marker every written record carries.

Two groups per sink, both on the target topic:
- `spark-sink.<sinkId>.batch`, partition 0: the next micro-batch id to write (committed batch + 1);
- `spark-sink.<sinkId>`, each partition: a floor, an offset at or below which nothing of any
  batch after the committed one was written (the end offsets read when the last batch committed).

Each record a task writes carries the header `streamhouse.spark.sink` = "<sinkId>:<batch>:<task>".
A task that may repeat an earlier attempt (a retried task, or the first batch after the query
restarted) looks for its marker above the floor in each partition it writes to; a partition's
share is one produce request, appended whole or not at all, so a found marker means all of it is
there. Cost: one read of what was written since the last commit, and only on those tasks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.client.client import Client
from streamhouse.storage.errors import OffsetOutOfRangeError, StorageUnavailableError
from streamhouse.storage.records.schema import HEADERS_TYPE

MARKER_KEY = "streamhouse.spark.sink"
_SCAN_RECORDS = 50_000
_SETTLE_S = 30.0  # how long acknowledged records past the high watermark are waited for


@dataclass(frozen=True)
class SinkState:
    """A sink's committed position: the next batch id to write and the floor per partition."""

    next_batch: int
    floors: dict[int, int]


def group(sink_id: str) -> str:
    return f"spark-sink.{sink_id}"


def read_state(client: Client, sink_id: str, topic: str) -> SinkState:
    batch = client.committed(group(sink_id) + ".batch", topic)
    floors = {o.partition: o.committed_offset for o in client.committed(group(sink_id), topic)}
    return SinkState(max(batch[0].committed_offset, 0) if batch else 0, floors)


def ensure_floors(client: Client, sink_id: str, topic: str, ends: dict[int, int]) -> SinkState:
    """A new sink's floors are the end offsets now, before it writes anything (so the first
    batch, if it is ever repeated, has somewhere to look from)."""
    state = read_state(client, sink_id, topic)
    missing = {p: o for p, o in ends.items() if state.floors.get(p, -1) < 0}
    if missing:
        client.commit(group(sink_id), topic, missing)
        state = SinkState(state.next_batch, {**state.floors, **missing})
    return state


def commit_batch(client: Client, sink_id: str, topic: str, batch_id: int, ends: dict[int, int]) -> None:
    """Batch `batch_id` is written: first the batch id (from here a repeat of it writes
    nothing), then the new floors. A crash between the two leaves the old, lower floors, which
    only make the next batch's check read further."""
    state = read_state(client, sink_id, topic)
    client.commit(group(sink_id) + ".batch", topic, {0: max(state.next_batch, batch_id + 1)})
    client.commit(group(sink_id), topic, {p: max(o, state.floors.get(p, 0)) for p, o in ends.items()})


def marker(sink_id: str, batch_id: int, task: int) -> bytes:
    return f"{sink_id}:{batch_id}:{task}".encode()


def marker_headers(value: bytes, n: int) -> pa.Array[Any]:
    """The headers column of `n` records that each carry one marker header (built from offsets
    and repeated values, not per record)."""
    items = pa.StructArray.from_arrays(
        [pa.repeat(pa.scalar(MARKER_KEY, pa.string()), n), pa.repeat(pa.scalar(value, pa.binary()), n)],
        fields=list(HEADERS_TYPE.value_type),
    )
    offsets: Any = pa.array(np.arange(n + 1, dtype=np.int32))
    headers: pa.Array[Any] = pa.ListArray.from_arrays(offsets, items, type=HEADERS_TYPE)
    return headers


def already_written(client: Client, topic: str, partition: int, floor: int, value: bytes) -> bool:
    """Whether a record marked `value` sits in `partition` at or above `floor`. Every
    acknowledged record counts: reads end at the high watermark (the durable end), so records
    acknowledged past it are waited for (the fetch starts their durable round), never taken as
    absent, which would write the task's rows twice."""
    offset = max(floor, 0)
    wait_ms = 0
    deadline = time.monotonic() + _SETTLE_S
    while True:
        try:
            result = client.transport.fetch(topic, partition, offset, max_records=_SCAN_RECORDS, max_wait_ms=wait_ms)
        except OffsetOutOfRangeError as exc:  # retention passed the floor: look from the log start
            offset = max(offset + 1, exc.log_start)
            continue
        if result.records.num_rows and _holds(result.records.column("headers"), value):
            return True
        if result.next_offset >= result.end_offset:
            return False
        if result.next_offset > offset:
            offset, wait_ms = result.next_offset, 0
            continue
        if time.monotonic() >= deadline:
            raise StorageUnavailableError(
                f"{topic}/{partition}: records acknowledged past offset {offset} did not become readable within "
                f"{_SETTLE_S:g} s; cannot tell whether this task's rows were written"
            )
        wait_ms = 1_000


def _holds(headers: Any, value: bytes) -> bool:
    items = pc.list_flatten(headers)
    if len(items) == 0:
        return False
    keys: Any = pc.struct_field(items, [0])
    values: Any = pc.struct_field(items, [1])
    found = pc.and_(pc.equal(keys, pa.scalar(MARKER_KEY, pa.string())), pc.equal(values, pa.scalar(value, pa.binary())))
    return bool(pc.any(found).as_py())
