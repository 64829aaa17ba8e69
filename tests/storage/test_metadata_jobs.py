"""Continuous-query job metadata (docs/DESIGN.md §8) on SQLite and PostgreSQL: jobs, their leases and the
exactly-once checkpoint transaction (output segments + source offsets + state pointer together).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import asyncpg
import pytest

from streamhouse.storage.errors import (
    AlreadyExistsError,
    FencedError,
    InvalidInputError,
    JobExistsError,
    JobNotFoundError,
    NotFoundError,
    OffsetConflictError,
    PartitionNotFoundError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.common import CHECKPOINT_HISTORY
from streamhouse.storage.metadata.migrate import SCHEMA_MIGRATIONS_DDL, all_migrations
from streamhouse.storage.model import Checkpoint, Lease, SegmentInfo, job_resource, partition_resource
from tests.storage.test_metadata_contract import BAD_NAMES, make_segment, without_created_at

JOB = "clicks_per_minute"
SQL = "SELECT window_start, count(*) FROM clicks GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)"
OUT = "clicks_per_minute"  # a materialized view's job and output topic share the name
SRC = "clicks"
LONG_TTL = 60_000


@contextlib.asynccontextmanager
async def others(store: MetadataStore, count: int) -> AsyncIterator[list[MetadataStore]]:
    """`count` more stores on the same database, each with its own connection(s)."""
    opened = await asyncio.gather(*(open_metadata_store(store.url) for _ in range(count)))
    try:
        yield list(opened)
    finally:
        await asyncio.gather(*(s.close() for s in opened))


async def setup_job(store: MetadataStore, holder: str = "runner-1", ttl_ms: int = LONG_TTL) -> Lease:
    """Source topic (3 partitions), output topic (2 partitions), the job, and its lease."""
    await store.create_topic(SRC, 3)
    await store.create_topic(OUT, 2)
    await store.create_job(JOB, SQL, OUT, {"emit": "final"})
    return await store.acquire_lease(job_resource(JOB), holder, ttl_ms)


def checkpoint(
    seq: int,
    epoch: int,
    runs: Mapping[int, list[int]] | None = None,
    sources: Mapping[tuple[str, int], int] | None = None,
    state_key: str | None = "state",
    stats: Mapping[str, int | float | str] | None = None,
) -> Checkpoint:
    """Checkpoint `seq` writing, for each output partition p, segments between runs[p]'s bounds."""
    segments: list[SegmentInfo] = []
    for partition, bounds in (runs or {}).items():
        segments += [make_segment(OUT, partition, a, b, epoch) for a, b in itertools.pairwise(bounds)]
    return Checkpoint(
        job=JOB,
        seq=seq,
        state_key=None if state_key is None else f"jobs/{JOB}/{state_key}-{seq}",
        source_offsets=dict(sources or {}),
        output_segments=tuple(segments),
        stats=dict(stats or {}),
    )


async def snapshot(store: MetadataStore) -> tuple[object, ...]:
    """Everything a checkpoint can change, to assert that a rejected one changed nothing."""
    return (
        [without_created_at(await store.list_segments(OUT, p)) for p in range(2)],
        [await store.get_end_offset(OUT, p) for p in range(2)],
        await store.latest_checkpoint(JOB),
        await store.get_job(JOB),
    )


# -- jobs ---------------------------------------------------------------------------------------
async def test_create_get_list_jobs(metadata_store: MetadataStore) -> None:
    before = await metadata_store.now_ms()
    created = await metadata_store.create_job(JOB, SQL, OUT, {"emit": "final", "dead_letter": "late"})
    assert (created.name, created.sql, created.output_topic) == (JOB, SQL, OUT)
    assert dict(created.options) == {"emit": "final", "dead_letter": "late"}
    assert created.job_id > 0
    assert before <= created.created_at_ms <= before + 60_000
    assert await metadata_store.get_job(JOB) == created

    plain = await metadata_store.create_job("a.job-2_x", "SELECT 1", "elsewhere")
    assert dict(plain.options) == {}
    assert plain.job_id != created.job_id
    assert [j.name for j in await metadata_store.list_jobs()] == ["a.job-2_x", JOB]
    # Jobs and topics are separate namespaces, and the output topic need not exist yet.
    assert await metadata_store.list_topics() == []
    assert await metadata_store.latest_checkpoint(JOB) is None


