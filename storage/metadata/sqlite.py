"""SQLite metadata store: stdlib sqlite3 in WAL mode, for embedded and single-host use.

Every operation is one synchronous function run in the bounded IO pool (never on the event
loop) on the store's single connection, under a threading lock. Writes use BEGIN IMMEDIATE, which
takes SQLite's write lock up front: every check-then-write (fencing, offsets, lease takeover) is
then serialised against all other connections to the file, in this process or another one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from streamhouse.storage.errors import StorageUnavailableError, TopicExistsError, TopicNotFoundError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import transactions as txn
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.migrate import SCHEMA_MIGRATIONS_DDL, pending
from streamhouse.storage.metadata.sqlite_acls import SqliteAcls
from streamhouse.storage.metadata.sqlite_auth import SqliteAuth
from streamhouse.storage.metadata.sqlite_base import (
    INSERT_SEGMENT,
    NOW,
    all_rows,
    connect,
    end_offset,
    hold_fence,
    one,
    parse_sqlite_url,
    partition_count,
)
from streamhouse.storage.metadata.sqlite_jobs import SqliteLeasesJobs
from streamhouse.storage.metadata.sqlite_log_start import SqliteLogStart
from streamhouse.storage.metadata.sqlite_quotas import SqliteQuotas
from streamhouse.storage.metadata.sqlite_registry import SqliteRegistry
from streamhouse.storage.metadata.sqlite_scram import SqliteScram
from streamhouse.storage.metadata.sqlite_snapshot import SqliteSnapshot
from streamhouse.storage.metadata.sqlite_swap import SqliteSwap
from streamhouse.storage.metadata.sqlite_transactions import SqliteTransactions
from streamhouse.storage.model import SegmentInfo, TopicInfo, partition_resource

_PRODUCER_SQL = r.producer_sql(NOW, "?", ps.EXPIRY_MS)

__all__ = ["SqliteMetadataStore", "parse_sqlite_url"]


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(SCHEMA_MIGRATIONS_DDL)
    applied = [int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")]
    for migration in pending(applied):
        for statement in migration.statements():
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, {NOW})",
            (migration.version, migration.name),
        )


class SqliteMetadataStore(
    SqliteLeasesJobs,
    SqliteRegistry,
    SqliteSwap,
    SqliteLogStart,
    SqliteSnapshot,
    SqliteAuth,
    SqliteScram,
    SqliteAcls,
    SqliteQuotas,
    SqliteTransactions,
):
    """Topics, their partitions and segments, and consumer-group offsets; leases and jobs come
    from SqliteLeasesJobs, the connection from SqliteBase."""

    @classmethod
    async def open(cls, url: str) -> SqliteMetadataStore:
        path = parse_sqlite_url(url)
        try:
            conn = await run_blocking(connect, path)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailableError(f"cannot open metadata store {url!r}: {exc}") from exc
        store = cls(url, conn)
        try:
            await store._write(_migrate)
        except BaseException:
            await store.close()
            raise
        return store

    # -- topics -------------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
    ) -> TopicInfo:
        config_json = v.validate_new_topic(name, partitions, config, value_schema)

        def tx(conn: sqlite3.Connection) -> TopicInfo:
            if partition_count(conn, name) is not None:
                raise TopicExistsError(name)
            counter = one(conn, "UPDATE counters SET value = value + 1 WHERE name = 'topic_id' RETURNING value")
            assert counter is not None, "migration 0001 seeds the topic_id counter"
            row = one(
                conn,
                "INSERT INTO topics (name, topic_id, partitions, config, value_schema, created_at_ms)"
                f" VALUES (?, ?, ?, ?, ?, {NOW}) RETURNING {r.TOPIC_COLUMNS}",
                (name, int(counter[0]), partitions, config_json, value_schema),
            )
            assert row is not None
            conn.executemany(
                "INSERT INTO partitions (topic, partition_id, end_offset) VALUES (?, ?, 0)",
                ((name, p) for p in range(partitions)),
            )
            return r.topic_from_row(row)

        return await self._write(tx)

    async def get_topic(self, name: str) -> TopicInfo:
        v.validate_topic_name(name)
        row = await self._read(lambda conn: one(conn, f"SELECT {r.TOPIC_COLUMNS} FROM topics WHERE name = ?", (name,)))
        if row is None:
            raise TopicNotFoundError(name)
        return r.topic_from_row(row)

    async def list_topics(self) -> list[TopicInfo]:
        rows = await self._read(lambda conn: all_rows(conn, f"SELECT {r.TOPIC_COLUMNS} FROM topics ORDER BY name"))
        return [r.topic_from_row(row) for row in rows]

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Sequence[str] = (),
        add_partitions: int = 0,
    ) -> TopicInfo:
        change = v.validate_alter(name, set_config, reset, add_partitions)

        def tx(conn: sqlite3.Connection) -> TopicInfo:
            row = one(conn, "SELECT partitions, config FROM topics WHERE name = ?", (name,))
            if row is None:
                raise TopicNotFoundError(name)
            before = int(row["partitions"])
            after = v.check_growth(name, before, change.add_partitions)
            conn.executemany(
                "INSERT INTO partitions (topic, partition_id, end_offset) VALUES (?, ?, 0)",
                ((name, p) for p in range(before, after)),
            )
            updated = one(
                conn,
                f"UPDATE topics SET partitions = ?, config = ? WHERE name = ? RETURNING {r.TOPIC_COLUMNS}",
                (after, change.config_json(row["config"]), name),
            )
            assert updated is not None
            return r.topic_from_row(updated)

        return await self._write(tx)

    async def swap_value_schema(self, name: str, expected: str | None, value_schema: str) -> TopicInfo:
        v.validate_topic_name(name)
        v.validate_value_schema(value_schema)

        def tx(conn: sqlite3.Connection) -> TopicInfo:
            row = one(
                conn,
                f"UPDATE topics SET value_schema = ? WHERE name = ? AND value_schema IS ? RETURNING {r.TOPIC_COLUMNS}",
                (value_schema, name, expected),
            )
            if row is None:
                row = one(conn, f"SELECT {r.TOPIC_COLUMNS} FROM topics WHERE name = ?", (name,))
            if row is None:
                raise TopicNotFoundError(name)
            return r.topic_from_row(row)

        return await self._write(tx)

    async def delete_topic(self, name: str) -> list[SegmentInfo]:
        v.validate_topic_name(name)

        def tx(conn: sqlite3.Connection) -> list[SegmentInfo]:
            partitions = partition_count(conn, name)
            if partitions is None:
                raise TopicNotFoundError(name)
            rows = all_rows(conn, f"DELETE FROM segments WHERE topic = ? RETURNING {r.SEGMENT_COLUMNS}", (name,))
            conn.execute("DELETE FROM consumer_offsets WHERE topic = ?", (name,))
            # A job reading the topic must not resume a re-created one at the old offsets.
            conn.execute("DELETE FROM job_source_offsets WHERE topic = ?", (name,))
            conn.execute("DELETE FROM producer_states WHERE topic = ?", (name,))
            conn.execute("DELETE FROM kafka_txn_batches WHERE topic = ?", (name,))  # its aborted ranges
            conn.execute("DELETE FROM kafka_unanswered WHERE topic = ?", (name,))
            conn.executemany(
                r.REVOKE_LEASE_SQL.replace("$1", "?"),
                ((partition_resource(name, p),) for p in range(partitions)),
            )
            conn.execute("DELETE FROM partitions WHERE topic = ?", (name,))
            conn.execute("DELETE FROM topics WHERE name = ?", (name,))
            return r.in_log_order([r.segment_from_row(row) for row in rows])

        return await self._write(tx)

    # -- partitions and segments ----------------------------------------------------------------
    async def get_end_offset(self, topic: str, partition: int) -> int:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)
        return await self._read(lambda conn: end_offset(conn, topic, partition))

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
        resource = partition_resource(segment.topic, segment.partition)

        def tx(conn: sqlite3.Connection) -> None:
            end = end_offset(conn, segment.topic, segment.partition)
            hold_fence(conn, resource, holder, epoch)
            r.check_base_offset(segment, end)
            conn.execute(INSERT_SEGMENT, r.segment_values(segment))
            conn.execute(
                "UPDATE partitions SET end_offset = ? WHERE topic = ? AND partition_id = ?",
                (segment.end_offset, segment.topic, segment.partition),
            )
            if producers:  # docs/DESIGN.md §10: with the segment that holds their batches
                upsert, expire = _PRODUCER_SQL
                conn.executemany(upsert, (ps.state_values(segment.topic, segment.partition, s) for s in producers))
                conn.execute(expire, (segment.topic, segment.partition))
            if written:  # Kafka transactions' batches placed with the segment that makes them readable
                where = (segment.topic, segment.partition)
                unplaced = conn.execute(txn.UNPLACED, where).fetchall()
                if unplaced:
                    conn.executemany(txn.PLACE_BATCH, txn.placements(*where, written, unplaced))

        await self._write(tx)

    async def get_producer_states(self, topic: str, partition: int) -> list[ps.ProducerState]:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)

        def tx(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            r.check_partition(topic, partition, partition_count(conn, topic))
            return all_rows(conn, r.SELECT_PRODUCERS.replace("$", "?"), (topic, partition))

        return [r.producer_from_row(row, self._url) for row in await self._read(tx)]

    async def allocate_producer_id(self) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            row = one(conn, "UPDATE counters SET value = value + 1 WHERE name = 'producer_id' RETURNING value")
            assert row is not None, "migration 0003 seeds the producer_id counter"
            return int(row[0])

        return await self._write(tx)

    async def list_segments(
        self, topic: str, partition: int, start_offset: int = 0, end_offset: int | None = None
    ) -> list[SegmentInfo]:
        v.validate_topic_name(topic)
        v.validate_partition_arg(partition)
        v.validate_range(start_offset, end_offset)

        def tx(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            r.check_partition(topic, partition, partition_count(conn, topic))
            sql = f"SELECT {r.SEGMENT_COLUMNS} FROM segments WHERE topic = ? AND partition_id = ? AND end_offset > ?"
            if end_offset is None:
                return all_rows(conn, sql + " ORDER BY base_offset", (topic, partition, start_offset))
            if end_offset <= start_offset:
                return []
            return all_rows(
                conn,
                sql + " AND base_offset < ? ORDER BY base_offset",
                (topic, partition, start_offset, end_offset),
            )

        return [r.segment_from_row(row) for row in await self._read(tx)]

    # -- consumer groups --------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        v.validate_group(group)
        v.validate_topic_name(topic)
        pairs = v.validate_offsets(offsets)

        def tx(conn: sqlite3.Connection) -> None:
            partitions = partition_count(conn, topic)
            if partitions is None:  # checked even when there are no offsets to store
                raise TopicNotFoundError(topic)
            for partition, _ in pairs:
                r.check_partition(topic, partition, partitions)
            conn.executemany(
                "INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset, committed_at_ms)"
                f" VALUES (?, ?, ?, ?, {NOW}) ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET"
                " next_offset = excluded.next_offset, committed_at_ms = excluded.committed_at_ms",
                ((group, topic, partition, offset) for partition, offset in pairs),
            )

        await self._write(tx)

    async def fetch_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        v.validate_group(group)
        sql = "SELECT topic, partition_id, next_offset FROM consumer_offsets WHERE group_id = ?"
        params: tuple[object, ...] = (group,)
        if topic is not None:
            v.validate_topic_name(topic)
            sql, params = sql + " AND topic = ?", (group, topic)
        rows = await self._read(lambda conn: all_rows(conn, sql, params))
        return {(row[0], int(row[1])): int(row[2]) for row in rows}

    async def list_groups(self) -> list[str]:
        rows = await self._read(
            lambda conn: all_rows(conn, "SELECT DISTINCT group_id FROM consumer_offsets ORDER BY group_id")
        )
        return [str(row[0]) for row in rows]

    async def delete_group(self, group: str, topic: str | None = None) -> None:
        v.validate_group(group)
        sql = "DELETE FROM consumer_offsets WHERE group_id = ?"
        params: tuple[object, ...] = (group,)
        if topic is not None:
            v.validate_topic_name(topic)
            sql, params = sql + " AND topic = ?", (group, topic)
        await self._write(lambda conn: conn.execute(sql, params).close())
