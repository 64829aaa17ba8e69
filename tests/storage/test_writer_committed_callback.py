"""PartitionWriter.flush(committed=...): each committed segment is reported the moment its
commit moved durable_end, before the WAL entries it covers are released (a rotation with two
fsyncs that a durable ack need not wait for), and a failed roll reports nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.roll import segment_key
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.log import WriteAheadLog


@pytest.fixture
async def wal(tmp_path: Path) -> AsyncIterator[WriteAheadLog]:
    log = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await log.replay()
    yield log
    await log.close()


async def leader(metadata: MetadataStore, store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo) -> PartitionWriter:
    epoch = (await metadata.acquire_lease(partition_resource("events", 0), "a", 60_000)).epoch
    return await PartitionWriter.recover(
        topic, 0, holder="a", epoch=epoch, metadata=metadata, store=store, wal=wal, replayed=[]
    )


async def test_a_commit_is_reported_before_its_wal_entries_are_released(
    metadata_store: MetadataStore, object_store: ObjectStore, wal: WriteAheadLog
) -> None:
    topic = await metadata_store.create_topic("events", 1)
    writer = await leader(metadata_store, object_store, wal, topic)
    await writer.append(make_batch([b"a", b"b", b"c"], timestamps=[1] * 3))
    seen: list[tuple[SegmentInfo, int, int, int]] = []

    def committed(segment: SegmentInfo) -> None:
        end = writer.durable_end
        seen.append((segment, end, wal.rotations, wal.files_deleted))

    rotations, deleted = wal.rotations, wal.files_deleted
    info = await writer.flush(committed=committed)
    assert info is not None and info.end_offset == 3
    # Reported with the commit in place and before the release rotated and deleted the file.
    assert seen == [(info, 3, rotations, deleted)]
    assert await metadata_store.get_end_offset("events", 0) == 3
    assert (wal.rotations, wal.files_deleted) == (rotations + 1, deleted + 1)
    assert await writer.flush(committed=committed) is None and len(seen) == 1  # nothing to roll


async def test_a_failed_roll_reports_nothing(
    metadata_store: MetadataStore, object_store: ObjectStore, wal: WriteAheadLog
) -> None:
    topic = await metadata_store.create_topic("events", 1)
    writer = await leader(metadata_store, object_store, wal, topic)
    await writer.append(make_batch([b"a"], timestamps=[1]))
    await object_store.put(segment_key("events", 0, 0, writer.epoch), b"someone else's", if_absent=True)
    seen: list[SegmentInfo] = []
    with pytest.raises(StreamHouseError, match="different content"):
        await writer.flush(committed=seen.append)
    assert seen == [] and writer.durable_end == 0
