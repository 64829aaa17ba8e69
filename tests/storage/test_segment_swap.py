"""Segment swaps and deferred deletions (storage/metadata/swap.py): the MetadataStore contract over
SQLite and PostgreSQL — one transaction, fenced by the swapper's lease and by the rows it read."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from streamhouse.storage.errors import (
    FencedError,
    InvalidInputError,
    OffsetConflictError,
    SegmentsChangedError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.model import SegmentInfo
from tests.storage.test_metadata_contract import HOLDER, commit_run, make_segment, without_created_at

MERGER = "merger-1"
RESOURCE = "merge/t/0"


def merged(old: list[SegmentInfo], key: str = "merged-1") -> SegmentInfo:
    return dataclasses.replace(
        make_segment("t", 0, old[0].base_offset, old[-1].end_offset, old[0].epoch),
        object_key=key,
        size_bytes=sum(s.size_bytes for s in old),
        min_timestamp=min(s.min_timestamp for s in old),
        max_timestamp=max(s.max_timestamp for s in old),
    )


async def setup(store: MetadataStore) -> tuple[list[SegmentInfo], int]:
    await store.create_topic("t", 1)
    segments = await commit_run(store, "t", 0, [0, 3, 5, 9, 10, 14])
    lease = await store.acquire_lease(RESOURCE, MERGER, 60_000)
    return segments, lease.epoch


async def test_swap_replaces_the_run_and_records_the_old_objects(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    before = await metadata_store.now_ms()
    new = merged(segments[1:4])
    await metadata_store.replace_segments(segments[1:4], new, RESOURCE, MERGER, epoch, 60_000)
    listed = without_created_at(await metadata_store.list_segments("t", 0))
    assert listed == [segments[0], new, segments[4]]
    assert without_created_at(await metadata_store.list_segments("t", 0, 6, 7)) == [new]
    assert await metadata_store.get_end_offset("t", 0) == 14
    pending = await metadata_store.list_deletions()
    assert [d.object_key for d in pending] == sorted(s.object_key for s in segments[1:4])
    assert all(d.topic == "t" and d.partition == 0 and d.delete_after_ms >= before + 60_000 for d in pending)
    assert await metadata_store.due_deletions() == []  # the grace has not passed
    # A commit at the end still works after the swap (end offset and lease untouched).
    lease = await metadata_store.get_lease("partition/t/0")
    assert lease is not None
    await metadata_store.commit_segment(make_segment("t", 0, 14, 20, lease.epoch), HOLDER, lease.epoch)


async def test_due_deletions_after_the_grace_and_forget(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    await metadata_store.replace_segments(segments[:2], merged(segments[:2]), RESOURCE, MERGER, epoch, 0)
    await metadata_store.replace_segments(segments[2:], merged(segments[2:], "m2"), RESOURCE, MERGER, epoch, 3_600_000)
    await asyncio.sleep(0.01)
    due = await metadata_store.due_deletions()
    assert sorted(d.object_key for d in due) == sorted(s.object_key for s in segments[:2])
    assert len(await metadata_store.due_deletions(limit=1)) == 1
    await metadata_store.forget_deletions([due[0].object_key, "never-recorded"])
    assert [d.object_key for d in await metadata_store.due_deletions()] == [due[1].object_key]
    assert len(await metadata_store.list_deletions()) == 1 + 3


async def snapshot(store: MetadataStore) -> tuple[object, ...]:
    return (
        without_created_at(await store.list_segments("t", 0)),
        await store.list_deletions(),
        await store.get_end_offset("t", 0),
    )


async def test_a_fenced_swap_changes_nothing(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    before = await snapshot(metadata_store)
    with pytest.raises(FencedError, match="merge/t/0"):
        await metadata_store.replace_segments(segments[:2], merged(segments[:2]), RESOURCE, "other", epoch, 0)
    with pytest.raises(FencedError):
        await metadata_store.replace_segments(segments[:2], merged(segments[:2]), RESOURCE, MERGER, epoch + 1, 0)
    await metadata_store.release_lease(RESOURCE, MERGER, epoch)
    taken = await metadata_store.acquire_lease(RESOURCE, "merger-2", 60_000)
    assert taken.epoch == epoch + 1
    with pytest.raises(FencedError):  # the old holder, after a take-over
        await metadata_store.replace_segments(segments[:2], merged(segments[:2]), RESOURCE, MERGER, epoch, 0)
    assert await snapshot(metadata_store) == before


async def test_changed_rows_refuse_the_swap(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    first = merged(segments[1:3])
    await metadata_store.replace_segments(segments[1:3], first, RESOURCE, MERGER, epoch, 0)
    before = await snapshot(metadata_store)
    # A second planner that read the old rows: overlapping runs are refused, whole or in part.
    for old in (segments[1:3], segments[2:4], segments[0:2]):
        with pytest.raises(SegmentsChangedError, match="changed since they were read"):
            await metadata_store.replace_segments(old, merged(old, "late"), RESOURCE, MERGER, epoch, 0)
        assert issubclass(SegmentsChangedError, OffsetConflictError)
    # A row that differs in anything (here its size) is not the row that was read.
    stale = [segments[0], dataclasses.replace(first, size_bytes=first.size_bytes + 1)]
    with pytest.raises(SegmentsChangedError):
        await metadata_store.replace_segments(stale, merged(stale, "late"), RESOURCE, MERGER, epoch, 0)
    # Merging a run that does not cover every row overlapping it (only the second half of one).
    half = [dataclasses.replace(segments[3], base_offset=7, end_offset=9, object_key="x")]
    with pytest.raises(SegmentsChangedError):
        await metadata_store.replace_segments(half, merged(half, "late"), RESOURCE, MERGER, epoch, 0)
    assert await snapshot(metadata_store) == before


async def test_invalid_swaps_are_refused_before_the_store(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    cases = [
        ([], merged(segments[:1])),
        ([segments[0], segments[2]], merged([segments[0], segments[2]])),  # a gap
        (segments[:2], dataclasses.replace(merged(segments[:2]), end_offset=4)),  # other range
        (segments[:2], dataclasses.replace(merged(segments[:2]), object_key=segments[0].object_key)),
        (segments[:2], dataclasses.replace(merged(segments[:2]), epoch=segments[0].epoch + 1)),
    ]
    before = await snapshot(metadata_store)
    for old, new in cases:
        with pytest.raises(InvalidInputError):
            await metadata_store.replace_segments(old, new, RESOURCE, MERGER, epoch, 0)
    with pytest.raises(InvalidInputError, match="grace_ms"):
        await metadata_store.replace_segments(segments[:2], merged(segments[:2]), RESOURCE, MERGER, epoch, -1)
    assert await snapshot(metadata_store) == before
    await metadata_store.delete_topic("t")
    with pytest.raises(TopicNotFoundError):
        await metadata_store.replace_segments(segments[:2], merged(segments[:2]), RESOURCE, MERGER, epoch, 0)


async def test_producer_states_survive_a_swap(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    lease = await metadata_store.acquire_lease("partition/t/0", HOLDER, 60_000)
    states = [
        ProducerState(7, 0, (ProducerBatch(7, 0, 0, 2, 0, 3),)),
        ProducerState(8, 1, (ProducerBatch(8, 1, 0, 0, 3, 1),)),
    ]
    segments = [make_segment("t", 0, 0, 3, lease.epoch), make_segment("t", 0, 3, 4, lease.epoch)]
    await metadata_store.commit_segment(segments[0], HOLDER, lease.epoch, states[:1])
    await metadata_store.commit_segment(segments[1], HOLDER, lease.epoch, states[1:])
    epoch = (await metadata_store.acquire_lease(RESOURCE, MERGER, 60_000)).epoch
    await metadata_store.replace_segments(segments, merged(segments), RESOURCE, MERGER, epoch, 0)
    assert await metadata_store.get_producer_states("t", 0) == states


async def test_concurrent_swaps_of_one_run_let_exactly_one_win(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    results = await asyncio.gather(
        *(
            metadata_store.replace_segments(segments, merged(segments, f"m{i}"), RESOURCE, MERGER, epoch, 0)
            for i in range(4)
        ),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, SegmentsChangedError) for r in results if r is not None)
    listed = await metadata_store.list_segments("t", 0)
    assert len(listed) == 1 and listed[0].object_key.startswith("m")
    assert len(await metadata_store.list_deletions()) == len(segments)


async def test_deferred_among_names_the_recorded_keys(metadata_store: MetadataStore) -> None:
    segments, epoch = await setup(metadata_store)
    assert await metadata_store.deferred_among([]) == set()
    await metadata_store.replace_segments(segments[1:3], merged(segments[1:3]), RESOURCE, MERGER, epoch, 60_000)
    asked = [s.object_key for s in segments] + ["merged-1", "never-recorded"]
    assert await metadata_store.deferred_among(asked) == {s.object_key for s in segments[1:3]}
    many = [f"k{i}" for i in range(1_200)] + [segments[1].object_key]  # past SQLite's per-query limit
    assert await metadata_store.deferred_among(many) == {segments[1].object_key}
