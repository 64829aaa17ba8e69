"""Log starts and retention's truncation (storage/metadata/log_start.py): the MetadataStore contract
over SQLite and PostgreSQL — one transaction, fenced by the remover's lease and by the rows it
read, the newest segment always kept, the log start only moving forward and kept across a
reopen; the per-partition figures and the compactor's last-compaction time."""

from __future__ import annotations

import dataclasses

import pytest

from streamhouse.storage.errors import (
    FencedError,
    InvalidInputError,
    PartitionNotFoundError,
    SegmentsChangedError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.log_start import PartitionStats
from streamhouse.storage.model import SegmentInfo
from tests.storage.test_metadata_contract import commit_run, make_segment, without_created_at

REMOVER = "agent-r"
RESOURCE = "retention/t"


async def setup(store: MetadataStore) -> tuple[list[SegmentInfo], int]:
    await store.create_topic("t", 2)
    segments = await commit_run(store, "t", 0, [0, 3, 5, 9, 10, 14])
    lease = await store.acquire_lease(RESOURCE, REMOVER, 60_000)
    return segments, lease.epoch


async def state(store: MetadataStore) -> tuple[object, ...]:
    log = await store.list_log("t", 0)
    return (log.log_start, without_created_at(list(log.segments)), await store.list_deletions())


async def test_a_new_partition_starts_at_zero(metadata_store: MetadataStore) -> None:
    segments, _ = await setup(metadata_store)
    log = await metadata_store.list_log("t", 0)
    assert log.log_start == 0 and without_created_at(list(log.segments)) == segments
    empty = await metadata_store.list_log("t", 1)
    assert (empty.log_start, empty.segments) == (0, ())
    assert await metadata_store.partition_stats("t") == [
        PartitionStats(0, 0, 14, 5, sum(s.size_bytes for s in segments), None),
        PartitionStats(1, 0, 0, 0, 0, None),
    ]


async def test_truncation_removes_the_oldest_segments_and_moves_the_log_start(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    before = await metadata_store.now_ms()
    assert await metadata_store.truncate_log(segments[:2], RESOURCE, REMOVER, epoch, 60_000) == 5
    log = await metadata_store.list_log("t", 0)
    assert log.log_start == 5 and without_created_at(list(log.segments)) == segments[2:]
    assert without_created_at(await metadata_store.list_segments("t", 0)) == segments[2:]
    assert await metadata_store.get_end_offset("t", 0) == 14  # the end never moves
    pending = await metadata_store.list_deletions()
    assert sorted(d.object_key for d in pending) == sorted(s.object_key for s in segments[:2])
    assert all(d.delete_after_ms >= before + 60_000 for d in pending)
    [stats, _] = await metadata_store.partition_stats("t")
    assert (stats.log_start, stats.durable_end, stats.segments) == (5, 14, 3)
    assert stats.size_bytes == sum(s.size_bytes for s in segments[2:])
    # Later segments go the same way; the log start follows.
    assert await metadata_store.truncate_log(segments[2:4], RESOURCE, REMOVER, epoch, 0) == 10


async def test_the_newest_segment_is_never_removed(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    before = await state(metadata_store)
    with pytest.raises(InvalidInputError, match="newest committed segment"):
        await metadata_store.truncate_log(segments, RESOURCE, REMOVER, epoch, 0)
    assert await state(metadata_store) == before


async def test_refusals_change_nothing(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    before = await state(metadata_store)
    with pytest.raises(FencedError):
        await metadata_store.truncate_log(segments[:2], RESOURCE, REMOVER, epoch + 1, 0)
    with pytest.raises(FencedError):
        await metadata_store.truncate_log(segments[:2], RESOURCE, "someone-else", epoch, 0)
    # Not a prefix: the segment below it is still there.
    with pytest.raises(SegmentsChangedError):
        await metadata_store.truncate_log(segments[1:3], RESOURCE, REMOVER, epoch, 0)
    # Rows changed since they were read (here: a size no row has).
    changed = [dataclasses.replace(segments[0], size_bytes=1), segments[1]]
    with pytest.raises(SegmentsChangedError):
        await metadata_store.truncate_log(changed, RESOURCE, REMOVER, epoch, 0)
    with pytest.raises(InvalidInputError):
        await metadata_store.truncate_log([], RESOURCE, REMOVER, epoch, 0)
    with pytest.raises(InvalidInputError, match="offset order"):
        await metadata_store.truncate_log([segments[1], segments[0]], RESOURCE, REMOVER, epoch, 0)
    with pytest.raises(InvalidInputError, match="belongs to"):
        await metadata_store.truncate_log([segments[0], make_segment("t", 1, 3, 5)], RESOURCE, REMOVER, epoch, 0)
    with pytest.raises(PartitionNotFoundError):
        await metadata_store.truncate_log([make_segment("t", 7, 0, 3)], RESOURCE, REMOVER, epoch, 0)
    assert await state(metadata_store) == before


async def test_a_truncation_twice_is_refused_the_second_time(metadata_store: MetadataStore) -> None:
    """Two removers that read the same rows: one wins, the other finds them changed."""
    segments, epoch = await setup(metadata_store)
    await metadata_store.truncate_log(segments[:1], RESOURCE, REMOVER, epoch, 0)
    with pytest.raises(SegmentsChangedError):
        await metadata_store.truncate_log(segments[:2], RESOURCE, REMOVER, epoch, 0)
    assert (await metadata_store.list_log("t", 0)).log_start == 3


async def test_the_log_start_survives_a_reopen_and_a_topic_deletion_clears_it(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    await metadata_store.truncate_log(segments[:3], RESOURCE, REMOVER, epoch, 0)
    again = await open_metadata_store(metadata_store.url)
    try:
        log = await again.list_log("t", 0)
        assert log.log_start == 9 and [s.base_offset for s in log.segments] == [9, 10]
    finally:
        await again.close()
    await metadata_store.delete_topic("t")
    with pytest.raises(TopicNotFoundError):
        await metadata_store.list_log("t", 0)
    with pytest.raises(TopicNotFoundError):
        await metadata_store.partition_stats("t")
    await metadata_store.create_topic("t", 1)  # a re-created topic starts over
    assert (await metadata_store.list_log("t", 0)).log_start == 0


async def test_last_compacted_is_recorded_per_partition(metadata_store: MetadataStore) -> None:
    await setup(metadata_store)
    assert await metadata_store.set_last_compacted("t", 1, 1_234) == 1_234
    before = await metadata_store.now_ms()
    stamped = await metadata_store.set_last_compacted("t", 0)  # the database clock
    assert stamped >= before
    stats = await metadata_store.partition_stats("t")
    assert [s.last_compacted_ms for s in stats] == [stamped, 1_234]
    with pytest.raises(PartitionNotFoundError):
        await metadata_store.set_last_compacted("t", 2)
    with pytest.raises(TopicNotFoundError):
        await metadata_store.set_last_compacted("nope", 0)
    with pytest.raises(InvalidInputError):
        await metadata_store.set_last_compacted("t", 0, -5)


async def test_a_merge_of_truncated_rows_is_refused(metadata_store: MetadataStore) -> None:
    """Retention and the merger race over the same rows: whoever commits second changes nothing."""
    segments, epoch = await setup(metadata_store)
    merge = await metadata_store.acquire_lease("merge/t/0", "merger", 60_000)
    await metadata_store.truncate_log(segments[:2], RESOURCE, REMOVER, epoch, 0)
    new = dataclasses.replace(make_segment("t", 0, 0, 9, segments[0].epoch), object_key="merged")
    with pytest.raises(SegmentsChangedError):
        await metadata_store.replace_segments(segments[:3], new, "merge/t/0", "merger", merge.epoch, 0)
    assert [s.base_offset for s in (await metadata_store.list_log("t", 0)).segments] == [5, 9, 10]
