"""PostgreSQL metadata store (asyncpg pool), for several agents sharing one cluster.

Row locks give the serialisation SQLite gets from its file lock. Every transaction that locks
more than one row takes them in one order, topic → lease → partition, so concurrent commits,
lease takeovers and topic deletion queue behind each other instead of deadlocking. Job
checkpoints come first in that order: job → job lease → topics → partitions, each group sorted.
Nothing that holds a topic or partition lock ever waits for a job row or a job's lease, so the
two orders cannot form a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from streamhouse.storage.errors import (
    InvalidInputError,
    StorageUnavailableError,
    TopicExistsError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import transactions as txn
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.migrate import SCHEMA_MIGRATIONS_DDL, pending
from streamhouse.storage.metadata.postgres_acls import PostgresAcls
from streamhouse.storage.metadata.postgres_auth import PostgresAuth
from streamhouse.storage.metadata.postgres_base import (
    INSERT_SEGMENT,
    NOW,
    UNAVAILABLE,
    hold_fence,
    lock_topic,
    locked_end_offset,
    redact,
)
from streamhouse.storage.metadata.postgres_jobs import PostgresLeasesJobs
from streamhouse.storage.metadata.postgres_log_start import PostgresLogStart
from streamhouse.storage.metadata.postgres_quotas import PostgresQuotas
from streamhouse.storage.metadata.postgres_registry import PostgresRegistry
from streamhouse.storage.metadata.postgres_scram import PostgresScram
from streamhouse.storage.metadata.postgres_snapshot import PostgresSnapshot
from streamhouse.storage.metadata.postgres_swap import PostgresSwap
from streamhouse.storage.metadata.postgres_transactions import PostgresTransactions
from streamhouse.storage.metadata.registry_sql import numbered
from streamhouse.storage.model import SegmentInfo, TopicInfo, partition_resource

__all__ = ["PostgresMetadataStore"]

# Any 64-bit key works; it only has to be the same for every StreamHouse opening this database.
_MIGRATION_LOCK = 0x5354_4D48_4F55_5345 & 0x7FFF_FFFF_FFFF_FFFF
_PRODUCER_SQL = r.producer_sql(NOW, "$", ps.EXPIRY_MS)
_PLACE_TXN = numbered(txn.PLACE_BATCH)
_UNPLACED_TXN = numbered(txn.UNPLACED)
_SEGMENTS = f"SELECT {r.SEGMENT_COLUMNS} FROM segments WHERE topic = $1 AND partition_id = $2 AND end_offset > $3"


class PostgresMetadataStore(
    PostgresLeasesJobs,
    PostgresRegistry,
    PostgresSwap,
    PostgresLogStart,
    PostgresSnapshot,
    PostgresAuth,
    PostgresScram,
    PostgresAcls,
    PostgresQuotas,
    PostgresTransactions,
):
    """Topics, their partitions and segments, and consumer-group offsets; leases and jobs come
    from PostgresLeasesJobs, the pool from PostgresBase."""

    @classmethod
    async def open(cls, url: str, *, max_connections: int = 8) -> PostgresMetadataStore:
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=max_connections, timeout=10, command_timeout=60)
        except UNAVAILABLE as exc:
            raise StorageUnavailableError(f"cannot reach metadata store {redact(url)}: {exc}") from exc
        except ValueError as exc:  # asyncpg's DSN parser
            raise InvalidInputError(f"bad PostgreSQL URL {redact(url)}: {exc}") from exc
        store = cls(url, pool)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def _migrate(self) -> None:
        async with self._conn(transaction=True) as conn:
            # Several agents may start at once; the first applies, the rest wait and find it done.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(SCHEMA_MIGRATIONS_DDL)
            applied = [int(row[0]) for row in await conn.fetch("SELECT version FROM schema_migrations")]
            for migration in pending(applied):
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, {NOW})",
                    migration.version,
                    migration.name,
                )

    # -- topics -------------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
    ) -> TopicInfo:
        config_json = v.validate_new_topic(name, partitions, config, value_schema)
        async with self._conn(transaction=True) as conn:
            # The counter row lock also serialises concurrent creators; a creator that loses
            # the name race rolls its increment back with everything else.
            topic_id = await conn.fetchval(
                "UPDATE counters SET value = value + 1 WHERE name = 'topic_id' RETURNING value"
            )
            row = await conn.fetchrow(
                "INSERT INTO topics (name, topic_id, partitions, config, value_schema, created_at_ms)"
                f" VALUES ($1, $2, $3, $4, $5, {NOW}) ON CONFLICT (name) DO NOTHING"
                f" RETURNING {r.TOPIC_COLUMNS}",
                name,
                topic_id,
                partitions,
                config_json,
                value_schema,
            )
            if row is None:
                raise TopicExistsError(name)
            await conn.execute(
                "INSERT INTO partitions (topic, partition_id, end_offset)"
                " SELECT $1, p, 0 FROM generate_series(0, $2::integer - 1) AS p",
                name,
                partitions,
            )
            return r.topic_from_row(row)

    async def get_topic(self, name: str) -> TopicInfo:
        v.validate_topic_name(name)
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {r.TOPIC_COLUMNS} FROM topics WHERE name = $1", name)
        if row is None:
            raise TopicNotFoundError(name)
        return r.topic_from_row(row)

    async def list_topics(self) -> list[TopicInfo]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {r.TOPIC_COLUMNS} FROM topics ORDER BY name")
        return [r.topic_from_row(row) for row in rows]

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Sequence[str] = (),
        add_partitions: int = 0,
    ) -> TopicInfo:
        change = v.validate_alter(name, set_config, reset, add_partitions)
        async with self._conn(transaction=True) as conn:
            # NO KEY UPDATE: concurrent alters and delete_topic queue on the row, while segment
            # commits (KEY SHARE) go on; they only ever see the count grow.
            row = await conn.fetchrow("SELECT partitions, config FROM topics WHERE name = $1 FOR NO KEY UPDATE", name)
            if row is None:
                raise TopicNotFoundError(name)
            before = int(row["partitions"])
            after = v.check_growth(name, before, change.add_partitions)
            await conn.execute(
                "INSERT INTO partitions (topic, partition_id, end_offset)"
                " SELECT $1, p, 0 FROM generate_series($2::integer, $3::integer - 1) AS p",
                name,
                before,
                after,
            )
            updated = await conn.fetchrow(
                f"UPDATE topics SET partitions = $2, config = $3 WHERE name = $1 RETURNING {r.TOPIC_COLUMNS}",
                name,
                after,
                change.config_json(row["config"]),
            )
            assert updated is not None
            return r.topic_from_row(updated)

    async def swap_value_schema(self, name: str, expected: str | None, value_schema: str) -> TopicInfo:
        v.validate_topic_name(name)
        v.validate_value_schema(value_schema)
        async with self._conn(transaction=True) as conn:
            # One statement: the row lock makes a racing swap re-check the condition after ours.
            row = await conn.fetchrow(
                "UPDATE topics SET value_schema = $3 WHERE name = $1 AND value_schema IS NOT DISTINCT FROM $2"
                f" RETURNING {r.TOPIC_COLUMNS}",
                name,
                expected,
                value_schema,
            )
            if row is None:
                row = await conn.fetchrow(f"SELECT {r.TOPIC_COLUMNS} FROM topics WHERE name = $1", name)
            if row is None:
                raise TopicNotFoundError(name)
            return r.topic_from_row(row)

    async def delete_topic(self, name: str) -> list[SegmentInfo]:
        v.validate_topic_name(name)
        async with self._conn(transaction=True) as conn:
            partitions = await lock_topic(conn, name, "FOR UPDATE")
            if partitions is None:
                raise TopicNotFoundError(name)
            resources = [partition_resource(name, p) for p in range(partitions)]
            await conn.executemany(r.REVOKE_LEASE_SQL, [(r,) for r in resources])
            rows = await conn.fetch(f"DELETE FROM segments WHERE topic = $1 RETURNING {r.SEGMENT_COLUMNS}", name)
            await conn.execute("DELETE FROM consumer_offsets WHERE topic = $1", name)
            # A job reading the topic must not resume a re-created one at the old offsets.
            await conn.execute("DELETE FROM job_source_offsets WHERE topic = $1", name)
            await conn.execute("DELETE FROM producer_states WHERE topic = $1", name)
            await conn.execute("DELETE FROM kafka_txn_batches WHERE topic = $1", name)  # its aborted ranges
            await conn.execute("DELETE FROM kafka_unanswered WHERE topic = $1", name)
            await conn.execute("DELETE FROM partitions WHERE topic = $1", name)
            await conn.execute("DELETE FROM topics WHERE name = $1", name)
        return r.in_log_order([r.segment_from_row(row) for row in rows])

    # -- partitions and segments ----------------------------------------------------------------
    async def get_end_offset(self, topic: str, partition: int) -> int:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)
        async with self._conn() as conn:
            # One statement, no locks: a plain read. $2 is bigint so any int binds before the range
            # check; the int4 = int8 comparison still uses the primary key.
            row = await conn.fetchrow(
                "SELECT t.partitions, p.end_offset FROM topics t LEFT JOIN partitions p"
                " ON p.topic = t.name AND p.partition_id = $2::bigint WHERE t.name = $1",
                topic,
                partition,
            )
        r.check_partition(topic, partition, None if row is None else int(row["partitions"]))
        assert row is not None
        return int(row["end_offset"])

    async def commit_segment(
        self,
        segment: SegmentInfo,
        holder: str,
        epoch: int,
        producers: Sequence[ps.ProducerState] = (),
        written: Sequence[ps.ProducerBatch] = (),
    ) -> None:
        v.validate_segment(segment, holder, epoch)
        v.validate_producers(producers)
        topic, partition = segment.topic, segment.partition
        resource = partition_resource(topic, partition)
        async with self._conn(transaction=True) as conn:
            r.check_partition(topic, partition, await lock_topic(conn, topic, "FOR KEY SHARE"))
            await hold_fence(conn, resource, holder, epoch)
            r.check_base_offset(segment, await locked_end_offset(conn, topic, partition))
            await conn.execute(INSERT_SEGMENT, *r.segment_values(segment))
            await conn.execute(
                "UPDATE partitions SET end_offset = $3 WHERE topic = $1 AND partition_id = $2",
                topic,
                partition,
                segment.end_offset,
            )
            if producers:  # docs/DESIGN.md §10: with the segment that holds their batches
                upsert, expire = _PRODUCER_SQL
                await conn.executemany(upsert, [ps.state_values(topic, partition, s) for s in producers])
                await conn.execute(expire, topic, partition)
            if written:  # Kafka transactions' batches placed with the segment that makes them readable
                unplaced = await conn.fetch(_UNPLACED_TXN, topic, partition)
                if unplaced:
                    await conn.executemany(_PLACE_TXN, txn.placements(topic, partition, written, unplaced))

    async def get_producer_states(self, topic: str, partition: int) -> list[ps.ProducerState]:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)
        async with self._conn() as conn:
            r.check_partition(topic, partition, await lock_topic(conn, topic, ""))
            rows = await conn.fetch(r.SELECT_PRODUCERS, topic, partition)
        return [r.producer_from_row(row, redact(self.url)) for row in rows]

    async def allocate_producer_id(self) -> int:
        async with self._conn(transaction=True) as conn:
            value = await conn.fetchval(
                "UPDATE counters SET value = value + 1 WHERE name = 'producer_id' RETURNING value"
            )
        assert value is not None, "migration 0003 seeds the producer_id counter"
        return int(value)

    async def list_segments(
        self, topic: str, partition: int, start_offset: int = 0, end_offset: int | None = None
    ) -> list[SegmentInfo]:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)
        v.validate_range(start_offset, end_offset)
        async with self._conn() as conn:
            r.check_partition(topic, partition, await lock_topic(conn, topic, ""))
            if end_offset is None:
                rows = await conn.fetch(_SEGMENTS + " ORDER BY base_offset", topic, partition, start_offset)
            elif end_offset <= start_offset:
                rows = []
            else:
                rows = await conn.fetch(
                    _SEGMENTS + " AND base_offset < $4 ORDER BY base_offset",
                    topic,
                    partition,
                    start_offset,
                    end_offset,
                )
        return [r.segment_from_row(row) for row in rows]

    # -- consumer groups --------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        v.validate_group(group)
        v.validate_topic_name(topic)
        pairs = v.validate_offsets(offsets)
        async with self._conn(transaction=True) as conn:
            partitions = await lock_topic(conn, topic, "FOR KEY SHARE")
            if partitions is None:  # checked even when there are no offsets to store
                raise TopicNotFoundError(topic)
            for partition, _ in pairs:
                r.check_partition(topic, partition, partitions)
            await conn.executemany(
                "INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset, committed_at_ms)"
                f" VALUES ($1, $2, $3, $4, {NOW}) ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET"
                " next_offset = excluded.next_offset, committed_at_ms = excluded.committed_at_ms",
                [(group, topic, partition, offset) for partition, offset in pairs],
            )

    async def fetch_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        v.validate_group(group)
        if topic is not None:
            v.validate_topic_name(topic)
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT topic, partition_id, next_offset FROM consumer_offsets"
                " WHERE group_id = $1 AND ($2::text IS NULL OR topic = $2)",
                group,
                topic,
            )
        return {(row["topic"], int(row["partition_id"])): int(row["next_offset"]) for row in rows}

    async def list_groups(self) -> list[str]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT DISTINCT group_id FROM consumer_offsets ORDER BY group_id")
        return [str(row["group_id"]) for row in rows]

    async def delete_group(self, group: str, topic: str | None = None) -> None:
        v.validate_group(group)
        if topic is not None:
            v.validate_topic_name(topic)
        async with self._conn() as conn:
            await conn.execute(
                "DELETE FROM consumer_offsets WHERE group_id = $1 AND ($2::text IS NULL OR topic = $2)",
                group,
                topic,
            )
