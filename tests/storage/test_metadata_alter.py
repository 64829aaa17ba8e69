"""MetadataStore.alter_topic (storage/metadata/base.py), run against SQLite and PostgreSQL: config
keys set and removed, partitions added atomically, and a refused change changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from streamhouse.storage.errors import (
    InvalidInputError,
    PartitionCountError,
    PartitionNotFoundError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.common import MAX_PARTITIONS
from streamhouse.storage.model import partition_resource
from tests.storage.test_metadata_contract import HOLDER, commit_run, make_segment


async def test_set_and_reset_config_keys(metadata_store: MetadataStore) -> None:
    created = await metadata_store.create_topic("t", 2, {"a": "1", "b": "2"}, '{"columns": []}')
    altered = await metadata_store.alter_topic("t", {"b": "20", "c": "3"}, ["a", "absent"])
    assert dict(altered.config) == {"b": "20", "c": "3"}
    assert (altered.topic_id, altered.partitions, altered.value_schema) == (created.topic_id, 2, '{"columns": []}')
    assert await metadata_store.get_topic("t") == altered
    assert dict((await metadata_store.alter_topic("t", reset=["b", "c"])).config) == {}


async def test_added_partitions_start_empty_and_take_segments(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 2)
    await commit_run(metadata_store, "t", 0, [0, 5])
    altered = await metadata_store.alter_topic("t", add_partitions=3)
    assert altered.partitions == 5 and (await metadata_store.get_topic("t")).partitions == 5
    assert [await metadata_store.get_end_offset("t", p) for p in range(5)] == [5, 0, 0, 0, 0]
    assert await metadata_store.list_segments("t", 4) == []
    segments = await commit_run(metadata_store, "t", 4, [0, 3, 7])
    assert await metadata_store.get_end_offset("t", 4) == 7
    assert [s.end_offset for s in await metadata_store.list_segments("t", 4)] == [s.end_offset for s in segments]
    await metadata_store.commit_offsets("g", "t", {4: 2})
    assert await metadata_store.fetch_offsets("g", "t") == {("t", 4): 2}
    with pytest.raises(PartitionNotFoundError):
        await metadata_store.get_end_offset("t", 5)
    # The existing partition's data is untouched.
    assert [s.end_offset for s in await metadata_store.list_segments("t", 0)] == [5]
    # Deleting the grown topic removes every partition, old and new.
    deleted = await metadata_store.delete_topic("t")
    assert {(s.partition, s.end_offset) for s in deleted} == {(0, 5), (4, 3), (4, 7)}
    assert (await metadata_store.create_topic("t", 1)).partitions == 1


async def test_concurrent_additions_both_count(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    results = await asyncio.gather(*(metadata_store.alter_topic("t", add_partitions=2) for _ in range(4)))
    assert sorted(r.partitions for r in results) == [3, 5, 7, 9]
    assert (await metadata_store.get_topic("t")).partitions == 9
    assert await metadata_store.get_end_offset("t", 8) == 0


async def test_a_refused_alter_changes_nothing(metadata_store: MetadataStore) -> None:
    before = await metadata_store.create_topic("t", 3, {"a": "1"})
    bad: list[tuple[object, object, object, object]] = [
        ("t", {"a": 2}, [], 0),  # value not a string
        ("t", {"a": "2"}, ["a"], 0),  # both set and reset
        ("t", None, "a", 0),  # reset as a string
        ("t", None, [7], 0),
        ("t", {"a": "2"}, [], -1),
        ("t", {"a": "2"}, [], True),
        ("t", {"a": "2"}, [], MAX_PARTITIONS + 1),
        ("bad name", {"a": "2"}, [], 0),
    ]
    for name, set_config, reset, add in bad:
        with pytest.raises(InvalidInputError):
            await metadata_store.alter_topic(name, set_config, reset, add)  # type: ignore[arg-type]
    with pytest.raises(PartitionCountError, match=f"limit of {MAX_PARTITIONS}"):
        await metadata_store.alter_topic("t", {"a": "2"}, [], MAX_PARTITIONS - 2)
    assert await metadata_store.get_topic("t") == before
    with pytest.raises(PartitionNotFoundError):
        await metadata_store.get_end_offset("t", 3)
    with pytest.raises(TopicNotFoundError):
        await metadata_store.alter_topic("nope", {"a": "1"})


async def test_a_lease_of_a_new_partition_is_taken_like_any_other(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    await metadata_store.alter_topic("t", add_partitions=1)
    lease = await metadata_store.acquire_lease(partition_resource("t", 1), HOLDER, 60_000)
    await metadata_store.commit_segment(make_segment("t", 1, 0, 4, lease.epoch), HOLDER, lease.epoch)
    assert await metadata_store.get_end_offset("t", 1) == 4
