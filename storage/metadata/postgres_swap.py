"""The PostgreSQL store's segment swaps and deferred deletions (storage/metadata/swap.py).

A swap takes its row locks in the store's one order (postgres.py): the topic (KEY SHARE, so a
deletion cannot run half way through), the swapper's lease (FOR UPDATE, the fence), then the
segment rows of the range (FOR UPDATE: a second swap of an overlapping run waits, then finds
them changed)."""

from __future__ import annotations

from collections.abc import Sequence

from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import swap as s
from streamhouse.storage.metadata.postgres_base import INSERT_SEGMENT, NOW, PostgresBase, hold_fence, lock_topic
from streamhouse.storage.model import SegmentInfo

_OVERLAPPING = s.overlapping_sql("$", "FOR UPDATE")
_DELETE = s.delete_sql("$")
_RECORD = s.record_deletion_sql(NOW, "$")
_DUE = s.due_sql(NOW, "$")


class PostgresSwap(PostgresBase):
    async def replace_segments(
        self, old: Sequence[SegmentInfo], new: SegmentInfo, resource: str, holder: str, epoch: int, grace_ms: int
    ) -> None:
        s.validate_swap(old, new, resource, holder, epoch, grace_ms)
        async with self._conn(transaction=True) as conn:
            r.check_partition(new.topic, new.partition, await lock_topic(conn, new.topic, "FOR KEY SHARE"))
            await hold_fence(conn, resource, holder, epoch)
            found = await conn.fetch(_OVERLAPPING, new.topic, new.partition, new.base_offset, new.end_offset)
            s.check_unchanged(old, found)
            await conn.executemany(_DELETE, [(seg.topic, seg.partition, seg.base_offset) for seg in old])
            await conn.execute(INSERT_SEGMENT, *r.segment_values(new))
            await conn.executemany(_RECORD, [(seg.object_key, seg.topic, seg.partition, grace_ms) for seg in old])

    async def due_deletions(self, limit: int = 1000) -> list[s.DeferredDeletion]:
        async with self._conn() as conn:
            rows = await conn.fetch(_DUE, max(1, limit))
        return [s.deletion_from_row(row) for row in rows]

    async def list_deletions(self) -> list[s.DeferredDeletion]:
        async with self._conn() as conn:
            rows = await conn.fetch(s.LIST_SQL)
        return [s.deletion_from_row(row) for row in rows]

    async def deferred_among(self, keys: Sequence[str]) -> set[str]:
        checked = s.validate_keys(keys)
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT object_key FROM deferred_deletions WHERE object_key = ANY($1::text[])", checked
            )
        return {str(row["object_key"]) for row in rows}

    async def forget_deletions(self, keys: Sequence[str]) -> None:
        checked = s.validate_keys(keys)
        async with self._conn(transaction=True) as conn:
            await conn.executemany("DELETE FROM deferred_deletions WHERE object_key = $1", [(k,) for k in checked])
