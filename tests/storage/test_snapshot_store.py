"""MetadataStore.export_tables / import_tables (storage/metadata/snapshot.py), the contract on
SQLite and PostgreSQL: what one store exports another, empty one imports, and every read of the
metadata gives the same answers; a non-empty store, an unknown column and a bad row change
nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from pathlib import Path

import asyncpg
import pytest

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.metadata.snapshot import MetadataNotEmptyError, SnapshotSchemaError, Table
from streamhouse.storage.model import Checkpoint, job_resource, partition_resource
from streamhouse.storage.schemas.registry import SchemaText
from tests.storage.test_metadata_contract import HOLDER, commit_run, make_segment


async def fill(store: MetadataStore) -> None:
    """A bit of every kind of row: topics, segments, producer states, groups, a job with a
    checkpoint, the registry, a deferred deletion, leases."""
    await store.create_topic("t", 2, {"retention.ms": "1000"}, value_schema=None)
    await store.create_topic("out", 1)
    segments = await commit_run(store, "t", 0, [0, 5, 9])
    lease = await store.acquire_lease(partition_resource("t", 1), HOLDER, 60_000)
    state = ProducerState(7, 1, (ProducerBatch(7, 1, 0, 2, 0, 3),))
    await store.commit_segment(make_segment("t", 1, 0, 3, lease.epoch), HOLDER, lease.epoch, [state])
    await store.commit_offsets("billing", "t", {0: 4, 1: 2})
    await store.create_job("view", "SELECT 1", "out", {"emit": "final"})
    job = await store.acquire_lease(job_resource("view"), HOLDER, 60_000)
    segment = make_segment("out", 0, 0, 2, job.epoch)
    await store.commit_checkpoint(Checkpoint("view", 1, "jobs/view/s-1", {("t", 0): 9}, (segment,)), HOLDER, job.epoch)
    await store.registry_register("t-value", SchemaText("AVRO", '{"type":"string"}'), None)
    await store.registry_set_setting("compatibility", "", "FULL")
    merged = make_segment("t", 0, 0, 9, segments[0].epoch)
    merged = type(merged)(**{**merged.__dict__, "object_key": merged.object_key + ".merged"})
    await store.replace_segments(segments, merged, partition_resource("t", 0), HOLDER, segments[0].epoch, 60_000)


async def reads(store: MetadataStore) -> tuple[object, ...]:
    return (
        await store.list_topics(),
        [await store.list_segments(t, p) for t, p in (("t", 0), ("t", 1), ("out", 0))],
        [await store.get_end_offset(t, p) for t, p in (("t", 0), ("t", 1), ("out", 0))],
        await store.get_producer_states("t", 1),
        await store.fetch_offsets("billing"),
        await store.list_jobs(),
        await store.latest_checkpoint("view"),
        await store.registry_versions("t-value"),
        await store.registry_schema(1),
        await store.registry_setting("compatibility", ""),
        await store.list_deletions(),
    )


async def other_store(metadata_store: MetadataStore, tmp_path: Path, request: pytest.FixtureRequest) -> MetadataStore:
    """A second empty store of the same backend (PostgreSQL: a database of its own, dropped
    when the test ends)."""
    if metadata_store.url.startswith("sqlite"):
        return await open_metadata_store(f"sqlite:///{tmp_path / 'other.db'}")
    server: str = request.getfixturevalue("postgres_server")
    name = f"snap_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    def drop() -> None:
        async def run() -> None:
            conn = await asyncpg.connect(server)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()

    request.addfinalizer(drop)
    return await open_metadata_store(server.rsplit("/", 1)[0] + f"/{name}")


async def test_an_export_imported_into_an_empty_store_reads_the_same(
    metadata_store: MetadataStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    await fill(metadata_store)
    dump = await metadata_store.export_tables()
    assert dump.taken_ms <= await metadata_store.now_ms()
    assert dump.schema_version >= 6
    counts = dump.row_counts()
    assert "schema_migrations" not in counts
    assert counts["topics"] == 2 and counts["segments"] == 3 and counts["consumer_offsets"] == 2
    partitions = dump.table("partitions")
    assert partitions is not None and "log_start_offset" in partitions.columns  # SELECT *: new columns travel

    target = await other_store(metadata_store, tmp_path, request)
    try:
        await target.import_tables(dump.tables)
        assert await reads(target) == await reads(metadata_store)
        # Counters continue where the source's were: the next ids are new ones.
        assert await target.allocate_producer_id() == await metadata_store.allocate_producer_id()
        topic = await target.create_topic("later", 1)
        assert topic.topic_id == 3
        # Leases came along (recovery expires them; the store imports what it is given).
        lease = await target.get_lease(partition_resource("t", 1))
        assert lease is not None and lease.holder == HOLDER
    finally:
        await target.close()


async def test_a_non_empty_store_is_refused_and_left_unchanged(
    metadata_store: MetadataStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    await fill(metadata_store)
    dump = await metadata_store.export_tables()
    before = await reads(metadata_store)
    with pytest.raises(MetadataNotEmptyError, match=r"not empty \(.*topics: 2 rows") as info:
        await metadata_store.import_tables(dump.tables)
    assert "--metadata" in str(info.value)
    assert await reads(metadata_store) == before

    target = await other_store(metadata_store, tmp_path, request)
    try:
        await target.create_topic("x", 1)
        await target.delete_topic("x")  # counters moved, no rows left: empty again
        await target.import_tables(dump.tables)
        assert (await target.create_topic("y", 1)).topic_id == 3  # the larger counter wins
    finally:
        await target.close()


async def test_unknown_tables_and_columns_and_bad_rows_change_nothing(
    metadata_store: MetadataStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(SnapshotSchemaError, match="'nope'"):
        await metadata_store.import_tables([Table("nope", ("a",), ((1,),))])
    with pytest.raises(SnapshotSchemaError, match=r"columns \['colour'\]"):
        await metadata_store.import_tables([Table("topics", ("name", "colour"), (("t", "red"),))])
    # A row its foreign key refuses (a partition of a topic that is not there): nothing stays.
    rows = [
        Table("topics", ("name", "topic_id", "partitions", "config", "created_at_ms"), (("a", 1, 1, "{}", 0),)),
        Table("partitions", ("topic", "partition_id"), (("a", 0), ("ghost", 0))),
    ]
    with pytest.raises(InvalidInputError, match="refused"):
        await metadata_store.import_tables(rows)
    assert await metadata_store.list_topics() == []
    # Columns a Table leaves out take their defaults.
    await metadata_store.import_tables([rows[0], Table("partitions", ("topic", "partition_id"), (("a", 0),))])
    assert await metadata_store.get_end_offset("a", 0) == 0
