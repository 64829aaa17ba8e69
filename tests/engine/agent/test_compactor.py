"""Log compaction end to end (engine/agent/compactor.py) on a real PartitionManager over PostgreSQL
+ SeaweedFS: after a pass the log read back through the fetch path equals the records produced
with every superseded record gone (a brute-force latest-per-key says which), offsets, timestamps
and headers unchanged, the newest segment untouched; tombstones go only after
delete.retention.ms; a pass whose swap is refused changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.agent.compaction_plan import is_clean, plan_compaction
from streamhouse.agent.compactor import Compactor, CompactSettings
from streamhouse.agent.config import AgentConfig
from streamhouse.agent.leases import Leases
from streamhouse.agent.merger import Merger, MergeSettings
from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.records.schema import make_batch

Row = tuple[int, bytes | None, bytes | None, int, Any]  # offset, key, value, timestamp, headers


@pytest.fixture
def env(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str]
) -> Iterator[tuple[asyncio.AbstractEventLoop, PartitionManager]]:
    """A partition manager on its own loop, so hypothesis can drive it from a sync test."""
    url, endpoint = s3_url
    config = AgentConfig(
        data_dir=str(tmp_path / "agent"),
        agent_id="a",
        roll_age_ms=600_000,
        metadata_url=pg_url,
        object_store_url=url,
        s3_endpoint=endpoint,
    )
    loop = asyncio.new_event_loop()
    manager = loop.run_until_complete(PartitionManager.start(config))
    yield loop, manager
    loop.run_until_complete(manager.close())
    loop.close()


def compactor_of(manager: PartitionManager, now: list[int]) -> Compactor:
    leases = Leases(manager.metadata, holder=manager.config.holder, agent_id="a", ttl_ms=30_000)
    settings_ = CompactSettings(interval_s=0, grace_ms=5_000)
    return Compactor(
        manager.metadata, manager.store, leases, settings_, lists=manager.reader.lists, clock=lambda: now[0]
    )


async def produce(manager: PartitionManager, topic: TopicInfo, batch: list[tuple[bytes, bytes | None]], n: int) -> None:
    """One acks=durable produce: its own segment."""
    values = [v for _, v in batch]
    headers = [[("n", f"{n}-{i}".encode())] for i in range(len(batch))]
    rows = make_batch(values, keys=[k for k, _ in batch], timestamps=[5_000 + n] * len(batch), headers=headers)
    await manager.produce(topic, 0, rows, "durable")


def rows_of(table: pa.Table) -> list[Row]:
    return list(
        zip(
            table.column("offset").to_pylist(),
            table.column("key").to_pylist(),
            table.column("value").to_pylist(),
            table.column("timestamp").to_pylist(),
            [tuple((h["key"], h["value"]) for h in hs or ()) for hs in table.column("headers").to_pylist()],
            strict=True,
        )
    )


def latest_map(rows: list[Row]) -> dict[bytes | None, bytes]:
    """Apply the changelog: the last record per key wins, a tombstone deletes."""
    state: dict[bytes | None, bytes | None] = {}
    for _, key, value, _, _ in sorted(rows, key=lambda r: r[0]):
        state[key] = value
    return {k: v for k, v in state.items() if v is not None}


async def topic_with(manager: PartitionManager, config: dict[str, str]) -> TopicInfo:
    name = f"c{uuid.uuid4().hex[:8]}"
    return await manager.metadata.create_topic(name, 1, {"cleanup.policy": "compact", **config})


batches_strategy = st.lists(
    st.lists(
        st.tuples(st.sampled_from([b"a", b"b", b"c", b""]), st.sampled_from([None, b"1", b"2", b""])),
        min_size=1,
        max_size=5,
    ),
    min_size=2,
    max_size=5,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches_strategy, retention=st.sampled_from([0, 10**9]))
def test_a_pass_equals_latest_per_key(
    env: tuple[asyncio.AbstractEventLoop, PartitionManager],
    batches: list[list[tuple[bytes, bytes | None]]],
    retention: int,
) -> None:
    loop, manager = env
    loop.run_until_complete(_one_pass(manager, batches, retention))


async def _one_pass(manager: PartitionManager, batches: list[list[tuple[bytes, bytes | None]]], retention: int) -> None:
    topic = await topic_with(manager, {"delete.retention.ms": str(retention), "min.cleanable.dirty.ratio": "0"})
    for n, batch in enumerate(batches):
        await produce(manager, topic, batch, n)
    before = rows_of(await manager.read(topic.name, 0, 0, 10_000))
    segments = await manager.metadata.list_segments(topic.name, 0)
    assert len(segments) == len(batches)
    now = [1_000_000]
    outcome = await compactor_of(manager, now).compact_partition(topic, 0)
    assert outcome is not None and (outcome.segments, outcome.swapped) == (len(batches) - 1, 1)  # one epoch: one run

    after_segments = await manager.metadata.list_segments(topic.name, 0)
    assert after_segments[-1] == segments[-1]  # the newest segment is never compacted
    assert all(is_clean(s) for s in after_segments[:-1])
    cut = segments[-1].base_offset
    assert [(s.base_offset, s.end_offset) for s in after_segments[:-1]] == [(0, cut)]  # one run, its range kept
    after = rows_of(await manager.read(topic.name, 0, 0, 10_000))  # the fetch path, over the gaps
    # Every record kept is the record produced at that offset, byte for byte.
    produced = {r[0]: r for r in before}
    assert all(produced[r[0]] == r for r in after)
    # The changelog means the same; the cleanable range holds exactly latest-per-key (plus at
    # most one record kept so an emptied run still has one).
    assert latest_map(after) == latest_map(before)
    cleanable = [r for r in before if r[0] < cut]
    last = {r[1]: r for r in cleanable}
    expected = {r for r in last.values() if r[2] is not None or retention > 0}
    kept = {r for r in after if r[0] < cut}
    assert expected <= kept and len(kept - expected) <= 1
    assert [r for r in after if r[0] >= cut] == [r for r in before if r[0] >= cut]
    stats = await manager.metadata.partition_stats(topic.name)
    assert stats[0].last_compacted_ms == now[0]
    # A second pass finds nothing dirty: a compacted range is only compacted again once new
    # segments make up min.cleanable.dirty.ratio of it.
    assert await compactor_of(manager, now).compact_partition(topic, 0) is None


def test_tombstones_go_delete_retention_ms_after_the_pass_that_first_cleaned_them(
    env: tuple[asyncio.AbstractEventLoop, PartitionManager],
) -> None:
    loop, manager = env
    loop.run_until_complete(_tombstone_expiry(manager))


async def _tombstone_expiry(manager: PartitionManager) -> None:
    topic = await topic_with(manager, {"delete.retention.ms": "1000", "min.cleanable.dirty.ratio": "0.5"})
    now = [50_000]
    compactor = compactor_of(manager, now)
    await produce(manager, topic, [(b"a", b"1"), (b"b", b"1")], 0)
    await produce(manager, topic, [(b"a", None)], 1)  # deletes a
    await produce(manager, topic, [(b"c", b"1")], 2)
    first = await compactor.compact_partition(topic, 0)
    assert first is not None and first.counts.tombstones_dropped == 0
    # Cleaned at 50 000: the tombstone stays, readers that are behind still see the delete.
    assert [(r[0], r[1], r[2]) for r in rows_of(await manager.read(topic.name, 0, 0, 100))] == [
        (1, b"b", b"1"),
        (2, b"a", None),
        (3, b"c", b"1"),
    ]
    await produce(manager, topic, [(b"d", b"1")], 3)
    await produce(manager, topic, [(b"e", b"1")], 4)
    now[0] += 999
    second = await compactor.compact_partition(topic, 0)  # dirty again, but 999 ms < 1000 ms
    assert second is not None and second.counts.tombstones_dropped == 0
    await produce(manager, topic, [(b"f", b"1")], 5)
    await produce(manager, topic, [(b"g", b"1")], 6)
    now[0] += 1
    third = await compactor.compact_partition(topic, 0)
    assert third is not None and third.counts.tombstones_dropped == 1
    kept = [(r[0], r[1]) for r in rows_of(await manager.read(topic.name, 0, 0, 100))]
    assert kept == [(1, b"b"), (3, b"c"), (4, b"d"), (5, b"e"), (6, b"f"), (7, b"g")]


def test_plan_waits_for_the_dirty_ratio_and_never_takes_the_newest_segment(
    env: tuple[asyncio.AbstractEventLoop, PartitionManager],
) -> None:
    loop, manager = env

    async def check() -> None:
        topic = await topic_with(manager, {})
        for n in range(3):
            await produce(manager, topic, [(b"k", b"v" * 100)], n)
        segments = await manager.metadata.list_segments(topic.name, 0)
        plan = plan_compaction(segments, 0.5, max_pass_bytes=1 << 30, run_bytes=1 << 30)
        assert plan is not None and plan.segments == tuple(segments[:-1])
        assert plan_compaction(segments[:1], 0.0, max_pass_bytes=1 << 30, run_bytes=1 << 30) is None
        # A pass capped by bytes takes a prefix from the log start; runs never exceed run_bytes.
        capped = plan_compaction(segments, 0.5, max_pass_bytes=segments[0].size_bytes, run_bytes=1 << 30)
        assert capped is not None and capped.segments == (segments[0],)
        split = plan_compaction(segments, 0.5, max_pass_bytes=1 << 30, run_bytes=1)
        assert split is not None and len(split.runs) == 2

    loop.run_until_complete(check())


def test_a_refused_swap_changes_nothing_and_a_failing_pass_is_reported(
    env: tuple[asyncio.AbstractEventLoop, PartitionManager],
) -> None:
    loop, manager = env
    loop.run_until_complete(_refused_and_failing(manager))


async def _refused_and_failing(manager: PartitionManager) -> None:
    topic = await topic_with(manager, {"min.cleanable.dirty.ratio": "0"})
    for n in range(6):
        await produce(manager, topic, [(b"k", f"v{n}".encode())], n)
    before = rows_of(await manager.read(topic.name, 0, 0, 100))
    segments = await manager.metadata.list_segments(topic.name, 0)
    now = [1_000]
    compactor = compactor_of(manager, now)
    download = compactor._download

    async def merged_meanwhile(chosen: Any) -> Any:
        # Another agent's merger swaps the same segments after this pass read them.
        merger = Merger(
            manager.metadata,
            manager.store,
            Leases(manager.metadata, holder="b@merger", agent_id="b", ttl_ms=30_000),
            MergeSettings(interval_s=0, small_bytes=1 << 20, target_bytes=1 << 30, min_segments=2, grace_ms=0),
        )
        assert await merger.merge_partition(topic.name, 0)
        return await download(chosen)

    compactor._download = merged_meanwhile  # type: ignore[method-assign]
    outcome = await compactor.compact_partition(topic, 0)
    assert outcome is not None and outcome.swapped == 0  # refused: SegmentsChangedError
    assert rows_of(await manager.read(topic.name, 0, 0, 100)) == before
    assert not any(is_clean(s) for s in await manager.metadata.list_segments(topic.name, 0))
    uploads = [o.key for o in await manager.store.list(f"topics/{topic.name}/") if "-compacted-" in o.key]
    assert uploads == []  # the refused upload was deleted at once
    assert (await manager.metadata.partition_stats(topic.name))[0].last_compacted_ms is None

    # A pass that cannot read its segments fails, is backed off and named in readiness.
    compactor._download = download  # type: ignore[method-assign]
    listed = await manager.metadata.list_segments(topic.name, 0)
    await manager.store.delete(listed[0].object_key)
    assert await compactor.run_once() == []
    assert any(f"log compaction of {topic.name}/0" in line for line in compactor.faults())
    assert compactor.health.wait_s(f"{topic.name}/0") > 0
    assert len(segments) == 6


def test_runs_never_span_leaderships(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> None:
    """Segments of two leaderships (epochs) compact as two runs, each swapped with its own epoch
    kept (WAL recovery judges leaderships by segment epochs), the changelog unchanged."""
    url, endpoint = s3_url
    config = AgentConfig(
        data_dir=str(tmp_path / "agent"),
        agent_id="a",
        roll_age_ms=600_000,
        metadata_url=pg_url,
        object_store_url=url,
        s3_endpoint=endpoint,
    )

    async def check() -> None:
        manager = await PartitionManager.start(config)
        topic = await topic_with(manager, {"min.cleanable.dirty.ratio": "0", "delete.retention.ms": "0"})
        for n in range(3):
            await produce(manager, topic, [(b"a", f"{n}".encode()), (b"b", None if n == 2 else b"x")], n)
        await manager.close()
        manager = await PartitionManager.start(config)  # a new leadership: epoch + 1
        try:
            for n in range(3, 6):
                await produce(manager, topic, [(b"a", f"{n}".encode()), (b"c", b"y")], n)
            before = rows_of(await manager.read(topic.name, 0, 0, 100))
            epochs = [s.epoch for s in await manager.metadata.list_segments(topic.name, 0)]
            assert len(set(epochs)) == 2
            outcome = await compactor_of(manager, [1]).compact_partition(topic, 0)
            assert outcome is not None and outcome.swapped == 2
            after_segments = await manager.metadata.list_segments(topic.name, 0)
            assert [s.epoch for s in after_segments] == [*sorted(set(epochs)), epochs[-1]]
            after = rows_of(await manager.read(topic.name, 0, 0, 100))
            assert latest_map(after) == latest_map(before)
            # Every superseded a and c is gone. The first leadership's run keeps nothing else, so
            # it keeps its last record, b's tombstone (a segment holds at least one record).
            assert [(r[0], r[1], r[2]) for r in after] == [
                (5, b"b", None),
                (8, b"a", b"4"),
                (9, b"c", b"y"),
                (10, b"a", b"5"),
                (11, b"c", b"y"),
            ]
        finally:
            await manager.close()

    asyncio.run(check())
