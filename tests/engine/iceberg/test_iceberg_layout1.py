"""Layout-1 segments reach a topic's Iceberg table (engine/iceberg/upgrade.py): the publisher
rewrites them in layout 2 under its lease and publishes the copies the next round, so the table
has no hole at the start of a partition; a partition's newest segment waits for its next write
(said once in the log). The publisher's rounds run by hand, on SQLite and a local store."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamhouse.agent.leases import Leases
from streamhouse.iceberg.data_files import has_field_ids
from streamhouse.iceberg.publisher import IcebergPublisher, PublishSettings
from streamhouse.iceberg.tables import CatalogSettings, open_catalog
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment.format import encode_segment

HOLDER = "writer-1"


async def _write(
    metadata: MetadataStore, store: ObjectStore, partition: int, base: int, n: int, layout: int, **extra: str
) -> str:
    """One committed segment of topic `old` in the given layout (`extra`: footer keys); its object key."""
    lease = await metadata.acquire_lease(partition_resource("old", partition), HOLDER, 60_000)
    batch = make_batch(
        [b"v%d-%d" % (partition, base + i) for i in range(n)], timestamps=1_700_000_000_000, base_offset=base
    )
    table = pa.Table.from_batches([batch])
    encoded = encode_segment(table, topic="old", partition=partition, epoch=1, layout=layout, extra_metadata=extra)
    key = f"topics/old/{partition:05d}/{base:020d}-1.parquet"
    await store.put(key, encoded.data)
    await metadata.commit_segment(
        encoded.info(topic="old", partition=partition, object_key=key, epoch=1), HOLDER, lease.epoch
    )
    return key


async def test_layout1_segments_are_rewritten_and_published(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meta_url, store_url = f"sqlite:///{tmp_path / 'meta.db'}", f"file://{tmp_path / 'objects'}"
    metadata = await open_metadata_store(meta_url)
    store = open_object_store(store_url)
    settings = PublishSettings(0, 3_600_000, CatalogSettings(meta_url, store_url), grace_ms=0)
    publisher = IcebergPublisher(
        metadata, store, Leases(metadata, holder="pub", agent_id="a1", ttl_ms=30_000), settings
    )

    def table_rows() -> list[tuple[int, int, bytes]]:
        table = open_catalog(settings.catalog).load_table(("streamhouse", "old")).scan().to_arrow()
        return sorted(
            zip(table["_partition"].to_pylist(), table["_offset"].to_pylist(), table["_value"].to_pylist(), strict=True)
        )

    def expected(partition: int, end: int) -> list[tuple[int, int, bytes]]:
        return [(partition, o, b"v%d-%d" % (partition, o)) for o in range(end)]

    try:
        await metadata.create_topic("old", 3, {"iceberg.enabled": "true"})
        old0 = [await _write(metadata, store, 0, 0, 3, 1), await _write(metadata, store, 0, 3, 3, 1)]
        await _write(metadata, store, 0, 6, 3, 2)
        old1 = await _write(metadata, store, 1, 0, 4, 1)  # partition 1's newest: it waits
        # A footer key a rewrite would lose: the merge refuses it, so it stays out (said once).
        await _write(metadata, store, 2, 0, 2, 1, **{"streamhouse.from-the-future": "x"})
        await _write(metadata, store, 2, 2, 1, 2)

        with caplog.at_level(logging.INFO, logger="streamhouse.iceberg"):
            [first] = await publisher.run_once()
            assert (first.added, first.removed) == (2, 0)  # the layout-2 segments; the others rewritten
            assert table_rows() == expected(0, 9)[6:] + expected(2, 3)[2:]
            [second] = await publisher.run_once()
            assert (second.added, second.removed) == (2, 0)
            assert table_rows() == expected(0, 9) + expected(2, 3)[2:]  # no hole at the start of partition 0
            await publisher.run_once()
        waits = [r for r in caplog.records if "the partition's newest" in r.getMessage()]
        assert len(waits) == 1 and "old/1: offsets [0, 4)" in waits[0].getMessage()  # said once
        assert sum("rewritten from segment layout 1" in r.getMessage() for r in caplog.records) == 2
        [refused] = [r for r in caplog.records if "cannot be rewritten" in r.getMessage()]
        assert "old/2: offsets [0, 2)" in refused.getMessage() and "from-the-future" in refused.getMessage()

        segments = await metadata.list_segments("old", 0)
        assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 3), (3, 6), (6, 9)]
        assert all(has_field_ids(pq.read_metadata(tmp_path / "objects" / s.object_key)) for s in segments)
        assert {d.object_key for d in await metadata.list_deletions()} == set(old0)  # after the grace

        # Partition 1's next write: its old segment is rewritten, then both are published.
        await _write(metadata, store, 1, 4, 1, 2)
        await publisher.run_once()
        await publisher.run_once()
        assert table_rows() == expected(0, 9) + expected(1, 5) + expected(2, 3)[2:]
        assert old1 in {d.object_key for d in await metadata.list_deletions()}
    finally:
        await publisher.close()
        await store.close()
        await metadata.close()
