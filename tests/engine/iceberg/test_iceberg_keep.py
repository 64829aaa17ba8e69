"""Every agent's deferred deleter keeps the objects a live Iceberg snapshot references, whether or
not that agent publishes (engine/iceberg/references.py IcebergKeepCheck, wired by AgentNode on
every agent): here the table is published by "another agent" (TableMirror, by hand) and the
deleter of an engine started without --iceberg-interval-ms runs; SQLite + a local store."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamhouse
from streamhouse.agent.background import delete_due, delete_due_recorded
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.iceberg.mirror import TableMirror
from streamhouse.iceberg.references import IcebergKeepCheck, key_topic
from streamhouse.iceberg.tables import CatalogSettings, open_catalog
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.segment.field_ids import topic_arrow_schema
from tests.storage.test_metadata_contract import HOLDER, make_segment


def _layout2(path: Path, base: int, n: int) -> None:
    """A layout-2 segment file (field ids from field_ids.py) of `n` records from `base`."""
    schema = topic_arrow_schema(None)
    columns = {
        "_partition": pa.array([0] * n, pa.int32()),
        "_offset": pa.array(range(base, base + n), pa.int64()),
        "_timestamp": pa.array([1_700_000_000_000] * n, pa.timestamp("ms", tz="UTC")),
        "_key": pa.nulls(n, pa.binary()),
        "_value": pa.array([b"v"] * n, pa.binary()),
        "_headers": pa.nulls(n, schema.field("_headers").type),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table([columns[f.name] for f in schema], schema=schema), path)


async def _segments(metadata: MetadataStore, root: Path, topic: str) -> list[SegmentInfo]:
    """Three committed segments of partition 0, their objects written (real keys: topics/...)."""
    lease = await metadata.acquire_lease(partition_resource(topic, 0), HOLDER, 60_000)
    segments = []
    for base in (0, 2, 4):
        seg = make_segment(topic, 0, base, base + 2, lease.epoch)
        seg = dataclasses.replace(seg, object_key=seg.object_key.removeprefix("p/"))
        _layout2(root / seg.object_key, base, 2)
        seg = dataclasses.replace(seg, size_bytes=(root / seg.object_key).stat().st_size)
        await metadata.commit_segment(seg, HOLDER, lease.epoch)
        segments.append(seg)
    return segments


async def test_an_agent_without_the_flag_keeps_what_a_snapshot_references(tmp_path: Path) -> None:
    meta_url, store_url = f"sqlite:///{tmp_path / 'meta.db'}", f"file://{tmp_path / 'objects'}"
    # The wiring: an engine started without --iceberg-interval-ms still gives its deleters the check.
    with streamhouse.open(tmp_path / "data", metadata_url=meta_url, object_store_url=store_url) as client:
        node = client.transport.node  # type: ignore[attr-defined]
        assert node.iceberg is None and node.retention.keep == node.iceberg_keep.referenced

    metadata = await open_metadata_store(meta_url)
    store = open_object_store(store_url)
    settings = CatalogSettings(meta_url, store_url)
    keep = IcebergKeepCheck(metadata, settings)
    try:
        published = await metadata.create_topic("bids", 1, {"iceberg.enabled": "true"})
        await metadata.create_topic("plain", 1)
        bids = await _segments(metadata, tmp_path / "objects", "bids")
        plain = await _segments(metadata, tmp_path / "objects", "plain")
        assert {key_topic(s.object_key) for s in bids + plain} == {"bids", "plain"}

        # Another agent publishes bids' three segments in one snapshot, then the first two in the next.
        mirror = TableMirror(open_catalog(settings), settings)
        mirror.load(published)
        meta = [pq.read_metadata(tmp_path / "objects" / s.object_key) for s in bids]
        mirror.commit(published, list(zip(bids, meta, strict=True)), [], bids)
        mirror.load(published)
        mirror.commit(published, [], [settings.object_url(bids[2].object_key)], bids[:2])

        # Retention removes the first two segments of each topic; the deletions are due at once.
        for topic, segs in (("bids", bids), ("plain", plain)):
            lease = await metadata.acquire_lease(f"retention/{topic}", "r", 60_000)
            await metadata.truncate_log(segs[:2], f"retention/{topic}", "r", lease.epoch, 0)
        deleted = await delete_due(metadata, store, keep.referenced)
        # plain's go; bids' stay (a snapshot references them) and stay recorded.
        assert deleted == 2
        assert sorted(d.object_key for d in await metadata.list_deletions()) == [s.object_key for s in bids[:2]]
        assert all((tmp_path / "objects" / s.object_key).exists() for s in bids)
        assert not any((tmp_path / "objects" / s.object_key).exists() for s in plain[:2])

        # Once bids is no longer published, its objects are no longer asked about: they go.
        await metadata.alter_topic("bids", {"iceberg.enabled": "false"})
        assert await delete_due(metadata, store, keep.referenced) == 2
        assert await metadata.list_deletions() == []
    finally:
        keep.close()
        await store.close()
        await metadata.close()


def test_key_topic() -> None:
    assert key_topic("topics/t.1/00003/00000000000000000007-2-merged-x.parquet") == "t.1"
    assert key_topic("iceberg/t-1/metadata/v1.metadata.json") is None
    assert key_topic("topics/") is None


async def test_without_pyiceberg_a_published_topics_objects_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that cannot read the catalog deletes nothing of a published topic: a typed error
    in the deleter's health (readiness names it); other topics' objects are not its concern."""
    monkeypatch.setitem(sys.modules, "pyiceberg", None)  # the extra not installed on this agent
    meta_url = f"sqlite:///{tmp_path / 'meta.db'}"
    metadata = await open_metadata_store(meta_url)
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    keep = IcebergKeepCheck(metadata, CatalogSettings(meta_url, f"file://{tmp_path / 'objects'}"))
    try:
        await metadata.create_topic("bids", 1, {"iceberg.enabled": "true"})
        await metadata.create_topic("plain", 1)
        assert await keep.referenced(["topics/plain/00000/00000000000000000000-1.parquet"]) == set()
        bids = await _segments(metadata, tmp_path / "objects", "bids")
        lease = await metadata.acquire_lease("retention/bids", "r", 60_000)
        await metadata.truncate_log(bids[:2], "retention/bids", "r", lease.epoch, 0)
        health = FailureTracker[str](Backoff(1, 1, 1), label=str, topic=str, log=logging.getLogger("test"))
        assert await delete_due_recorded(metadata, store, health, lambda n: None, keep.referenced) == 0
        [line] = [f.describe() for f in health.failing_faults().values()]
        assert "IcebergUnavailableError" in line and "'bids'" in line and "streamhouse[iceberg]" in line
        assert len(await metadata.list_deletions()) == 2
        assert all((tmp_path / "objects" / s.object_key).exists() for s in bids)
    finally:
        await store.close()
        await metadata.close()