async def test_job_errors(metadata_store: MetadataStore) -> None:
    original = await metadata_store.create_job(JOB, SQL, OUT)
    with pytest.raises(JobExistsError) as exists:
        await metadata_store.create_job(JOB, "SELECT 2", "other")
    assert isinstance(exists.value, AlreadyExistsError) and exists.value.job == JOB
    assert await metadata_store.list_jobs() == [original]

    for call in (
        metadata_store.get_job("nope"),
        metadata_store.delete_job("nope"),
        metadata_store.latest_checkpoint("nope"),
        metadata_store.commit_checkpoint(Checkpoint("nope", 1, None), "h", 1),
    ):
        with pytest.raises(JobNotFoundError) as missing:
            await call
        assert isinstance(missing.value, NotFoundError) and missing.value.job == "nope"


async def test_invalid_jobs_are_rejected(metadata_store: MetadataStore) -> None:
    for name in BAD_NAMES:
        with pytest.raises(InvalidInputError):
            await metadata_store.create_job(name, SQL, OUT)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await metadata_store.get_job(name)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await metadata_store.create_job(JOB, SQL, name)  # type: ignore[arg-type]
    for sql in ["", None, 7, "SELECT '\x00'", "SELECT '\ud800'", "x" * 1_000_001]:
        with pytest.raises(InvalidInputError):
            await metadata_store.create_job(JOB, sql, OUT)  # type: ignore[arg-type]
    for options in [{"a": 1}, {1: "a"}, ["a"]]:
        with pytest.raises(InvalidInputError):
            await metadata_store.create_job(JOB, SQL, OUT, options)  # type: ignore[arg-type]
    assert await metadata_store.list_jobs() == []
    # Odd but valid: unicode and quotes in the query text survive the round trip.
    odd = await metadata_store.create_job(JOB, "SELECT 'ünï ''q'' ; --' AS x", OUT)
    assert (await metadata_store.get_job(JOB)).sql == odd.sql


async def test_job_ids_are_never_reused(metadata_store: MetadataStore) -> None:
    first = await metadata_store.create_job("a", SQL, OUT)
    with pytest.raises(JobExistsError):
        await metadata_store.create_job("a", SQL, OUT)
    await metadata_store.delete_job("a")
    again = await metadata_store.create_job("a", SQL, OUT)
    other = await metadata_store.create_job("b", SQL, OUT)
    assert first.job_id < again.job_id < other.job_id


