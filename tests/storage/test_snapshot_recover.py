"""Disaster recovery's rules (storage/metadata/recover.py), pure: a snapshot exported from a real
store, segment objects as their footers would describe them, and what an empty store holds after
importing the plan."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.recover import (
    COUNTER_GAP,
    EPOCH_GAP,
    SKEW_MS,
    FoundSegment,
    RecoveryPlan,
    plan_recover,
)
from streamhouse.storage.metadata.snapshot import MetadataDump
from streamhouse.storage.model import SegmentInfo, job_resource, partition_resource
from tests.storage.test_metadata_contract import HOLDER, commit_run, make_segment

NOW = 2_000_000_000_000


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await open_metadata_store(f"sqlite:///{tmp_path / 'source.db'}")
    yield store
    await store.close()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await open_metadata_store(f"sqlite:///{tmp_path / 'target.db'}")
    yield store
    await store.close()


def seg(topic: str, partition: int, base: int, end: int, epoch: int = 1, tag: str = "") -> SegmentInfo:
    s = make_segment(topic, partition, base, end, epoch)
    return dataclasses.replace(s, object_key=s.object_key.replace(".parquet", f"{tag}.parquet"))


def found(*segments: SegmentInfo, modified_ms: int | None = None) -> list[FoundSegment]:
    return [FoundSegment(s, modified_ms) for s in segments]


async def apply(target: MetadataStore, plan: RecoveryPlan) -> dict[tuple[str, int], list[tuple[int, int, str]]]:
    """Import the plan; per partition the chain as (base, end, key), checked contiguous."""
    await target.import_tables(plan.tables)
    out: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for topic in await target.list_topics():
        for p in range(topic.partitions):
            rows = await target.list_segments(topic.name, p)
            for a, b in itertools.pairwise(rows):
                assert a.end_offset == b.base_offset, f"{topic.name}/{p} not contiguous: {rows}"
            if rows:
                assert await target.get_end_offset(topic.name, p) == rows[-1].end_offset
            out[(topic.name, p)] = [(s.base_offset, s.end_offset, s.object_key) for s in rows]
    return out


async def test_segments_after_the_snapshot_extend_it_contiguously_and_overlaps_never_double(
    source: MetadataStore, target: MetadataStore
) -> None:
    await source.create_topic("t", 1)
    snap = await commit_run(source, "t", 0, [0, 10, 20])  # epoch 1
    dump = await source.export_tables()
    later = [seg("t", 0, 20, 30), seg("t", 0, 30, 35)]
    # A merge of [0, 20) + [20, 30) written after the snapshot, its old objects not yet deleted;
    # a fenced leader's upload at an older epoch over [30, 40); a newer leadership's [35, 38).
    merged = seg("t", 0, 0, 30, tag="-1-merged-30-ab")
    stale = seg("t", 0, 30, 40, epoch=0, tag="-stale")
    newer = seg("t", 0, 35, 38, epoch=2)
    objects = [*snap, *later, merged, stale, newer]
    plan = plan_recover(dump, found(*later, merged, stale, newer), [s.object_key for s in objects], now_ms=NOW)
    chains = await apply(target, plan)
    # The merged object reaches as far as the pieces (a tie): the snapshot's rows win. At 30 the
    # committed epoch-1 segment beats the fenced epoch-0 upload, although that one is longer.
    assert chains[("t", 0)] == [(s.base_offset, s.end_offset, s.object_key) for s in [*snap, *later, newer]]
    report = plan.report
    assert (report.added_segments, report.added_records, report.unused_objects) == (3, 18, 2)
    assert report.raw_topics == () and report.missing_rows == () and report.dropped_rows == ()


async def test_a_merge_whose_pieces_were_deleted_is_followed_through_the_merged_object(
    source: MetadataStore, target: MetadataStore
) -> None:
    await source.create_topic("t", 1)
    snap = await commit_run(source, "t", 0, [0, 10, 20, 30])
    dump = await source.export_tables()
    merged = seg("t", 0, 10, 30, tag="-1-merged-30-cd")
    tail = seg("t", 0, 30, 31)
    present = [snap[0].object_key, merged.object_key, tail.object_key]  # [10,20) and [20,30) deleted
    plan = plan_recover(dump, found(merged, tail), present, now_ms=NOW)
    chains = await apply(target, plan)
    assert chains[("t", 0)] == [(0, 10, snap[0].object_key), (10, 30, merged.object_key), (30, 31, tail.object_key)]
    assert plan.report.replaced_rows == 2 and plan.report.missing_rows == ()


async def test_missing_objects_leading_rows_go_and_the_log_start_moves_middle_rows_stay(
    source: MetadataStore, target: MetadataStore
) -> None:
    await source.create_topic("t", 2)
    a = await commit_run(source, "t", 0, [0, 10, 20, 30, 40])
    b = await commit_run(source, "t", 1, [0, 5])
    dump = await source.export_tables()
    # a[0] and a[1] gone from the front (retention after the snapshot), b's only segment too.
    plan = plan_recover(dump, [], [a[2].object_key, a[3].object_key], now_ms=NOW)
    chains = await apply(target, plan)
    assert [c[:2] for c in chains[("t", 0)]] == [(20, 30), (30, 40)]
    assert plan.report.partitions[("t", 0)] == (20, 40)
    assert plan.report.partitions[("t", 1)] == (5, 5)  # every object gone: empty, starting at its end
    assert set(plan.report.dropped_rows) == {a[0].object_key, a[1].object_key, b[0].object_key}
    assert await target.get_end_offset("t", 1) == 5

    # A hole in the middle with nothing to replace it: the row is kept and reported.
    plan = plan_recover(dump, [], [a[0].object_key, a[2].object_key, a[3].object_key, b[0].object_key], now_ms=NOW)
    assert plan.report.missing_rows == (a[1].object_key,)
    assert [s.object_key for s in await _chain_of(plan, "t", 0)] == [s.object_key for s in a]


async def _chain_of(plan: RecoveryPlan, topic: str, partition: int) -> list[SegmentInfo]:
    from streamhouse.storage.metadata import rows as r

    out = []
    for table in plan.tables:
        if table.name == "segments":
            out += [
                r.segment_from_row(d) for d in table.dicts() if (d["topic"], d["partition_id"]) == (topic, partition)
            ]
    return sorted(out, key=lambda s: s.base_offset)


async def test_topics_created_after_the_snapshot_come_back_raw_and_job_outputs_stay_as_of_it(
    source: MetadataStore, target: MetadataStore
) -> None:
    await source.create_topic("t", 1, {"retention.ms": "5000"})
    await source.create_topic("view", 1)
    await source.create_job("job", "SELECT 1", "view", {"dead-letter": "late"})
    await source.create_topic("late", 1)
    await commit_run(source, "t", 0, [0, 3])
    await source.commit_offsets("g", "t", {0: 2})
    dump = await source.export_tables()
    new = [seg("fresh", 2, 0, 4, epoch=7), seg("fresh", 2, 4, 6, epoch=7), seg("fresh", 0, 0, 1)]
    view = seg("view", 0, 0, 8)  # output the job will write again from its checkpoint
    late = seg("late", 0, 0, 2)  # its dead-letter topic, likewise
    old = seg("gone", 0, 0, 9)  # a topic deleted long before the snapshot: its leftovers
    items = [*found(*new, view, late), *found(old, modified_ms=dump.taken_ms - SKEW_MS - 1)]
    plan = plan_recover(dump, items, [s.object_key for s in [*new, view, late, old]], now_ms=NOW)
    chains = await apply(target, plan)
    fresh = await target.get_topic("fresh")
    assert (fresh.partitions, fresh.config, fresh.value_schema) == (3, {}, None)
    assert fresh.topic_id == 3 + COUNTER_GAP + 1  # past the gap above the snapshot's counter
    assert [c[:2] for c in chains[("fresh", 2)]] == [(0, 4), (4, 6)] and chains[("fresh", 1)] == []
    assert chains[("view", 0)] == [] == chains[("late", 0)] and plan.report.held_back == ("late", "view")
    assert "gone" not in {t.name for t in await target.list_topics()}
    assert (await target.get_topic("t")).config == {"retention.ms": "5000"}
    assert await target.fetch_offsets("g") == {("t", 0): 2}
    assert plan.report.raw_topics == ("fresh",) and any("raw topics" in line for line in plan.report.lines())


async def test_epochs_and_ids_continue_above_anything_before(source: MetadataStore, target: MetadataStore) -> None:
    await source.create_topic("t", 1)
    await commit_run(source, "t", 0, [0, 3])  # holds partition/t/0 at epoch 1
    await source.create_job("job", "SELECT 1", "t")
    await source.acquire_lease(job_resource("job"), HOLDER, 60_000)
    producer = await source.allocate_producer_id()
    dump = await source.export_tables()
    later = seg("t", 0, 3, 5, epoch=40)  # leaderships after the snapshot
    plan = plan_recover(dump, found(later), [later.object_key], now_ms=NOW)
    await apply(target, plan)
    lease = await target.get_lease(partition_resource("t", 0))
    assert lease is not None and lease.epoch == 40 + EPOCH_GAP and lease.expires_at_ms == 0
    taken = await target.acquire_lease(partition_resource("t", 0), "someone", 1000)  # expired: free
    assert taken.epoch == 41 + EPOCH_GAP
    job = await target.get_lease(job_resource("job"))
    assert job is not None and job.epoch == 1 + EPOCH_GAP
    assert await target.allocate_producer_id() == producer + COUNTER_GAP + 1
    assert (await target.create_topic("n", 1)).topic_id == 1 + COUNTER_GAP + 1


async def test_no_snapshot_recovers_every_topic_from_its_segments(target: MetadataStore) -> None:
    segments = [seg("a", 0, 0, 5), seg("a", 0, 5, 9, epoch=2), seg("b", 1, 100, 120)]  # b: retention moved it
    plan = plan_recover(None, found(*segments), [s.object_key for s in segments], now_ms=NOW)
    chains = await apply(target, plan)
    assert [c[:2] for c in chains[("a", 0)]] == [(0, 5), (5, 9)]
    assert [c[:2] for c in chains[("b", 1)]] == [(100, 120)] and plan.report.partitions[("b", 1)] == (100, 120)
    assert plan.report.snapshot_key is None and plan.report.raw_topics == ("a", "b")
    assert "no snapshot" in plan.report.lines()[0]


def test_an_empty_dump_plans_nothing() -> None:
    plan = plan_recover(MetadataDump(1, 6, ()), [], [], now_ms=NOW)
    assert plan.report.topics == 0 and plan.report.added_segments == 0
