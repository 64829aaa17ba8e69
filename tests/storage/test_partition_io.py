"""Partition writer + reader against real stores (local and SeaweedFS; SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from streamhouse.storage.errors import BackpressureError, FencedError, InvalidInputError, StorageUnavailableError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.writer import PartitionWriter, WriterConfig
from streamhouse.storage.records.codec import encode_batch
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog


@dataclass
class Env:
    metadata: MetadataStore
    store: ObjectStore
    wal: WriteAheadLog
    topic: TopicInfo
    wal_dir: Path


@pytest.fixture
async def env(metadata_store: MetadataStore, object_store: ObjectStore, tmp_path: Path) -> AsyncIterator[Env]:
    topic = await metadata_store.create_topic("events", 2)
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    yield Env(metadata_store, object_store, wal, topic, tmp_path / "wal")
    await wal.close()


async def leader(
    env: Env,
    holder: str = "agent-a",
    config: WriterConfig | None = None,
    partition: int = 0,
    replayed: list[WalEntry] | None = None,
) -> PartitionWriter:
    """Take the partition's lease and start a writer, recovering `replayed` WAL entries."""
    lease = await env.metadata.acquire_lease(partition_resource("events", partition), holder, 30_000)
    return await PartitionWriter.recover(
        env.topic,
        partition,
        holder=holder,
        epoch=lease.epoch,
        metadata=env.metadata,
        store=env.store,
        wal=env.wal,
        replayed=replayed or [],
        config=config,
    )


async def reopen_wal(env: Env) -> list[WalEntry]:
    """What a restarted agent does: open the WAL directory again and replay it."""
    await env.wal.close()
    env.wal = await WriteAheadLog.open(env.wal_dir, fsync="never")
    return (await env.wal.replay()).entries


def values(table: pa.Table) -> list[bytes | None]:
    return table.column("value").to_pylist()


def batch(start: int, n: int) -> pa.RecordBatch:
    return make_batch(
        [b"v%d" % i for i in range(start, start + n)],
        keys=[b"k"] * n,
        timestamps=[1000 + i for i in range(start, start + n)],
    )


async def test_reads_span_segments_and_the_unflushed_buffer(env: Env) -> None:
    writer = await leader(env)
    reader = PartitionReader(env.metadata, env.store)
    assert await writer.append(batch(0, 10)) == 0
    await writer.flush()
    assert await writer.append(batch(10, 5)) == 10
    await writer.flush()
    assert await writer.append(batch(15, 7)) == 15  # stays in memory
    table = await reader.read("events", 0, 0, max_records=100, writer=writer)
    assert table.column("offset").to_pylist() == list(range(22))
    assert values(table) == [b"v%d" % i for i in range(22)]
    middle = await reader.read("events", 0, 8, max_records=9, writer=writer)
    assert middle.column("offset").to_pylist() == list(range(8, 17))
    # Another agent (no writer) sees only what is committed.
    committed = await reader.read("events", 0, 0, max_records=100)
    assert committed.column("offset").to_pylist() == list(range(15))
    assert (await reader.read("events", 0, 22, writer=writer)).num_rows == 0
    assert await env.metadata.get_end_offset("events", 0) == 15


async def test_second_read_is_served_from_the_block_cache(env: Env) -> None:
    writer = await leader(env)
    reader = PartitionReader(env.metadata, env.store)
    await writer.append(batch(0, 50))
    await writer.flush()
    first = await reader.read("events", 0, 0, max_records=50)
    fetched = reader.segments.bytes_fetched
    again = await reader.read("events", 0, 0, max_records=50)
    assert again.equals(first)
    assert reader.cache.hits >= 1
    assert reader.segments.bytes_fetched == fetched


async def test_roll_by_size(env: Env) -> None:
    writer = await leader(env, config=WriterConfig(roll_bytes=1000))
    await writer.append(batch(0, 3))
    assert not writer.should_roll()
    await writer.append(batch(3, 100))
    assert writer.should_roll()
    info = await writer.flush()
    assert info is not None and (info.base_offset, info.end_offset) == (0, 103)
    assert not writer.should_roll()


async def test_roll_by_age(env: Env) -> None:
    writer = await leader(env, config=WriterConfig(roll_age_ms=50))
    await writer.append(batch(0, 1))
    assert not writer.should_roll()
    await asyncio.sleep(0.08)
    assert writer.should_roll()


async def test_backpressure_rejects_without_writing(env: Env) -> None:
    writer = await leader(env, config=WriterConfig(max_buffer_bytes=2000))
    await writer.append(batch(0, 10))
    with pytest.raises(BackpressureError, match="limit 2000"):
        await writer.append(batch(10, 500))
    assert writer.next_offset == 10
    assert await writer.append(batch(10, 1)) == 10


async def test_wrong_schema_is_rejected(env: Env) -> None:
    writer = await leader(env)
    with pytest.raises(InvalidInputError):
        await writer.append(pa.RecordBatch.from_pydict({"x": [1]}))
    assert writer.next_offset == 0