# -- checkpoints --------------------------------------------------------------------------------
async def test_checkpoint_commits_segments_offsets_and_state_together(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    before = await metadata_store.now_ms()
    first = checkpoint(
        1,
        lease.epoch,
        runs={1: [0, 4], 0: [0, 10, 15]},  # several partitions, several segments for one
        sources={(SRC, 0): 100, (SRC, 2): 7},
        stats={"rows_in": 107, "late_rows": 0, "watermark_lag_s": 1.5, "phase": "running"},
    )
    await metadata_store.commit_checkpoint(first, lease.holder, lease.epoch)

    assert without_created_at(await metadata_store.list_segments(OUT, 0)) == list(first.output_segments[1:])
    assert without_created_at(await metadata_store.list_segments(OUT, 1)) == [first.output_segments[0]]
    assert [await metadata_store.get_end_offset(OUT, p) for p in range(2)] == [15, 4]
    latest = await metadata_store.latest_checkpoint(JOB)
    assert latest is not None
    assert before <= latest.created_at_ms <= before + 60_000
    assert latest == dataclasses.replace(first, output_segments=(), created_at_ms=latest.created_at_ms)
    assert type(latest.stats["rows_in"]) is int and type(latest.stats["watermark_lag_s"]) is float

    # The next checkpoint moves one more partition and one again; the others keep theirs. It may
    # carry no state pointer and no output at all.
    second = checkpoint(2, lease.epoch, sources={(SRC, 1): 5, (SRC, 0): 120}, state_key=None)
    await metadata_store.commit_checkpoint(second, lease.holder, lease.epoch)
    latest = await metadata_store.latest_checkpoint(JOB)
    assert latest is not None and (latest.seq, latest.state_key, dict(latest.stats)) == (2, None, {})
    assert dict(latest.source_offsets) == {(SRC, 0): 120, (SRC, 1): 5, (SRC, 2): 7}
    assert [await metadata_store.get_end_offset(OUT, p) for p in range(2)] == [15, 4]

    # Producers and other readers see the job's output like any other segments.
    third = checkpoint(3, lease.epoch, runs={0: [15, 20]})
    await metadata_store.commit_checkpoint(third, lease.holder, lease.epoch)
    assert [s.base_offset for s in await metadata_store.list_segments(OUT, 0, 12)] == [10, 15]


async def test_stale_epoch_is_fenced_and_changes_nothing(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic(SRC, 3)
    await metadata_store.create_topic(OUT, 2)
    await metadata_store.create_job(JOB, SQL, OUT)
    resource = job_resource(JOB)

    # Never leased: nobody may checkpoint.
    with pytest.raises(FencedError):
        await metadata_store.commit_checkpoint(checkpoint(1, 1, runs={0: [0, 5]}), "a", 1)

    old = await metadata_store.acquire_lease(resource, "a", 200)
    await metadata_store.commit_checkpoint(checkpoint(1, old.epoch, {0: [0, 5]}, {(SRC, 0): 5}), "a", old.epoch)
    await asyncio.sleep(0.3)
    new = await metadata_store.acquire_lease(resource, "b", LONG_TTL)
    assert new.epoch == old.epoch + 1
    before = await snapshot(metadata_store)

    stale = checkpoint(2, old.epoch, runs={0: [5, 9], 1: [0, 3]}, sources={(SRC, 0): 9})
    with pytest.raises(FencedError):
        await metadata_store.commit_checkpoint(stale, "a", old.epoch)
    # The right epoch under the wrong name is fenced too.
    with pytest.raises(FencedError):
        await metadata_store.commit_checkpoint(checkpoint(2, new.epoch, {0: [5, 9]}), "a", new.epoch)
    assert await snapshot(metadata_store) == before

    # The new runner carries on from the last checkpoint.
    await metadata_store.commit_checkpoint(checkpoint(2, new.epoch, {0: [5, 9]}, {(SRC, 0): 9}), "b", new.epoch)
    assert [s.epoch for s in await metadata_store.list_segments(OUT, 0)] == [old.epoch, new.epoch]


async def test_out_of_sequence_checkpoint_changes_nothing(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    holder, epoch = lease.holder, lease.epoch
    with pytest.raises(OffsetConflictError, match="expected checkpoint 1"):
        await metadata_store.commit_checkpoint(checkpoint(2, epoch, {0: [0, 5]}), holder, epoch)
    assert await metadata_store.latest_checkpoint(JOB) is None

    await metadata_store.commit_checkpoint(checkpoint(1, epoch, {0: [0, 5]}, {(SRC, 0): 5}), holder, epoch)
    before = await snapshot(metadata_store)
    for seq in (1, 3, 100):  # a replay, a gap, garbage
        with pytest.raises(OffsetConflictError, match="expected checkpoint 2"):
            await metadata_store.commit_checkpoint(
                checkpoint(seq, epoch, {0: [5, 8]}, {(SRC, 0): 8, (SRC, 1): 1}), holder, epoch
            )
        assert await snapshot(metadata_store) == before


async def test_output_base_offset_conflict_changes_nothing(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    holder, epoch = lease.holder, lease.epoch
    await metadata_store.commit_checkpoint(checkpoint(1, epoch, {0: [0, 5], 1: [0, 2]}), holder, epoch)
    before = await snapshot(metadata_store)

    # Partition 0 is right and is written first; partition 1 is behind. Nothing may stick.
    bad = checkpoint(2, epoch, runs={0: [5, 9], 1: [1, 4]}, sources={(SRC, 0): 1})
    with pytest.raises(OffsetConflictError) as conflict:
        await metadata_store.commit_checkpoint(bad, holder, epoch)
    message = str(conflict.value)
    assert f"{OUT!r}/1" in message and "starts at 1" in message and "end offset is 2" in message
    assert await snapshot(metadata_store) == before

    # Someone else wrote into the output partition meanwhile (under the partition's lease):
    # the job's view of the end is stale, so its checkpoint must not land.
    producer = await metadata_store.acquire_lease(partition_resource(OUT, 0), "producer", LONG_TTL)
    await metadata_store.commit_segment(make_segment(OUT, 0, 5, 6, producer.epoch), "producer", producer.epoch)
    before = await snapshot(metadata_store)
    with pytest.raises(OffsetConflictError):
        await metadata_store.commit_checkpoint(checkpoint(2, epoch, {0: [5, 9]}), holder, epoch)
    assert await snapshot(metadata_store) == before
    await metadata_store.commit_checkpoint(checkpoint(2, epoch, {0: [6, 9]}), holder, epoch)
    assert await metadata_store.get_end_offset(OUT, 0) == 9


async def test_missing_topics_and_partitions_change_nothing(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    holder, epoch = lease.holder, lease.epoch
    before = await snapshot(metadata_store)
    good = checkpoint(1, epoch, runs={0: [0, 5]}, sources={(SRC, 0): 5})
    cases: list[tuple[type[Exception], Checkpoint]] = [
        (PartitionNotFoundError, checkpoint(1, epoch, runs={0: [0, 5], 2: [0, 1]})),
        (PartitionNotFoundError, dataclasses.replace(good, source_offsets={(SRC, 0): 5, (SRC, 3): 1})),
        (TopicNotFoundError, dataclasses.replace(good, source_offsets={(SRC, 0): 5, ("gone", 0): 1})),
        (
            TopicNotFoundError,
            dataclasses.replace(good, output_segments=(*good.output_segments, make_segment("gone", 0, 0, 1, epoch))),
        ),
    ]
    for error, bad in cases:
        with pytest.raises(error):
            await metadata_store.commit_checkpoint(bad, holder, epoch)
        assert await snapshot(metadata_store) == before
    await metadata_store.commit_checkpoint(good, holder, epoch)


async def test_invalid_checkpoints_are_rejected_before_writing(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    holder, epoch = lease.holder, lease.epoch
    good = checkpoint(1, epoch, runs={0: [0, 5, 9]}, sources={(SRC, 0): 5}, stats={"n": 1})
    first, second = good.output_segments
    bad: list[Checkpoint] = [
        dataclasses.replace(good, seq=0),
        dataclasses.replace(good, seq=True),
        dataclasses.replace(good, job="bad name"),
        dataclasses.replace(good, state_key=""),
        dataclasses.replace(good, state_key="a\x00b"),
        dataclasses.replace(good, output_segments=(second, first)),  # descending
        dataclasses.replace(good, output_segments=(first, dataclasses.replace(second, base_offset=6))),  # gap
        dataclasses.replace(good, output_segments=(first, first)),  # overlap
        dataclasses.replace(good, output_segments=(dataclasses.replace(first, epoch=epoch + 1),)),
        dataclasses.replace(good, output_segments=("segment",)),  # type: ignore[arg-type]
        dataclasses.replace(good, source_offsets={(SRC, 0): -1}),
        dataclasses.replace(good, source_offsets={SRC: 1}),  # type: ignore[dict-item]
        dataclasses.replace(good, source_offsets={("bad name", 0): 1}),
        dataclasses.replace(good, source_offsets={(SRC, "0"): 1}),  # type: ignore[dict-item]
        dataclasses.replace(good, stats={"flag": True}),
        dataclasses.replace(good, stats={"lag": math.nan}),
        dataclasses.replace(good, stats={"lag": math.inf}),
        dataclasses.replace(good, stats={"list": [1]}),  # type: ignore[dict-item]
        dataclasses.replace(good, stats={1: 1}),  # type: ignore[dict-item]
    ]
    for candidate in bad:
        with pytest.raises(InvalidInputError):
            await metadata_store.commit_checkpoint(candidate, holder, epoch)
    for holder_arg, epoch_arg in (("", epoch), (holder, 0), (holder, True)):
        with pytest.raises(InvalidInputError):
            await metadata_store.commit_checkpoint(good, holder_arg, epoch_arg)
    assert await metadata_store.latest_checkpoint(JOB) is None
    assert await metadata_store.list_segments(OUT, 0) == []
    await metadata_store.commit_checkpoint(good, holder, epoch)


async def test_concurrent_commits_of_one_seq_exactly_one_wins(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    holder, epoch = lease.holder, lease.epoch
    async with others(metadata_store, 2) as (a, b):
        end = 0
        for seq in range(1, 6):
            # Two incarnations of one runner (same holder and epoch, separate connections) race
            # with different output for the same checkpoint.
            mine = checkpoint(seq, epoch, runs={0: [end, end + 3]}, sources={(SRC, 0): seq}, state_key="a")
            theirs = checkpoint(seq, epoch, runs={0: [end, end + 5], 1: [0, 1]} if seq == 1 else {0: [end, end + 5]})
            theirs = dataclasses.replace(theirs, source_offsets={(SRC, 1): seq}, state_key=f"b-{seq}")
            results = await asyncio.gather(
                a.commit_checkpoint(mine, holder, epoch),
                b.commit_checkpoint(theirs, holder, epoch),
                return_exceptions=True,
            )
            winners = [r is None for r in results]
            assert sorted(winners) == [False, True], results
            loser = results[winners.index(False)]
            assert isinstance(loser, OffsetConflictError), loser
            won = mine if winners[0] else theirs

            latest = await metadata_store.latest_checkpoint(JOB)
            assert latest is not None and (latest.seq, latest.state_key) == (seq, won.state_key)
            end = won.output_segments[0].end_offset
            assert await metadata_store.get_end_offset(OUT, 0) == end
        # The log stayed contiguous: every winner's segments and no loser's.
        bases = [(s.base_offset, s.end_offset) for s in await metadata_store.list_segments(OUT, 0)]
        assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(bases)) and bases[-1][1] == end


async def test_takeover_waits_for_or_fences_a_checkpoint_in_flight(metadata_store: MetadataStore) -> None:
    # A checkpoint racing with a takeover either commits before it (and the new runner resumes
    # from it) or is fenced; it never lands under an epoch that is no longer current.
    await setup_job(metadata_store, holder="old", ttl_ms=1)
    old = await metadata_store.get_lease(job_resource(JOB))
    assert old is not None
    await asyncio.sleep(0.01)
    async with others(metadata_store, 2) as (a, b):
        results = await asyncio.gather(
            a.commit_checkpoint(checkpoint(1, old.epoch, {0: [0, 5]}), "old", old.epoch),
            b.acquire_lease(job_resource(JOB), "new", LONG_TTL),
            return_exceptions=True,
        )
    committed, new = results
    assert isinstance(new, Lease) and new.epoch == old.epoch + 1
    latest = await metadata_store.latest_checkpoint(JOB)
    if committed is None:
        assert latest is not None and latest.seq == 1
        assert await metadata_store.get_end_offset(OUT, 0) == 5
    else:
        assert isinstance(committed, FencedError), committed
        assert latest is None and await metadata_store.get_end_offset(OUT, 0) == 0


async def test_delete_job_revokes_its_lease_and_removes_its_checkpoints(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    holder, epoch = lease.holder, lease.epoch
    await metadata_store.commit_checkpoint(checkpoint(1, epoch, {0: [0, 5]}, {(SRC, 0): 5}), holder, epoch)
    await metadata_store.commit_checkpoint(checkpoint(2, epoch, {}, {(SRC, 0): 6}, state_key=None), holder, epoch)
    await metadata_store.commit_checkpoint(checkpoint(3, epoch, {0: [5, 7]}, {(SRC, 1): 1}), holder, epoch)

    assert await metadata_store.delete_job(JOB) == [f"jobs/{JOB}/state-1", f"jobs/{JOB}/state-3"]
    with pytest.raises(JobNotFoundError):
        await metadata_store.get_job(JOB)
    assert await metadata_store.list_jobs() == []
    with pytest.raises(FencedError):
        await metadata_store.renew_lease(job_resource(JOB), holder, epoch, LONG_TTL)
    revoked = await metadata_store.get_lease(job_resource(JOB))
    assert revoked is not None and revoked.holder != holder
    with pytest.raises(JobNotFoundError):
        await metadata_store.commit_checkpoint(checkpoint(4, epoch, {0: [7, 8]}), holder, epoch)
    # The output topic is not the job's to delete: what it committed stays.
    assert await metadata_store.get_end_offset(OUT, 0) == 7

    # Same name again: a new job with nothing of the old one, at a higher epoch, so the old
    # runner is still fenced even if it tries the new job's first checkpoint.
    await metadata_store.create_job(JOB, SQL, OUT)
    assert await metadata_store.latest_checkpoint(JOB) is None
    with pytest.raises(FencedError):
        await metadata_store.commit_checkpoint(checkpoint(1, epoch, {0: [7, 8]}), holder, epoch)
    again = await metadata_store.acquire_lease(job_resource(JOB), holder, LONG_TTL)
    assert again.epoch > epoch
    await metadata_store.commit_checkpoint(checkpoint(1, again.epoch, {0: [7, 8]}), holder, again.epoch)
    latest = await metadata_store.latest_checkpoint(JOB)
    assert latest is not None and dict(latest.source_offsets) == {}


async def test_deleting_a_source_topic_drops_the_jobs_offsets_for_it(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    await metadata_store.create_topic("other", 1)
    sources = {(SRC, 0): 5, ("other", 0): 3}
    await metadata_store.commit_checkpoint(checkpoint(1, lease.epoch, sources=sources), lease.holder, lease.epoch)
    await metadata_store.delete_topic(SRC)
    latest = await metadata_store.latest_checkpoint(JOB)
    assert latest is not None and dict(latest.source_offsets) == {("other", 0): 3}
    # A re-created source is a new log: the job does not resume it at the old offsets.
    await metadata_store.create_topic(SRC, 3)
    latest = await metadata_store.latest_checkpoint(JOB)
    assert latest is not None and (SRC, 0) not in latest.source_offsets


async def test_checkpoint_history_is_bounded(metadata_store: MetadataStore) -> None:
    lease = await setup_job(metadata_store)
    count = CHECKPOINT_HISTORY + 3
    for seq in range(1, count + 1):
        await metadata_store.commit_checkpoint(checkpoint(seq, lease.epoch), lease.holder, lease.epoch)
    latest = await metadata_store.latest_checkpoint(JOB)
    assert latest is not None and latest.seq == count
    removed = await metadata_store.delete_job(JOB)
    assert removed == [f"jobs/{JOB}/state-{seq}" for seq in range(4, count + 1)]


# -- migration from a version-1 database ----------------------------------------------------------
def _sqlite_at_version_1(path: Path) -> None:
    init = all_migrations()[0]
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(SCHEMA_MIGRATIONS_DDL)
        for statement in init.statements():
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (1, ?, 0)", (init.name,))
        conn.execute("UPDATE counters SET value = 1 WHERE name = 'topic_id'")
        conn.execute("INSERT INTO topics VALUES ('old', 1, 1, '{}', NULL, 0)")
        conn.execute("INSERT INTO partitions (topic, partition_id, end_offset) VALUES ('old', 0, 42)")


async def _postgres_at_version_1(url: str) -> None:
    init = all_migrations()[0]
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(SCHEMA_MIGRATIONS_DDL)
            await conn.execute(init.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (1, $1, 0)", init.name
            )
            await conn.execute("UPDATE counters SET value = 1 WHERE name = 'topic_id'")
            await conn.execute("INSERT INTO topics VALUES ('old', 1, 1, '{}', NULL, 0)")
            await conn.execute("INSERT INTO partitions (topic, partition_id, end_offset) VALUES ('old', 0, 42)")
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_version_1_database_migrates(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if backend == "sqlite":
        _sqlite_at_version_1(tmp_path / "meta.db")
        url = f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        url = request.getfixturevalue("pg_url")
        await _postgres_at_version_1(url)
    store = await open_metadata_store(url)
    try:
        assert (await store.get_topic("old")).topic_id == 1
        assert await store.get_end_offset("old", 0) == 42
        assert (await store.create_topic("new", 1)).topic_id == 2
        job = await store.create_job(JOB, SQL, "old")
        assert job.job_id == 1
        lease = await store.acquire_lease(job_resource(JOB), "r", LONG_TTL)
        segment = make_segment("old", 0, 42, 50, lease.epoch)
        await store.commit_checkpoint(Checkpoint(JOB, 1, "s", {("new", 0): 0}, (segment,), {"n": 8}), "r", lease.epoch)
        assert await store.get_end_offset("old", 0) == 50
    finally:
        await store.close()
    # Opening again finds nothing left to apply.
    again = await open_metadata_store(url)
    try:
        assert [j.name for j in await again.list_jobs()] == [JOB]
    finally:
        await again.close()
