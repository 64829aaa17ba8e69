"""The MetadataStore contract (storage/metadata/base.py), run against SQLite and PostgreSQL.

Fencing and leases under contention live in test_fencing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import sqlite3
import time
from pathlib import Path

import pytest

from streamhouse.storage.errors import (
    InvalidInputError,
    PartitionNotFoundError,
    StorageUnavailableError,
    TopicExistsError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.model import SegmentInfo, partition_resource

HOLDER = "agent-1"


def make_segment(topic: str, partition: int, base: int, end: int, epoch: int = 1) -> SegmentInfo:
    return SegmentInfo(
        topic=topic,
        partition=partition,
        base_offset=base,
        end_offset=end,
        min_timestamp=1_000 + base,
        max_timestamp=1_000 + end,
        size_bytes=100 * (end - base),
        object_key=f"p/topics/{topic}/{partition:05d}/{base:020d}-{epoch}.parquet",
        epoch=epoch,
        footer_length=321,
        footer_crc=0xFFFF_FFFF,
    )


async def commit_run(store: MetadataStore, topic: str, partition: int, bounds: list[int]) -> list[SegmentInfo]:
    """Lease the partition and commit segments [b0, b1), [b1, b2), …"""
    lease = await store.acquire_lease(partition_resource(topic, partition), HOLDER, 60_000)
    segments = [make_segment(topic, partition, a, b, lease.epoch) for a, b in itertools.pairwise(bounds)]
    for segment in segments:
        await store.commit_segment(segment, HOLDER, lease.epoch)
    return segments


def without_created_at(segments: list[SegmentInfo]) -> list[SegmentInfo]:
    return [dataclasses.replace(s, created_at_ms=0) for s in segments]


# -- topics -----------------------------------------------------------------------------------
async def test_create_get_list_topic(metadata_store: MetadataStore) -> None:
    schema = '{"columns": [{"name": "price", "type": "BIGINT"}]}'
    created = await metadata_store.create_topic("orders", 3, {"retention.ms": "86400000", "format": "json"}, schema)
    assert (created.name, created.partitions, created.value_schema) == ("orders", 3, schema)
    assert dict(created.config) == {"retention.ms": "86400000", "format": "json"}
    assert created.topic_id > 0
    assert await metadata_store.get_topic("orders") == created

    plain = await metadata_store.create_topic("audit.log_v2-x", 1)
    assert dict(plain.config) == {} and plain.value_schema is None
    assert plain.topic_id != created.topic_id
    assert [t.name for t in await metadata_store.list_topics()] == ["audit.log_v2-x", "orders"]


async def test_create_existing_topic_fails_and_keeps_the_original(metadata_store: MetadataStore) -> None:
    original = await metadata_store.create_topic("t", 2, {"a": "1"})
    with pytest.raises(TopicExistsError):
        await metadata_store.create_topic("t", 5)
    assert await metadata_store.get_topic("t") == original


async def test_missing_topic(metadata_store: MetadataStore) -> None:
    with pytest.raises(TopicNotFoundError):
        await metadata_store.get_topic("nope")
    with pytest.raises(TopicNotFoundError):
        await metadata_store.delete_topic("nope")
    with pytest.raises(TopicNotFoundError):
        await metadata_store.get_end_offset("nope", 0)
    with pytest.raises(TopicNotFoundError):
        await metadata_store.list_segments("nope", 0)
    with pytest.raises(TopicNotFoundError):
        await metadata_store.commit_segment(make_segment("nope", 0, 0, 1), HOLDER, 1)
    assert await metadata_store.list_topics() == []


BAD_NAMES: list[object] = ["", ".", "..", "a b", "a/b", "x" * 250, "ünï", "tab\t", None, 7]


async def test_invalid_topic_names(metadata_store: MetadataStore) -> None:
    for name in BAD_NAMES:
        with pytest.raises(InvalidInputError):
            await metadata_store.create_topic(name, 1)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await metadata_store.get_topic(name)  # type: ignore[arg-type]
    assert await metadata_store.list_topics() == []


async def test_longest_and_oddest_valid_names(metadata_store: MetadataStore) -> None:
    for name in ["x" * 249, "...", "_", "-a.B_9"]:
        assert (await metadata_store.create_topic(name, 1)).name == name


async def test_invalid_partition_counts(metadata_store: MetadataStore) -> None:
    for partitions in [0, -1, 10_001, True, "3", 2.0]:
        with pytest.raises(InvalidInputError):
            await metadata_store.create_topic("t", partitions)  # type: ignore[arg-type]


async def test_partition_count_limits(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("wide", 10_000)
    assert await metadata_store.get_end_offset("wide", 9_999) == 0


async def test_invalid_config(metadata_store: MetadataStore) -> None:
    for config in [{"a": 1}, {1: "a"}, {"a": None}, ["a"]]:
        with pytest.raises(InvalidInputError):
            await metadata_store.create_topic("t", 1, config)  # type: ignore[arg-type]
    assert await metadata_store.list_topics() == []


async def test_delete_topic_removes_everything_and_returns_segments(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 2)
    segments = await commit_run(metadata_store, "t", 1, [0, 5, 9]) + await commit_run(metadata_store, "t", 0, [0, 3])
    await metadata_store.commit_offsets("g", "t", {0: 3, 1: 9})

    deleted = await metadata_store.delete_topic("t")
    assert without_created_at(deleted) == sorted(segments, key=lambda s: (s.partition, s.base_offset))
    with pytest.raises(TopicNotFoundError):
        await metadata_store.get_topic("t")
    assert await metadata_store.fetch_offsets("g") == {}
    revoked = await metadata_store.get_lease(partition_resource("t", 0))
    assert revoked is not None and revoked.holder != HOLDER

    # Same name again: a new topic with nothing of the old one left, and epochs that keep
    # growing, so no segment object key of the old topic can be produced again.
    await metadata_store.create_topic("t", 2)
    assert await metadata_store.get_end_offset("t", 1) == 0
    assert await metadata_store.list_segments("t", 1) == []
    again = await metadata_store.acquire_lease(partition_resource("t", 0), HOLDER, 10_000)
    assert again.epoch > max(s.epoch for s in segments if s.partition == 0)


async def test_topic_ids_are_never_reused(metadata_store: MetadataStore) -> None:
    first = await metadata_store.create_topic("a", 1)
    with pytest.raises(TopicExistsError):
        await metadata_store.create_topic("a", 1)
    await metadata_store.delete_topic("a")
    again = await metadata_store.create_topic("a", 1)
    other = await metadata_store.create_topic("b", 1)
    assert len({first.topic_id, again.topic_id, other.topic_id}) == 3
    assert first.topic_id < again.topic_id < other.topic_id


# -- partitions and segments ------------------------------------------------------------------
async def test_end_offsets_start_at_zero(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 4)
    assert [await metadata_store.get_end_offset("t", p) for p in range(4)] == [0, 0, 0, 0]
    for bad in (-1, 4, 2**40):
        with pytest.raises(PartitionNotFoundError):
            await metadata_store.get_end_offset("t", bad)
        with pytest.raises(PartitionNotFoundError):
            await metadata_store.list_segments("t", bad)
        with pytest.raises(PartitionNotFoundError):
            await metadata_store.commit_segment(make_segment("t", bad, 0, 1), HOLDER, 1)


async def test_commit_and_list_segments(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 2)
    before = await metadata_store.now_ms()
    segments = await commit_run(metadata_store, "t", 1, [0, 10, 25, 26])
    assert await metadata_store.get_end_offset("t", 1) == 26
    assert await metadata_store.get_end_offset("t", 0) == 0
    listed = await metadata_store.list_segments("t", 1)
    assert without_created_at(listed) == segments
    assert all(before <= s.created_at_ms <= before + 60_000 for s in listed)
    assert listed[0].ref.footer_crc == 0xFFFF_FFFF
    assert await metadata_store.list_segments("t", 0) == []


# (start, end, base offsets of the segments expected) over segments [0,10) [10,25) [25,26).
RANGES: list[tuple[int, int | None, list[int]]] = [
    (0, None, [0, 10, 25]),
    (10, None, [10, 25]),
    (12, None, [10, 25]),
    (25, 26, [25]),
    (0, 10, [0]),
    (0, 11, [0, 10]),
    (9, 10, [0]),
    (24, 25, [10]),
    (26, None, []),
    (100, 200, []),
    (5, 5, []),
    (20, 3, []),
]


async def test_list_segments_range(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    await commit_run(metadata_store, "t", 0, [0, 10, 25, 26])
    for start, end, expected in RANGES:
        listed = await metadata_store.list_segments("t", 0, start, end)
        assert [s.base_offset for s in listed] == expected, (start, end)


async def test_invalid_segments_are_rejected_before_writing(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    lease = await metadata_store.acquire_lease(partition_resource("t", 0), HOLDER, 60_000)
    good = make_segment("t", 0, 0, 10, lease.epoch)
    bad = [
        dataclasses.replace(good, end_offset=0),  # empty
        dataclasses.replace(good, base_offset=-1),
        dataclasses.replace(good, epoch=lease.epoch + 1),  # names another epoch than it commits under
        dataclasses.replace(good, min_timestamp=5_000, max_timestamp=4_000),
        dataclasses.replace(good, footer_crc=2**32),
        dataclasses.replace(good, object_key=""),
        dataclasses.replace(good, topic="bad name"),
    ]
    for segment in bad:
        with pytest.raises(InvalidInputError):
            await metadata_store.commit_segment(segment, HOLDER, lease.epoch)
    with pytest.raises(InvalidInputError):
        await metadata_store.list_segments("t", 0, -1)
    assert await metadata_store.list_segments("t", 0) == []
    await metadata_store.commit_segment(good, HOLDER, lease.epoch)
    assert await metadata_store.get_end_offset("t", 0) == 10


# -- consumer offsets ---------------------------------------------------------------------------
async def test_consumer_offsets(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("a", 3)
    await metadata_store.create_topic("b", 1)
    assert await metadata_store.fetch_offsets("g1") == {}
    assert await metadata_store.list_groups() == []

    await metadata_store.commit_offsets("g1", "a", {0: 5, 2: 7})
    await metadata_store.commit_offsets("g1", "b", {0: 1})
    await metadata_store.commit_offsets("g2", "a", {1: 3})
    await metadata_store.commit_offsets("g1", "a", {0: 6})  # overwrite, and moving back is allowed
    await metadata_store.commit_offsets("g1", "a", {2: 0})
    await metadata_store.commit_offsets("g1", "a", {})

    assert await metadata_store.fetch_offsets("g1") == {("a", 0): 6, ("a", 2): 0, ("b", 0): 1}
    assert await metadata_store.fetch_offsets("g1", "b") == {("b", 0): 1}
    assert await metadata_store.fetch_offsets("g2") == {("a", 1): 3}
    assert await metadata_store.fetch_offsets("g1", "zzz") == {}
    assert await metadata_store.list_groups() == ["g1", "g2"]

    await metadata_store.delete_group("g1", "a")
    assert await metadata_store.fetch_offsets("g1") == {("b", 0): 1}
    await metadata_store.delete_group("g1")
    await metadata_store.delete_group("never-existed")
    assert await metadata_store.list_groups() == ["g2"]
    assert await metadata_store.fetch_offsets("g1") == {}


async def test_consumer_offset_errors(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("a", 2)
    with pytest.raises(TopicNotFoundError):
        await metadata_store.commit_offsets("g", "missing", {0: 1})
    with pytest.raises(TopicNotFoundError):
        await metadata_store.commit_offsets("g", "missing", {})
    with pytest.raises(PartitionNotFoundError):
        await metadata_store.commit_offsets("g", "a", {0: 1, 2: 1})
    with pytest.raises(InvalidInputError):
        await metadata_store.commit_offsets("g", "a", {0: -1})
    with pytest.raises(InvalidInputError):
        await metadata_store.commit_offsets("", "a", {0: 1})
    # A rejected commit stores nothing, not even its valid part.
    assert await metadata_store.fetch_offsets("g") == {}


# -- clock, migrations, lifecycle ---------------------------------------------------------------
async def test_now_ms_is_sane_and_monotone(metadata_store: MetadataStore) -> None:
    readings = [await metadata_store.now_ms() for _ in range(20)]
    assert abs(readings[0] - time.time() * 1000) < 60_000
    assert readings == sorted(readings)
    await asyncio.sleep(0.05)
    assert await metadata_store.now_ms() - readings[-1] >= 40


async def test_migrations_are_idempotent(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("kept", 2)
    again = await open_metadata_store(metadata_store.url)
    third = await open_metadata_store(metadata_store.url)
    try:
        assert [t.name for t in await again.list_topics()] == ["kept"]
        assert (await third.create_topic("more", 1)).topic_id > (await again.get_topic("kept")).topic_id
        assert [t.name for t in await metadata_store.list_topics()] == ["kept", "more"]
    finally:
        await again.close()
        await third.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    await (await open_metadata_store(url)).close()
    with contextlib.closing(sqlite3.connect(tmp_path / "meta.db")) as conn, conn:
        conn.execute("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (9999, 'future', 0)")
    with pytest.raises(StorageUnavailableError, match="9999"):
        await open_metadata_store(url)


async def test_closed_store_is_unavailable(metadata_store: MetadataStore) -> None:
    other = await open_metadata_store(metadata_store.url)
    await other.close()
    await other.close()  # closing twice is harmless
    with pytest.raises(StorageUnavailableError):
        await other.list_topics()


async def test_sqlite_urls(tmp_path_factory: pytest.TempPathFactory) -> None:
    memory = await open_metadata_store("sqlite://:memory:")
    try:
        await memory.create_topic("t", 1)
        assert [t.name for t in await memory.list_topics()] == ["t"]
    finally:
        await memory.close()
    nested = tmp_path_factory.mktemp("meta") / "a" / "b" / "meta.db"
    store = await open_metadata_store(f"sqlite:///{nested}")
    await store.close()
    assert nested.exists()
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/x.db", "mysql://x"):
        with pytest.raises(InvalidInputError):
            await open_metadata_store(bad)


async def test_unreachable_postgres_is_unavailable() -> None:
    with pytest.raises(StorageUnavailableError):
        await open_metadata_store("postgresql://postgres@127.0.0.1:1/none")
