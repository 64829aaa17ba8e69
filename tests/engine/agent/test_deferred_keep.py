"""The deferred deleter's keep check (engine/agent/background.py delete_due, issue 16): objects
the check names (an Iceberg snapshot still references them) are neither deleted nor forgotten,
so the orphan reconciler spares them too; the rest go; once released they go as well."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from streamhouse.agent.background import delete_due
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.object_store import open_object_store
from tests.storage.test_metadata_contract import commit_run


async def test_kept_objects_stay_recorded_until_released(tmp_path: Path) -> None:
    metadata = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    store = open_object_store(f"file://{tmp_path / 'objects'}")
    try:
        await metadata.create_topic("t", 1)
        segments = await commit_run(metadata, "t", 0, [0, 2, 4, 6, 8])
        for seg in segments:
            await store.put(seg.object_key, b"x")
        lease = await metadata.acquire_lease("retention/t", "r", 60_000)
        await metadata.truncate_log(segments[:3], "retention/t", "r", lease.epoch, 0)
        removed = [s.object_key for s in segments[:3]]
        held = {removed[1]}
        asked: list[list[str]] = []

        async def keep(keys: Sequence[str]) -> set[str]:
            asked.append(sorted(keys))
            return held & set(keys)

        assert await delete_due(metadata, store, keep) == 2
        assert asked[0] == sorted(removed)
        assert [d.object_key for d in await metadata.list_deletions()] == [removed[1]]
        assert [o.key for o in await store.list("p/")] == [removed[1], *(s.object_key for s in segments[3:])]

        assert await delete_due(metadata, store, keep) == 0  # still referenced: asked once, kept
        held.clear()
        assert await delete_due(metadata, store, keep) == 1
        assert await metadata.list_deletions() == []
        assert [o.key for o in await store.list("p/")] == [s.object_key for s in segments[3:]]
    finally:
        await store.close()
        await metadata.close()
