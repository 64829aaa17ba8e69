"""The SQLite store's segment swaps and deferred deletions (storage/metadata/swap.py), each one
transaction (BEGIN IMMEDIATE for writes: the checks and the swap are serialised against every
other writer of the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import swap as s
from streamhouse.storage.metadata.sqlite_base import (
    INSERT_SEGMENT,
    NOW,
    SqliteBase,
    all_rows,
    hold_fence,
    partition_count,
)
from streamhouse.storage.model import SegmentInfo

_OVERLAPPING = s.overlapping_sql("?", "")
_DELETE = s.delete_sql("?")
_RECORD = s.record_deletion_sql(NOW, "?")
_DUE = s.due_sql(NOW, "?")


class SqliteSwap(SqliteBase):
    async def replace_segments(
        self, old: Sequence[SegmentInfo], new: SegmentInfo, resource: str, holder: str, epoch: int, grace_ms: int
    ) -> None:
        s.validate_swap(old, new, resource, holder, epoch, grace_ms)
        old = list(old)

        def tx(conn: sqlite3.Connection) -> None:
            r.check_partition(new.topic, new.partition, partition_count(conn, new.topic))
            hold_fence(conn, resource, holder, epoch)
            found = all_rows(conn, _OVERLAPPING, (new.topic, new.partition, new.base_offset, new.end_offset))
            s.check_unchanged(old, found)
            conn.executemany(_DELETE, ((seg.topic, seg.partition, seg.base_offset) for seg in old))
            conn.execute(INSERT_SEGMENT, r.segment_values(new))
            conn.executemany(_RECORD, ((seg.object_key, seg.topic, seg.partition, grace_ms) for seg in old))

        await self._write(tx)

    async def due_deletions(self, limit: int = 1000) -> list[s.DeferredDeletion]:
        rows = await self._read(lambda conn: all_rows(conn, _DUE, (max(1, limit),)))
        return [s.deletion_from_row(row) for row in rows]

    async def list_deletions(self) -> list[s.DeferredDeletion]:
        return [s.deletion_from_row(row) for row in await self._read(lambda conn: all_rows(conn, s.LIST_SQL))]

    async def deferred_among(self, keys: Sequence[str]) -> set[str]:
        checked = s.validate_keys(keys)

        def read(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(checked), 500):  # under SQLite's bound-parameter limit
                chunk = checked[i : i + 500]
                sql = f"SELECT object_key FROM deferred_deletions WHERE object_key IN ({','.join('?' * len(chunk))})"
                found.update(str(row["object_key"]) for row in all_rows(conn, sql, tuple(chunk)))
            return found

        return await self._read(read)

    async def forget_deletions(self, keys: Sequence[str]) -> None:
        checked = s.validate_keys(keys)
        await self._write(
            lambda conn: conn.executemany(
                "DELETE FROM deferred_deletions WHERE object_key = ?", ((k,) for k in checked)
            ).close()
        )
