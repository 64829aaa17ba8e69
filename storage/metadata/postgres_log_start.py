"""The PostgreSQL store's log starts, retention's truncation and the per-partition figures
(storage/metadata/log_start.py). A truncation takes its locks in the store's one order
(postgres.py): the topic (KEY SHARE), the remover's lease (FOR UPDATE, the fence), the segment
rows below the new log start (FOR UPDATE: a merge or compaction swap of them waits, then finds
them changed), then the partition row (the log start)."""

from __future__ import annotations

from collections.abc import Sequence

from streamhouse.storage.errors import TopicNotFoundError
from streamhouse.storage.metadata import log_start as ls
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import swap as s
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.postgres_base import NOW, PostgresBase, hold_fence, lock_topic
from streamhouse.storage.model import SegmentInfo

_OVERLAPPING = s.overlapping_sql("$", "FOR UPDATE")
_RECORD = s.record_deletion_sql(NOW, "$")
_DELETE = s.delete_sql("$")
_ADVANCE = ls.advance_sql("GREATEST")
_COMPACTED = ls.compacted_sql(NOW).replace("$3", "$3::bigint")  # a NULL parameter needs its type


class PostgresLogStart(PostgresBase):
    async def list_log(self, topic: str, partition: int) -> ls.PartitionLog:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)
        async with self._conn() as conn:
            r.check_partition(topic, partition, await lock_topic(conn, topic, ""))
            # Segments first, then the log start (see log_start.py): never a silent skip.
            rows = await conn.fetch(ls.SEGMENTS_SQL, topic, partition)
            start = await conn.fetchval(ls.LOG_START_SQL, topic, partition)
        assert start is not None, "every partition of an existing topic has a row"
        return ls.PartitionLog(int(start), tuple(r.segment_from_row(row) for row in rows))

    async def partition_stats(self, topic: str) -> list[ls.PartitionStats]:
        v.validate_topic_name(topic)
        async with self._conn(snapshot=True) as conn:
            if await lock_topic(conn, topic, "") is None:
                raise TopicNotFoundError(topic)
            rows = await conn.fetch(ls.STATS_SQL, topic)
        return [ls.stats_from_row(row) for row in rows]

    async def truncate_log(
        self, old: Sequence[SegmentInfo], resource: str, holder: str, epoch: int, grace_ms: int
    ) -> int:
        ls.validate_truncate(old, resource, holder, epoch, grace_ms)
        old = list(old)
        topic, partition, new_start = old[0].topic, old[0].partition, old[-1].end_offset
        async with self._conn(transaction=True) as conn:
            r.check_partition(topic, partition, await lock_topic(conn, topic, "FOR KEY SHARE"))
            await hold_fence(conn, resource, holder, epoch)
            s.check_unchanged(old, await conn.fetch(_OVERLAPPING, topic, partition, 0, new_start))
            newer = await conn.fetchval(ls.NEWER_SQL, topic, partition, new_start)
            ls.newest_kept(topic, partition, new_start, newer is not None)
            await conn.executemany(_DELETE, [(seg.topic, seg.partition, seg.base_offset) for seg in old])
            await conn.executemany(_RECORD, [(seg.object_key, seg.topic, seg.partition, grace_ms) for seg in old])
            start = await conn.fetchval(_ADVANCE, topic, partition, new_start)
        return int(start)

    async def set_last_compacted(self, topic: str, partition: int, at_ms: int | None = None) -> int:
        ls.validate_compacted(topic, partition, at_ms)
        async with self._conn(transaction=True) as conn:
            r.check_partition(topic, partition, await lock_topic(conn, topic, "FOR KEY SHARE"))
            value = await conn.fetchval(_COMPACTED, topic, partition, at_ms)
        return int(value)
