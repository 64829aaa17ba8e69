"""SQLite metadata store: stdlib sqlite3 in WAL mode, for embedded and single-host use.

Every operation is one synchronous function run in the bounded IO pool (never on the event
loop) on the store's single connection, under a threading lock. Writes use BEGIN IMMEDIATE, which
takes SQLite's write lock up front: every check-then-write (fencing, offsets, lease takeover) is
then serialised against all other connections to the file, in this process or another one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from streamhouse.storage.errors import (
    InvalidInputError,
    JobExistsError,
    JobNotFoundError,
    LeaseHeldError,
    StorageUnavailableError,
    TopicExistsError,
    TopicNotFoundError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import common as c
from streamhouse.storage.metadata.migrate import SCHEMA_MIGRATIONS_DDL, pending
from streamhouse.storage.model import (
    Checkpoint,
    JobInfo,
    Lease,
    SegmentInfo,
    TopicInfo,
    job_resource,
    partition_resource,
)

T = TypeVar("T")

# SQLite's clock in epoch ms; leases are judged by it, inside SQL, never by Python's clock.
_NOW = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
# Writers queue on the file lock; a commit waits this long before the store reports unavailable.
_BUSY_TIMEOUT_MS = 30_000
_MEMORY = ":memory:"
_PREFIX = "sqlite:///"

_ACQUIRE = c.acquire_lease_sql(_NOW, "?")
_INSERT_SEGMENT = f"INSERT INTO segments ({c.SEGMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {_NOW})"


def parse_sqlite_url(url: str) -> str:
    """`sqlite:///rel/path.db` → `rel/path.db`, `sqlite:////abs/path.db` → `/abs/path.db`,
    `sqlite://:memory:` (or `sqlite:///:memory:`) → `:memory:`."""
    if url == "sqlite://:memory:":
        return _MEMORY
    if not url.startswith(_PREFIX) or len(url) == len(_PREFIX):
        raise InvalidInputError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db, sqlite:////abs/path.db")
    return url[len(_PREFIX) :]


def _connect(path: str) -> sqlite3.Connection:
    if path != _MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module never opens transactions behind our back; we BEGIN ourselves.
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed segment is what acks=durable promises; NORMAL could lose it on power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(SCHEMA_MIGRATIONS_DDL)
    applied = [int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")]
    for migration in pending(applied):
        for statement in migration.statements():
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, {_NOW})",
            (migration.version, migration.name),
        )


def _one(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
    # fetchall, not fetchone: a statement left half-stepped would keep RETURNING writes pending.
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _all(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows


def _partition_count(conn: sqlite3.Connection, topic: str) -> int | None:
    row = _one(conn, "SELECT partitions FROM topics WHERE name = ?", (topic,))
    return None if row is None else int(row[0])


def _end_offset(conn: sqlite3.Connection, topic: str, partition: int) -> int:
    c.check_partition(topic, partition, _partition_count(conn, topic))
    row = _one(conn, "SELECT end_offset FROM partitions WHERE topic = ? AND partition_id = ?", (topic, partition))
    assert row is not None, "every partition of an existing topic has a row"
    return int(row[0])


def _job_exists(conn: sqlite3.Connection, name: str) -> bool:
    return _one(conn, "SELECT 1 FROM jobs WHERE name = ?", (name,)) is not None


class SqliteMetadataStore:
    def __init__(self, url: str, conn: sqlite3.Connection) -> None:
        self._url = url
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, url: str) -> SqliteMetadataStore:
        path = parse_sqlite_url(url)
        try:
            conn = await run_blocking(_connect, path)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailableError(f"cannot open metadata store {url!r}: {exc}") from exc
        store = cls(url, conn)
        try:
            await store._write(_migrate)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        await run_blocking(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- transactions -------------------------------------------------------------------------
    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # A deferred transaction still gives the reads one consistent snapshot.
        return await run_blocking(self._run, fn, "BEGIN")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await run_blocking(self._run, fn, "BEGIN IMMEDIATE")

    def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StorageUnavailableError(f"metadata store {self._url!r} is closed")
            try:
                conn.execute(begin)
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                # Locked past busy_timeout, disk full, file gone: the store is not usable now.
                raise StorageUnavailableError(f"metadata store {self._url!r}: {exc}") from exc
            return result

    async def now_ms(self) -> int:
        return await self._read(lambda conn: int(conn.execute(f"SELECT {_NOW}").fetchall()[0][0]))

    # -- topics -------------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
    ) -> TopicInfo:
        config_json = c.validate_new_topic(name, partitions, config, value_schema)

        def tx(conn: sqlite3.Connection) -> TopicInfo:
            if _partition_count(conn, name) is not None:
                raise TopicExistsError(name)
            counter = _one(conn, "UPDATE counters SET value = value + 1 WHERE name = 'topic_id' RETURNING value")
            assert counter is not None, "migration 0001 seeds the topic_id counter"
            row = _one(
                conn,
                "INSERT INTO topics (name, topic_id, partitions, config, value_schema, created_at_ms)"
                f" VALUES (?, ?, ?, ?, ?, {_NOW}) RETURNING {c.TOPIC_COLUMNS}",
                (name, int(counter[0]), partitions, config_json, value_schema),
            )
            assert row is not None
            conn.executemany(
                "INSERT INTO partitions (topic, partition_id, end_offset) VALUES (?, ?, 0)",
                ((name, p) for p in range(partitions)),
            )
            return c.topic_from_row(row)

        return await self._write(tx)

    async def get_topic(self, name: str) -> TopicInfo:
        c.validate_topic_name(name)
        row = await self._read(lambda conn: _one(conn, f"SELECT {c.TOPIC_COLUMNS} FROM topics WHERE name = ?", (name,)))
        if row is None:
            raise TopicNotFoundError(name)
        return c.topic_from_row(row)

    async def list_topics(self) -> list[TopicInfo]:
        rows = await self._read(lambda conn: _all(conn, f"SELECT {c.TOPIC_COLUMNS} FROM topics ORDER BY name"))
        return [c.topic_from_row(row) for row in rows]

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Sequence[str] = (),
        add_partitions: int = 0,
    ) -> TopicInfo:
        change = c.validate_alter(name, set_config, reset, add_partitions)

        def tx(conn: sqlite3.Connection) -> TopicInfo:
            row = _one(conn, "SELECT partitions, config FROM topics WHERE name = ?", (name,))
            if row is None:
                raise TopicNotFoundError(name)
            before = int(row["partitions"])
            after = c.check_growth(name, before, change.add_partitions)
            conn.executemany(
                "INSERT INTO partitions (topic, partition_id, end_offset) VALUES (?, ?, 0)",
                ((name, p) for p in range(before, after)),
            )
            updated = _one(
                conn,
                f"UPDATE topics SET partitions = ?, config = ? WHERE name = ? RETURNING {c.TOPIC_COLUMNS}",
                (after, change.config_json(row["config"]), name),
            )
            assert updated is not None
            return c.topic_from_row(updated)

        return await self._write(tx)

    async def delete_topic(self, name: str) -> list[SegmentInfo]:
        c.validate_topic_name(name)

        def tx(conn: sqlite3.Connection) -> list[SegmentInfo]:
            partitions = _partition_count(conn, name)
            if partitions is None:
                raise TopicNotFoundError(name)
            rows = _all(conn, f"DELETE FROM segments WHERE topic = ? RETURNING {c.SEGMENT_COLUMNS}", (name,))
            conn.execute("DELETE FROM consumer_offsets WHERE topic = ?", (name,))
            # A job reading the topic must not resume a re-created one at the old offsets.
            conn.execute("DELETE FROM job_source_offsets WHERE topic = ?", (name,))
            conn.executemany(
                c.REVOKE_LEASE_SQL.replace("$1", "?"),
                ((partition_resource(name, p),) for p in range(partitions)),
            )
            conn.execute("DELETE FROM partitions WHERE topic = ?", (name,))
            conn.execute("DELETE FROM topics WHERE name = ?", (name,))
            return c.in_log_order([c.segment_from_row(row) for row in rows])

        return await self._write(tx)

    # -- partitions and segments ----------------------------------------------------------------
    async def get_end_offset(self, topic: str, partition: int) -> int:
        c.validate_topic_name(topic)
        c.validate_partition_arg(partition)
        return await self._read(lambda conn: _end_offset(conn, topic, partition))

    async def commit_segment(self, segment: SegmentInfo, holder: str, epoch: int) -> None:
        c.validate_segment(segment, holder, epoch)
        resource = partition_resource(segment.topic, segment.partition)

        def tx(conn: sqlite3.Connection) -> None:
            end = _end_offset(conn, segment.topic, segment.partition)
            lease = _one(conn, "SELECT holder, epoch FROM leases WHERE resource = ?", (resource,))
            c.check_fence(resource, lease, holder, epoch)
            c.check_base_offset(segment, end)
            conn.execute(_INSERT_SEGMENT, c.segment_values(segment))
            conn.execute(
                "UPDATE partitions SET end_offset = ? WHERE topic = ? AND partition_id = ?",
                (segment.end_offset, segment.topic, segment.partition),
            )

        await self._write(tx)

    async def list_segments(
        self, topic: str, partition: int, start_offset: int = 0, end_offset: int | None = None
    ) -> list[SegmentInfo]:
        c.validate_topic_name(topic)
        c.validate_partition_arg(partition)
        c.validate_range(start_offset, end_offset)

        def tx(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            c.check_partition(topic, partition, _partition_count(conn, topic))
            sql = f"SELECT {c.SEGMENT_COLUMNS} FROM segments WHERE topic = ? AND partition_id = ? AND end_offset > ?"
            if end_offset is None:
                return _all(conn, sql + " ORDER BY base_offset", (topic, partition, start_offset))
            if end_offset <= start_offset:
                return []
            return _all(
                conn,
                sql + " AND base_offset < ? ORDER BY base_offset",
                (topic, partition, start_offset, end_offset),
            )

        return [c.segment_from_row(row) for row in await self._read(tx)]

    # -- leases ---------------------------------------------------------------------------------
    async def acquire_lease(self, resource: str, holder: str, ttl_ms: int) -> Lease:
        c.validate_resource(resource)
        c.validate_holder(holder)
        c.validate_ttl(ttl_ms)

        def tx(conn: sqlite3.Connection) -> Lease:
            row = _one(conn, _ACQUIRE, (resource, holder, ttl_ms))
            if row is not None:
                return c.lease_from_row(row)
            current = _one(conn, "SELECT holder FROM leases WHERE resource = ?", (resource,))
            assert current is not None, "the upsert only declines when a live row exists"
            raise LeaseHeldError(resource, current["holder"])

        return await self._write(tx)

    async def renew_lease(self, resource: str, holder: str, epoch: int, ttl_ms: int) -> Lease:
        c.validate_resource(resource)
        c.validate_holder(holder)
        c.validate_ttl(ttl_ms)
        c.validate_epoch(epoch)

        def tx(conn: sqlite3.Connection) -> Lease:
            # Renewing an expired lease that nobody took is allowed: the epoch is still the fence.
            row = _one(
                conn,
                f"UPDATE leases SET expires_at_ms = {_NOW} + ?"
                f" WHERE resource = ? AND holder = ? AND epoch = ? RETURNING {c.LEASE_COLUMNS}",
                (ttl_ms, resource, holder, epoch),
            )
            if row is None:
                current = _one(conn, "SELECT holder, epoch FROM leases WHERE resource = ?", (resource,))
                raise c.fenced(resource, current, holder, epoch)
            return c.lease_from_row(row)

        return await self._write(tx)

    async def release_lease(self, resource: str, holder: str, epoch: int) -> None:
        c.validate_resource(resource)
        c.validate_holder(holder)
        c.validate_epoch(epoch)
        # min(): an already expired lease keeps its expiry; raising it to now would revive it.
        sql = (
            f"UPDATE leases SET expires_at_ms = min(expires_at_ms, {_NOW})"
            " WHERE resource = ? AND holder = ? AND epoch = ?"
        )
        await self._write(lambda conn: conn.execute(sql, (resource, holder, epoch)).close())

    async def get_lease(self, resource: str) -> Lease | None:
        c.validate_resource(resource)
        row = await self._read(
            lambda conn: _one(conn, f"SELECT {c.LEASE_COLUMNS} FROM leases WHERE resource = ?", (resource,))
        )
        return None if row is None else c.lease_from_row(row)

    # -- jobs -------------------------------------------------------------------------------------
    async def create_job(
        self, name: str, sql: str, output_topic: str, options: Mapping[str, str] | None = None
    ) -> JobInfo:
        options_json = c.validate_new_job(name, sql, output_topic, options)

        def tx(conn: sqlite3.Connection) -> JobInfo:
            if _job_exists(conn, name):
                raise JobExistsError(name)
            counter = _one(conn, "UPDATE counters SET value = value + 1 WHERE name = 'job_id' RETURNING value")
            assert counter is not None, "migration 0002 seeds the job_id counter"
            row = _one(
                conn,
                "INSERT INTO jobs (name, job_id, sql_text, output_topic, options, created_at_ms)"
                f" VALUES (?, ?, ?, ?, ?, {_NOW}) RETURNING {c.JOB_COLUMNS}",
                (name, int(counter[0]), sql, output_topic, options_json),
            )
            assert row is not None
            return c.job_from_row(row)

        return await self._write(tx)

    async def get_job(self, name: str) -> JobInfo:
        c.validate_job_name(name)
        row = await self._read(lambda conn: _one(conn, f"SELECT {c.JOB_COLUMNS} FROM jobs WHERE name = ?", (name,)))
        if row is None:
            raise JobNotFoundError(name)
        return c.job_from_row(row)

    async def list_jobs(self) -> list[JobInfo]:
        rows = await self._read(lambda conn: _all(conn, f"SELECT {c.JOB_COLUMNS} FROM jobs ORDER BY name"))
        return [c.job_from_row(row) for row in rows]

    async def delete_job(self, name: str) -> list[str]:
        c.validate_job_name(name)

        def tx(conn: sqlite3.Connection) -> list[str]:
            if not _job_exists(conn, name):
                raise JobNotFoundError(name)
            conn.execute(c.REVOKE_JOB_LEASE_SQL.replace("$1", "?"), (job_resource(name),))
            conn.execute("DELETE FROM job_source_offsets WHERE job = ?", (name,))
            rows = _all(conn, "DELETE FROM job_checkpoints WHERE job = ? RETURNING seq, state_key", (name,))
            conn.execute("DELETE FROM jobs WHERE name = ?", (name,))
            return c.state_keys(rows)

        return await self._write(tx)

    async def commit_checkpoint(self, checkpoint: Checkpoint, holder: str, epoch: int) -> None:
        plan = c.validate_checkpoint(checkpoint, holder, epoch)
        job = checkpoint.job
        resource = job_resource(job)

        def tx(conn: sqlite3.Connection) -> None:
            # BEGIN IMMEDIATE holds the write lock from here to COMMIT: nothing read below can
            # change before the writes land, in this process or another.
            if not _job_exists(conn, job):
                raise JobNotFoundError(job)
            lease = _one(conn, "SELECT holder, epoch FROM leases WHERE resource = ?", (resource,))
            c.check_fence(resource, lease, holder, epoch)
            last = _one(conn, "SELECT max(seq) FROM job_checkpoints WHERE job = ?", (job,))
            c.check_seq(job, checkpoint.seq, None if last is None or last[0] is None else int(last[0]))
            for topic, partitions in plan.topics.items():
                count = _partition_count(conn, topic)
                for partition in partitions:
                    c.check_partition(topic, partition, count)
            # Output segments are fenced by the job's lease (checked above), not by partition
            # leases: the job is the writer of its output partitions.
            for (topic, partition), run in plan.outputs.items():
                c.check_base_offset(run[0], _end_offset(conn, topic, partition))
                conn.executemany(_INSERT_SEGMENT, (c.segment_values(s) for s in run))
                conn.execute(
                    "UPDATE partitions SET end_offset = ? WHERE topic = ? AND partition_id = ?",
                    (run[-1].end_offset, topic, partition),
                )
            conn.executemany(
                "INSERT INTO job_source_offsets (job, topic, partition_id, next_offset) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset",
                ((job, topic, partition, offset) for topic, partition, offset in plan.sources),
            )
            conn.execute(
                f"INSERT INTO job_checkpoints ({c.CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, {_NOW})",
                c.checkpoint_values(checkpoint, plan),
            )
            conn.execute(
                "DELETE FROM job_checkpoints WHERE job = ? AND seq <= ?",
                (job, checkpoint.seq - c.CHECKPOINT_HISTORY),
            )

        await self._write(tx)

    async def latest_checkpoint(self, job: str) -> Checkpoint | None:
        c.validate_job_name(job)

        def tx(conn: sqlite3.Connection) -> Checkpoint | None:
            # One read transaction: the checkpoint row and the offsets are from the same commit.
            if not _job_exists(conn, job):
                raise JobNotFoundError(job)
            row = _one(
                conn,
                f"SELECT {c.CHECKPOINT_COLUMNS} FROM job_checkpoints WHERE job = ? ORDER BY seq DESC LIMIT 1",
                (job,),
            )
            if row is None:
                return None
            offsets = _all(
                conn, "SELECT topic, partition_id, next_offset FROM job_source_offsets WHERE job = ?", (job,)
            )
            return c.checkpoint_from_row(row, offsets)

        return await self._read(tx)

    # -- consumer groups --------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        c.validate_group(group)
        c.validate_topic_name(topic)
        pairs = c.validate_offsets(offsets)

        def tx(conn: sqlite3.Connection) -> None:
            partitions = _partition_count(conn, topic)
            if partitions is None:  # checked even when there are no offsets to store
                raise TopicNotFoundError(topic)
            for partition, _ in pairs:
                c.check_partition(topic, partition, partitions)
            conn.executemany(
                "INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset, committed_at_ms)"
                f" VALUES (?, ?, ?, ?, {_NOW}) ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET"
                " next_offset = excluded.next_offset, committed_at_ms = excluded.committed_at_ms",
                ((group, topic, partition, offset) for partition, offset in pairs),
            )

        await self._write(tx)

    async def fetch_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        c.validate_group(group)
        sql = "SELECT topic, partition_id, next_offset FROM consumer_offsets WHERE group_id = ?"
        params: tuple[object, ...] = (group,)
        if topic is not None:
            c.validate_topic_name(topic)
            sql, params = sql + " AND topic = ?", (group, topic)
        rows = await self._read(lambda conn: _all(conn, sql, params))
        return {(row[0], int(row[1])): int(row[2]) for row in rows}

    async def list_groups(self) -> list[str]:
        rows = await self._read(
            lambda conn: _all(conn, "SELECT DISTINCT group_id FROM consumer_offsets ORDER BY group_id")
        )
        return [str(row[0]) for row in rows]

    async def delete_group(self, group: str, topic: str | None = None) -> None:
        c.validate_group(group)
        sql = "DELETE FROM consumer_offsets WHERE group_id = ?"
        params: tuple[object, ...] = (group,)
        if topic is not None:
            c.validate_topic_name(topic)
            sql, params = sql + " AND topic = ?", (group, topic)
        await self._write(lambda conn: conn.execute(sql, params).close())