async def test_stale_leader_is_fenced_and_drops_its_buffer(env: Env) -> None:
    old = await leader(env, "agent-a")
    await old.append(batch(0, 5))
    await old.flush()
    await old.append(batch(5, 5))  # acknowledged by the old leader, never committed
    # The lease expires and agent-b takes over with a higher epoch.
    await env.metadata.release_lease(partition_resource("events", 0), "agent-a", old.epoch)
    new = await leader(env, "agent-b")
    assert new.epoch == old.epoch + 1
    assert await new.append(batch(100, 3)) == 5
    with pytest.raises(FencedError):
        await old.flush()
    with pytest.raises(FencedError):
        await old.append(batch(0, 1))
    assert old.fenced and old.buffered_bytes == 0
    await new.flush()
    reader = PartitionReader(env.metadata, env.store)
    table = await reader.read("events", 0, 0)
    assert values(table) == [b"v%d" % i for i in [0, 1, 2, 3, 4, 100, 101, 102]]
    keys = [o.key for o in await env.store.list("topics/events/00000/")]
    # The fenced upload of offset 5 at the old epoch stays (a writer never deletes an object
    # metadata might reference), and no segment row references it.
    assert keys == [
        f"topics/events/00000/{0:020d}-{old.epoch}.parquet",
        f"topics/events/00000/{5:020d}-{old.epoch}.parquet",
        f"topics/events/00000/{5:020d}-{new.epoch}.parquet",
    ]
    referenced = {s.object_key for s in await env.metadata.list_segments("events", 0)}
    assert f"topics/events/00000/{5:020d}-{old.epoch}.parquet" not in referenced


async def test_recovery_rebuffers_acknowledged_wal_entries(env: Env) -> None:
    first = await leader(env, "agent-a")
    await first.append(batch(0, 4))
    await first.flush()
    await first.append(batch(4, 6))  # in the WAL only
    # "Crash": reopen the WAL directory and recover under a new epoch.
    replayed = await reopen_wal(env)
    await env.metadata.release_lease(partition_resource("events", 0), "agent-a", first.epoch)
    writer = await leader(env, "agent-a", replayed=replayed)
    assert writer.next_offset == 10
    assert await writer.append(batch(10, 1)) == 10
    await writer.flush()
    table = await PartitionReader(env.metadata, env.store).read("events", 0, 0)
    assert values(table) == [b"v%d" % i for i in range(11)]


async def test_recovery_appends_acknowledged_entries_of_a_superseded_epoch_again(env: Env) -> None:
    a = await leader(env, "agent-a")
    await a.append(batch(0, 3))  # WAL only, never committed
    await env.metadata.release_lease(partition_resource("events", 0), "agent-a", a.epoch)
    b = await leader(env, "agent-b")
    await b.append(batch(50, 2))
    await b.flush()  # b committed offsets 0..1 with other records at a higher epoch
    replayed = await reopen_wal(env)
    await env.metadata.release_lease(partition_resource("events", 0), "agent-b", b.epoch)
    again = await leader(env, "agent-a", replayed=replayed)
    # a's acknowledged records lost their offsets to b: appended again after b's (issue 20).
    assert again.next_offset == 5 and again.recovered_records == 3
    assert values(pa.Table.from_batches(again.read_buffer(0, 100))) == [b"v0", b"v1", b"v2"]
    assert again.read_buffer(0, 100)[0].column(0)[0].as_py() == 2


async def test_a_commit_that_failed_after_the_upload_is_retried_with_the_same_records(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt uploads its object, then its commit fails (a database blip). More
    records arrive. The next flush must commit the same cut first (its object key is taken),
    then the rest, instead of failing forever on "exists with different content"."""
    writer = await leader(env)
    await writer.append(make_batch([b"a", b"b"]))
    real_commit = env.metadata.commit_segment
    calls = 0

    async def flaky_commit(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StorageUnavailableError("database went away")
        await real_commit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(env.metadata, "commit_segment", flaky_commit)
    with pytest.raises(StorageUnavailableError):
        await writer.flush()
    await writer.append(make_batch([b"c"]))
    await writer.flush()
    segments = await env.metadata.list_segments("events", 0)
    assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 2), (2, 3)]
    table = await PartitionReader(env.metadata, env.store).read("events", 0, 0)
    assert table.column("value").to_pylist() == [b"a", b"b", b"c"]


async def test_a_request_payload_is_logged_as_is_and_replayed_at_its_assigned_offsets(env: Env) -> None:
    """The agent hands the produce request's framed bytes to the WAL (no re-encode); their
    offset column is the producer's placeholder, so replay must assign base + arange."""
    first = await leader(env, "agent-a")
    await first.append(batch(0, 3))
    request = make_batch([b"x", b"y"])  # offsets 0, 1 as the producer sent them
    assert await first.append(request, encode_batch(request)) == 3
    replayed = await reopen_wal(env)
    await env.metadata.release_lease(partition_resource("events", 0), "agent-a", first.epoch)
    writer = await leader(env, "agent-a", replayed=replayed)
    assert writer.next_offset == 5
    await writer.flush()
    table = await PartitionReader(env.metadata, env.store).read("events", 0, 0)
    assert table.column("offset").to_pylist() == [0, 1, 2, 3, 4]
    assert values(table)[3:] == [b"x", b"y"]
