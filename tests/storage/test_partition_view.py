"""The one partition read path (storage/partition/view.py) under the race it exists for: a roll
commits a segment and drops its batches from the leader's buffer between the moment a read
pins the buffer and the moment it lists the segments. Fetch (reader.read) and scans (SQL and
jobs, scan_partition) both go through it, so both must see every record exactly once.

Real stores throughout (SQLite and PostgreSQL, local objects, a real WAL); the roll is a real
PartitionWriter.flush, only timed to land inside that window every time rather than sometimes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.log_start import PartitionLog
from streamhouse.storage.model import TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore, open_object_store
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.scan import ScanBounds, scan_partition
from streamhouse.storage.partition.view import SegmentLists
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.log import WriteAheadLog


@dataclass
class Env:
    metadata: MetadataStore
    store: ObjectStore
    topic: TopicInfo
    writer: PartitionWriter
    reader: PartitionReader


class RollFirst(SegmentLists):
    """Lists segments only after the writer rolled its whole buffer into a segment: the roll
    lands between the read's pin and its listing. `rolls` counts how often that happened."""

    def __init__(self, metadata: MetadataStore, writer: PartitionWriter) -> None:
        super().__init__(metadata, ttl_s=60.0)
        self.writer = writer
        self.rolls = 0

    async def fresh(self, topic: str, partition: int) -> PartitionLog:
        if await self.writer.flush() is not None:
            self.rolls += 1
        return await super().fresh(topic, partition)


@pytest.fixture
async def env(metadata_store: MetadataStore, tmp_path: Path) -> AsyncIterator[Env]:
    """Partition 0 of "events": offsets 0-9 in a committed segment, 10-21 in the leader's buffer
    (two batches)."""
    topic = await metadata_store.create_topic("events", 1)
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    lease = await metadata_store.acquire_lease(partition_resource("events", 0), "a", 30_000)
    writer = await PartitionWriter.recover(
        topic, 0, holder="a", epoch=lease.epoch, metadata=metadata_store, store=store, wal=wal, replayed=[]
    )
    await writer.append(batch(0, 10))
    await writer.flush()
    await writer.append(batch(10, 5))
    await writer.append(batch(15, 7))
    yield Env(metadata_store, store, topic, writer, PartitionReader(metadata_store, store))
    await wal.close()
    await store.close()


def batch(start: int, n: int) -> pa.RecordBatch:
    return make_batch(
        [b"v%d" % i for i in range(start, start + n)], timestamps=[1000 + i for i in range(start, n + start)]
    )


def offsets(table: pa.Table) -> list[int]:
    return list(table.column("offset").to_pylist())


async def test_fetch_across_a_roll_sees_every_record_once(env: Env) -> None:
    hook = RollFirst(env.metadata, env.writer)
    env.reader.lists = hook
    table = await env.reader.read("events", 0, 0, max_records=100, writer=env.writer)
    assert hook.rolls == 1 and env.writer.buffer_start == 22  # the roll did land in the window
    assert offsets(table) == list(range(22))
    assert table.column("value").to_pylist() == [b"v%d" % i for i in range(22)]
    # After it, everything is committed: the same read comes from segments alone.
    assert offsets(await env.reader.read("events", 0, 5, max_records=100, writer=env.writer)) == list(range(5, 22))


async def test_scan_across_a_roll_sees_every_record_once(env: Env) -> None:
    hook = RollFirst(env.metadata, env.writer)
    env.reader.lists = hook
    table, stats = await scan_partition(env.reader, env.topic, 0, ScanBounds(start_offset=3), ["value"], env.writer)
    assert hook.rolls == 1
    assert offsets(table) == list(range(3, 22))
    # The segment committed after the pin is listed but not read: its records came from the
    # pinned batches.
    assert (stats.segments_total, stats.segments_kept, stats.buffered_rows) == (2, 1, 12)


async def test_a_read_of_the_tail_never_lists_segments(env: Env) -> None:
    """A consumer at the head is served from memory without asking the metadata store (here:
    without reaching the listing, which would roll)."""
    hook = RollFirst(env.metadata, env.writer)
    env.reader.lists = hook
    table = await env.reader.read("events", 0, 12, max_records=100, writer=env.writer)
    assert offsets(table) == list(range(12, 22)) and hook.rolls == 0
    assert env.writer.buffer_start == 10
    assert (await env.reader.read("events", 0, 22, writer=env.writer)).num_rows == 0


async def test_a_follower_refreshes_a_list_that_stops_short(env: Env) -> None:
    """Without the writer (another agent leads): a cached list that ends before the wanted
    range is refreshed, a TTL'd one that reaches it is used as it is."""
    follower = PartitionReader(env.metadata, env.store)
    assert offsets(await follower.read("events", 0, 0, max_records=22)) == list(range(10))
    await env.writer.flush()
    assert offsets(await follower.read("events", 0, 0, max_records=22)) == list(range(22))
    assert offsets(await follower.read("events", 0, 20, max_records=2)) == [20, 21]
    table, stats = await scan_partition(follower, env.topic, 0, ScanBounds(end_offset=15), ["value"])
    assert offsets(table) == list(range(15)) and stats.buffered_rows == 0


async def test_scan_ignores_a_writer_of_an_earlier_topic_of_that_name(env: Env) -> None:
    """A leftover writer of a deleted topic re-created under the same name holds none of the new
    topic's records."""
    await env.writer.flush()
    await env.writer.append(batch(22, 3))  # buffered under the old topic
    await env.metadata.delete_topic("events")
    again = await env.metadata.create_topic("events", 1)
    table, stats = await scan_partition(env.reader, again, 0, ScanBounds(), ["value"], env.writer)
    assert table.num_rows == 0 and stats.buffered_rows == 0
