"""Metadata snapshots (engine/agent/snapshotter.py) and `streamhouse recover`
(engine/agent/recovery.py, engine/cli/recover.py), in process on SQLite + a local object store
with real Parquet segments: batching and covering of snapshots, pruning, failures; a recovery
that reads every committed record back at its offsets; refusals and a corrupt snapshot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.agent.leases import Leases
from streamhouse.agent.recovery import NothingToRecoverError, recover
from streamhouse.agent.snapshotter import KEEP, Snapshotter
from streamhouse.cli.main import main
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.snapshot import SNAPSHOT_PREFIX, MetadataNotEmptyError, decode_snapshot
from streamhouse.storage.model import Checkpoint, TopicInfo, job_resource, partition_resource
from streamhouse.storage.object_store import ObjectStore, open_object_store
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.wal.log import WriteAheadLog
from tests.agent_process import AgentLauncher


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[MetadataStore, ObjectStore, WriteAheadLog]]:
    metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    yield metadata, store, wal
    await wal.close()
    await store.close()
    await metadata.close()


async def write(
    metadata: MetadataStore, store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo, partition: int, *rolls: int
) -> None:
    """Roll one segment per count in `rolls`, as a leader does (real footers, fenced commits)."""
    epoch = (await metadata.acquire_lease(partition_resource(topic.name, partition), "a", 60_000)).epoch
    writer = await PartitionWriter.recover(
        topic, partition, holder="a", epoch=epoch, metadata=metadata, store=store, wal=wal, replayed=[]
    )
    for n in rolls:
        start = writer.next_offset
        values = [f'{{"n": {start + i}, "p": {partition}}}'.encode() for i in range(n)]
        await writer.append(make_batch(values, keys=[b"k"] * n, timestamps=[1_000 + start + i for i in range(n)]))
        await writer.flush()


def snapshotter(metadata: MetadataStore, store: ObjectStore, interval_s: float = 60.0, agent: str = "a") -> Snapshotter:
    return Snapshotter(
        metadata, store, Leases(metadata, holder=f"{agent}@h:1", agent_id=agent, ttl_ms=10_000), interval_s
    )


async def snapshot_keys(store: ObjectStore) -> list[str]:
    return [info.key for info in await store.list(SNAPSHOT_PREFIX)]


async def test_snapshots_follow_changes_batched_covered_pruned(
    env: tuple[MetadataStore, ObjectStore, WriteAheadLog],
) -> None:
    metadata, store, wal = env
    topic = await metadata.create_topic("t", 1)
    await write(metadata, store, wal, topic, 0, 3, 2)
    first = snapshotter(metadata, store)
    assert await first.run_once() is None and await snapshot_keys(store) == []  # nothing changed
    first.changed()
    outcome = await first.run_once()
    assert outcome is not None and await snapshot_keys(store) == [outcome.key]
    dump = decode_snapshot(await store.get(outcome.key), source=outcome.key)
    assert dump.row_counts()["segments"] == 2 and outcome.rows == dump.row_counts()
    # Another change within the interval waits for the next round (kept, not lost).
    first.changed()
    assert await first.run_once() is None
    first.interval_s = 0.001
    later = await first.run_once()
    assert later is not None and later.taken_ms >= outcome.taken_ms
    # A second agent's change is covered by a snapshot begun after it: no snapshot of its own.
    second = snapshotter(metadata, store, interval_s=0.001, agent="b")
    second.changed()
    await asyncio.sleep(0.01)  # both clocks count whole milliseconds
    await first.write()
    count = len(await snapshot_keys(store))
    assert await second.run_once() is None and len(await snapshot_keys(store)) == count
    assert await second.run_once() is None  # and it is clean now
    # Only the latest KEEP are kept.
    for _ in range(KEEP + 1):
        await first.write()
    keys = await snapshot_keys(store)
    assert len(keys) == KEEP
    # Topic DDL anywhere is a change too: the first round took note of the topics.
    assert await second.run_once() is None
    await metadata.alter_topic("t", set_config={"retention.ms": "60000"})
    outcome = await second.run_once()
    assert outcome is not None and outcome.key not in keys
    assert await second.run_once() is None


async def test_a_failing_snapshot_says_so_backs_off_and_keeps_the_change(
    env: tuple[MetadataStore, ObjectStore, WriteAheadLog], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, store, _ = env
    broken = await open_metadata_store(f"sqlite:///{tmp_path / 'b.db'}")
    service = snapshotter(broken, store, interval_s=0.001)
    await broken.close()
    service.changed()
    with caplog.at_level(logging.WARNING):
        assert await service.run_once() is None
        service.changed()
        assert await service.run_once() is None
    assert sum("metadata snapshot" in r.getMessage() for r in caplog.records) == 1  # said once
    assert service.health.failing_count == 1 and service._dirty
    assert service.next_delay_s() > 0


async def test_recover_brings_back_every_committed_record_at_its_offset(
    env: tuple[MetadataStore, ObjectStore, WriteAheadLog], tmp_path: Path
) -> None:
    metadata, store, wal = env
    columns = '{"columns": [{"name": "n", "type": "BIGINT"}, {"name": "p", "type": "INT"}]}'
    topic = await metadata.create_topic("t", 2, {"retention.ms": "86400000"}, value_schema=columns)
    await write(metadata, store, wal, topic, 0, 3, 4)
    await write(metadata, store, wal, topic, 1, 5)
    await metadata.commit_offsets("g", "t", {0: 6, 1: 1})
    await metadata.create_job("v", "SELECT 1", "v_out")
    job = await metadata.acquire_lease(job_resource("v"), "a", 60_000)
    await metadata.commit_checkpoint(Checkpoint("v", 1, "jobs/v/state-1", {("t", 0): 2}), "a", job.epoch)
    await snapshotter(metadata, store).write()
    await metadata.commit_offsets("g", "t", {0: 7})  # after the snapshot: not recovered
    await write(metadata, store, wal, topic, 0, 2)  # after the snapshot: recovered from its footer
    fresh = await metadata.create_topic("fresh", 1)
    await write(metadata, store, wal, fresh, 0, 3)

    target = await open_metadata_store(f"sqlite:///{tmp_path / 'recovered.db'}")
    try:
        result = await recover(target, store)
        assert result.imported and result.unreadable == ()
        assert result.plan.report.added_segments == 2 and result.plan.report.raw_topics == ("fresh",)
        for name, partitions in (("t", 2), ("fresh", 1)):
            for p in range(partitions):
                want = await PartitionReader(metadata, store).read(name, p, 0)
                got = await PartitionReader(target, store).read(name, p, 0)
                assert got.equals(want), (name, p)
                assert await target.get_end_offset(name, p) == await metadata.get_end_offset(name, p)
        assert (await target.get_topic("t")).value_schema == columns
        assert await target.fetch_offsets("g") == {("t", 0): 6, ("t", 1): 1}  # as of the snapshot
        # The job comes back, but its checkpoint's state object is gone: said, not hidden.
        assert result.lost_states == (("v", "jobs/v/state-1"),)
        assert any("job 'v'" in line and "DROP and CREATE" in line for line in result.lines())
        with pytest.raises(MetadataNotEmptyError):
            await recover(target, store)
    finally:
        await target.close()


def test_the_cli_recovers_refuses_and_names_a_corrupt_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    objects = f"file://{tmp_path / 'objects'}"

    async def prepare() -> str:
        metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
        store = open_object_store(objects)
        wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
        await wal.replay()
        topic = await metadata.create_topic("t", 1)
        await write(metadata, store, wal, topic, 0, 4)
        outcome = await snapshotter(metadata, store).write()
        await wal.close()
        await metadata.close()
        return outcome.key

    key = asyncio.run(prepare())
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["recover", "--from", f"file://{tmp_path / 'nothing'}", "--metadata", empty]) == 1
    assert "nothing to recover" in capsys.readouterr().err
    assert main(["recover", "--from", objects, "--metadata", empty, "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert main(["recover", "--from", objects, "--metadata", empty]) == 0
    assert "1 topics" in capsys.readouterr().out
    assert main(["recover", "--from", objects, "--metadata", empty]) == 1
    assert "is not empty (" in capsys.readouterr().err
    damaged = tmp_path / "objects" / key
    data = bytearray(damaged.read_bytes())
    data[-3] ^= 1
    damaged.write_bytes(bytes(data))
    assert main(["recover", "--from", objects, "--metadata", f"sqlite:///{tmp_path / 'other.db'}"]) == 1
    err = capsys.readouterr().err
    assert "CRC32C mismatch" in err and key in err and "recover from the one before it" in err


async def test_nothing_and_corrupt_are_typed_errors(env: tuple[MetadataStore, ObjectStore, WriteAheadLog]) -> None:
    metadata, store, _ = env
    with pytest.raises(NothingToRecoverError):
        await recover(metadata, store)
    await store.put(f"{SNAPSHOT_PREFIX}000000000000001-abcdef12.json.z", b"not a snapshot")
    with pytest.raises(CorruptDataError, match="000000000000001-abcdef12") as info:
        await recover(metadata, store)
    assert info.value.source.endswith("000000000000001-abcdef12.json.z")
    assert await metadata.list_topics() == []


def test_serve_recover_fills_an_empty_database_then_serves(tmp_path: Path) -> None:
    objects = f"file://{tmp_path / 'objects'}"

    async def prepare() -> None:
        metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'lost.db'}")
        store = open_object_store(objects)
        wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
        await wal.replay()
        topic = await metadata.create_topic("t", 1)
        await write(metadata, store, wal, topic, 0, 4, 3)
        await snapshotter(metadata, store).write()
        await write(metadata, store, wal, topic, 0, 2)
        await wal.close()
        await metadata.close()

    asyncio.run(prepare())
    flags = ("--data-dir", str(tmp_path / "a"), "--metadata", f"sqlite:///{tmp_path / 'new.db'}")
    flags += ("--object-store", objects, "--recover")
    with AgentLauncher(tmp_path) as launcher:
        agent = launcher.start(*flags)
        with streamhouse.connect(agent.address) as client:
            values = client.read("t").column("value").to_pylist()
            assert values == [f'{{"n": {i}, "p": 0}}'.encode() for i in range(9)]


async def test_snapshot_metrics_count_snapshots_and_failures(
    env: tuple[MetadataStore, ObjectStore, WriteAheadLog], tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry

    from streamhouse.agent.snapshot_metrics import SnapshotMetrics

    metadata, store, _ = env
    registry = CollectorRegistry()
    metrics = SnapshotMetrics(registry)
    service = snapshotter(metadata, store)
    metrics.wire(service)
    outcome = await service.write()
    assert registry.get_sample_value("streamhouse_metadata_snapshots_total") == 1
    assert registry.get_sample_value("streamhouse_metadata_snapshot_bytes") == outcome.size_bytes
    broken = await open_metadata_store(f"sqlite:///{tmp_path / 'b.db'}")
    await broken.close()
    failing = snapshotter(broken, store)
    metrics.wire(failing)
    assert await failing.run_once() is None
    assert registry.get_sample_value("streamhouse_metadata_snapshot_failures_total") == 1
    assert registry.get_sample_value("streamhouse_metadata_snapshot_failing") == 1


async def test_a_compacted_segments_range_end_comes_from_its_footer(
    env: tuple[MetadataStore, ObjectStore, WriteAheadLog], tmp_path: Path
) -> None:
    import pyarrow as pa

    from streamhouse.storage.partition.roll import segment_key
    from streamhouse.storage.records.schema import assign_offsets
    from streamhouse.storage.segment.format import encode_segment

    metadata, store, wal = env
    topic = await metadata.create_topic("t", 1)
    await write(metadata, store, wal, topic, 0, 9)
    await snapshotter(metadata, store).write()
    # Written after the snapshot: offsets 9, 12 and 14 of a range [9, 16) (compaction's gaps).
    batch = assign_offsets(make_batch([b"a", b"b", b"c"], keys=[b"x", b"y", b"z"], timestamps=[5, 6, 7]), 0)
    offsets = pa.array([9, 12, 14], pa.int64())
    gapped = pa.Table.from_batches([batch]).set_column(0, batch.schema.field(0), offsets)
    encoded = encode_segment(gapped, topic="t", partition=0, epoch=1, covers=(9, 16))
    await store.put(segment_key("t", 0, 9, 1), encoded.data)

    target = await open_metadata_store(f"sqlite:///{tmp_path / 'recovered.db'}")
    try:
        await recover(target, store)
        assert await target.get_end_offset("t", 0) == 16
        table = await PartitionReader(target, store).read("t", 0, 9)
        assert table.column("offset").to_pylist() == [9, 12, 14]
    finally:
        await target.close()
