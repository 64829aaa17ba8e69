"""acks=durable batches skip the WAL (PartitionWriter.append(logged=False)): nobody is
answered before their segment commits, so a WAL entry would protect nothing. The WAL must
still hold every record from the durable end up to its last entry: an unlogged batch is
written after all, in order, when a logged batch follows it, and a commit forgets it."""

from __future__ import annotations

from pathlib import Path

from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog


async def _writer(
    metadata: MetadataStore, store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo, replayed: list[WalEntry]
) -> PartitionWriter:
    epoch = (await metadata.acquire_lease(partition_resource("events", 0), "a", 60_000)).epoch
    return await PartitionWriter.recover(
        topic, 0, holder="a", epoch=epoch, metadata=metadata, store=store, wal=wal, replayed=replayed
    )


async def _reopen(wal: WriteAheadLog, directory: Path) -> tuple[WriteAheadLog, list[WalEntry]]:
    """The WAL as a restarted agent finds it (the writer's buffer is gone: a crash)."""
    await wal.close()
    again = await WriteAheadLog.open(directory, fsync="never")
    return again, list((await again.replay()).entries)


def _values(n: int, start: int = 0) -> list[bytes]:
    return [f"v{i}".encode() for i in range(start, start + n)]


async def test_unlogged_batches_reach_the_wal_before_a_logged_one(
    metadata_store: MetadataStore, object_store: ObjectStore, tmp_path: Path
) -> None:
    topic = await metadata_store.create_topic("events", 1)
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    writer = await _writer(metadata_store, object_store, wal, topic, [])
    assert await writer.append(make_batch(_values(3), timestamps=[1] * 3), logged=False) == 0
    assert await writer.append(make_batch(_values(2, 3), timestamps=[1] * 2), logged=False) == 3
    wal, entries = await _reopen(wal, tmp_path / "wal")
    assert entries == []  # only unacknowledged records were lost

    writer = await _writer(metadata_store, object_store, wal, topic, entries)
    assert await writer.append(make_batch(_values(3), timestamps=[1] * 3), logged=False) == 0
    assert await writer.append(make_batch(_values(2, 3), timestamps=[1] * 2), logged=False) == 3
    assert await writer.append(make_batch(_values(1, 5), timestamps=[1]), logged=True) == 5
    wal, entries = await _reopen(wal, tmp_path / "wal")
    assert [(e.base_offset, e.record_count) for e in entries] == [(0, 3), (3, 2), (5, 1)]

    # Recovery re-buffers all six at their offsets, and the next roll commits them.
    writer = await _writer(metadata_store, object_store, wal, topic, entries)
    assert writer.next_offset == 6 and writer.replayed_records == 6
    info = await writer.flush()
    assert info is not None and (info.base_offset, info.end_offset) == (0, 6)
    await wal.close()


async def test_a_commit_forgets_unlogged_batches(
    metadata_store: MetadataStore, object_store: ObjectStore, tmp_path: Path
) -> None:
    topic = await metadata_store.create_topic("events", 1)
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    writer = await _writer(metadata_store, object_store, wal, topic, [])
    await writer.append(make_batch(_values(4), timestamps=[1] * 4), logged=False)
    info = await writer.flush()
    assert info is not None and info.end_offset == 4
    # Committed: the logged batch after it must not drag the committed records into the WAL.
    assert await writer.append(make_batch(_values(1, 4), timestamps=[1]), logged=True) == 4
    wal, entries = await _reopen(wal, tmp_path / "wal")
    assert [(e.base_offset, e.record_count) for e in entries] == [(4, 1)]
    await wal.close()
