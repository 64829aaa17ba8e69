"""Pipelined rolls (storage/partition/roll.py) when the first of two rolls in flight fails its
commit: the second, already uploaded, must not commit (a gap), and the next flush commits both
cuts in offset order, reusing their objects. On the writer itself, so no background task can
outlive the test; the metadata store is the real one, its commit_segment wrapped to hold the
first commit at a gate and make it fail once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamhouse.storage.errors import EarlierRollFailedError, StorageUnavailableError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import SegmentInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.log import WriteAheadLog


async def test_a_roll_after_a_failed_commit_waits_and_both_commit_in_order(
    metadata_store: MetadataStore, object_store: ObjectStore, tmp_path: Path
) -> None:
    topic = await metadata_store.create_topic("events", 1)
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    epoch = (await metadata_store.acquire_lease(partition_resource("events", 0), "a", 60_000)).epoch
    writer = await PartitionWriter.recover(
        topic, 0, holder="a", epoch=epoch, metadata=metadata_store, store=object_store, wal=wal, replayed=[]
    )
    real = metadata_store.commit_segment
    gate, entered = asyncio.Event(), asyncio.Event()
    attempts: list[int] = []

    async def commit(segment: SegmentInfo, *args: Any, **kwargs: Any) -> None:
        attempts.append(segment.end_offset)
        if len(attempts) == 1:
            entered.set()
            await gate.wait()
            raise StorageUnavailableError("the metadata store went away")
        await real(segment, *args, **kwargs)

    metadata_store.commit_segment = commit  # type: ignore[method-assign]
    try:
        await writer.append(make_batch([b"a", b"b"], timestamps=[1, 1]))
        first = asyncio.create_task(writer.flush())
        await asyncio.wait_for(entered.wait(), 30)  # roll 1 holds the commit turn
        await writer.append(make_batch([b"c"], timestamps=[1]))
        staged = asyncio.Event()
        second = asyncio.create_task(writer.flush(staged=staged.set))
        await asyncio.sleep(0.3)  # roll 2 cuts, encodes and uploads, then queues for the commit
        assert not second.done() and writer.uncut_bytes == 0
        gate.set()
        with pytest.raises(StorageUnavailableError):
            await asyncio.wait_for(first, 30)
        with pytest.raises(EarlierRollFailedError):
            await asyncio.wait_for(second, 30)
        assert attempts == [2] and writer.durable_end == 0  # roll 2 never tried to commit
        assert await writer.flush() is not None
        assert attempts == [2, 2, 3] and writer.durable_end == 3
        segments = await metadata_store.list_segments("events", 0)
        assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 2), (2, 3)]
    finally:
        metadata_store.commit_segment = real  # type: ignore[method-assign]
        await wal.close()
