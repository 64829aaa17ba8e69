"""The SQLite store's log starts, retention's truncation and the per-partition figures
(storage/metadata/log_start.py), each one transaction (BEGIN IMMEDIATE for writes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from streamhouse.storage.errors import TopicNotFoundError
from streamhouse.storage.metadata import log_start as ls
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import swap as s
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.sqlite_base import NOW, SqliteBase, all_rows, hold_fence, one, partition_count
from streamhouse.storage.model import SegmentInfo


def _q(sql: str) -> str:
    return sql.replace("$", "?")  # numbered parameters: ?1, ?2, …


_OVERLAPPING = s.overlapping_sql("?", "")
_RECORD = s.record_deletion_sql(NOW, "?")
_DELETE = s.delete_sql("?")
_NEWER = _q(ls.NEWER_SQL)
_LOG_START = _q(ls.LOG_START_SQL)
_SEGMENTS = _q(ls.SEGMENTS_SQL)
_STATS = _q(ls.STATS_SQL)
_ADVANCE = _q(ls.advance_sql("MAX"))
_COMPACTED = _q(ls.compacted_sql(NOW))


class SqliteLogStart(SqliteBase):
    async def list_log(self, topic: str, partition: int) -> ls.PartitionLog:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)

        def read(conn: sqlite3.Connection) -> ls.PartitionLog:
            r.check_partition(topic, partition, partition_count(conn, topic))
            segments = tuple(r.segment_from_row(row) for row in all_rows(conn, _SEGMENTS, (topic, partition)))
            row = one(conn, _LOG_START, (topic, partition))
            assert row is not None, "every partition of an existing topic has a row"
            return ls.PartitionLog(int(row[0]), segments)

        return await self._read(read)

    async def partition_stats(self, topic: str) -> list[ls.PartitionStats]:
        v.validate_topic_name(topic)

        def read(conn: sqlite3.Connection) -> list[ls.PartitionStats]:
            if partition_count(conn, topic) is None:
                raise TopicNotFoundError(topic)
            return [ls.stats_from_row(row) for row in all_rows(conn, _STATS, (topic,))]

        return await self._read(read)

    async def truncate_log(
        self, old: Sequence[SegmentInfo], resource: str, holder: str, epoch: int, grace_ms: int
    ) -> int:
        ls.validate_truncate(old, resource, holder, epoch, grace_ms)
        old = list(old)
        topic, partition, new_start = old[0].topic, old[0].partition, old[-1].end_offset

        def tx(conn: sqlite3.Connection) -> int:
            r.check_partition(topic, partition, partition_count(conn, topic))
            hold_fence(conn, resource, holder, epoch)
            s.check_unchanged(old, all_rows(conn, _OVERLAPPING, (topic, partition, 0, new_start)))
            ls.newest_kept(topic, partition, new_start, one(conn, _NEWER, (topic, partition, new_start)) is not None)
            conn.executemany(_DELETE, ((seg.topic, seg.partition, seg.base_offset) for seg in old))
            conn.executemany(_RECORD, ((seg.object_key, seg.topic, seg.partition, grace_ms) for seg in old))
            row = one(conn, _ADVANCE, (topic, partition, new_start))
            assert row is not None
            return int(row[0])

        return await self._write(tx)

    async def set_last_compacted(self, topic: str, partition: int, at_ms: int | None = None) -> int:
        ls.validate_compacted(topic, partition, at_ms)

        def tx(conn: sqlite3.Connection) -> int:
            r.check_partition(topic, partition, partition_count(conn, topic))
            row = one(conn, _COMPACTED, (topic, partition, at_ms))
            assert row is not None
            return int(row[0])

        return await self._write(tx)
