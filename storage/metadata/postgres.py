"""PostgreSQL metadata store (asyncpg pool), for several agents sharing one cluster.

Row locks give the serialisation SQLite gets from its file lock. Every transaction that locks
more than one row takes them in one order, topic → lease → partition, so concurrent commits,
lease takeovers and topic deletion queue behind each other instead of deadlocking. Job
checkpoints come first in that order: job → job lease → topics → partitions, each group sorted.
Nothing that holds a topic or partition lock ever waits for a job row or a job's lease, so the
two orders cannot form a cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from streamhouse.storage.errors import (
    InvalidInputError,
    JobExistsError,
    JobNotFoundError,
    LeaseHeldError,
    StorageUnavailableError,
    TopicExistsError,
    TopicNotFoundError,
)
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

if TYPE_CHECKING:  # the proxy is generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    _Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

# PostgreSQL's clock in epoch ms. clock_timestamp(), not now(): now() is frozen at transaction
# start, and a lease must be judged at the moment the statement runs.
_NOW = "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint"
# Any 64-bit key works; it only has to be the same for every StreamHouse opening this database.
_MIGRATION_LOCK = 0x5354_4D48_4F55_5345 & 0x7FFF_FFFF_FFFF_FFFF
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE 08: connection lost or refused by the server
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
)

# One atomic statement: concurrent acquirers of one row queue on its lock, each seeing the
# previous one's result, so exactly one of them can take a free lease.
_ACQUIRE = c.acquire_lease_sql(_NOW, "$")
_SEGMENTS = f"SELECT {c.SEGMENT_COLUMNS} FROM segments WHERE topic = $1 AND partition_id = $2 AND end_offset > $3"
_INSERT_SEGMENT = (
    f"INSERT INTO segments ({c.SEGMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {_NOW})"
)


class PostgresMetadataStore:
    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self._url = url
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, max_connections: int = 8) -> PostgresMetadataStore:
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=max_connections, timeout=10, command_timeout=60)
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"cannot reach metadata store {_redact(url)}: {exc}") from exc
        except ValueError as exc:  # asyncpg's DSN parser
            raise InvalidInputError(f"bad PostgreSQL URL {_redact(url)}: {exc}") from exc
        store = cls(url, pool)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = False, snapshot: bool = False) -> AsyncIterator[_Conn]:
        """A pooled connection; `transaction` wraps it in a (read committed) transaction,
        `snapshot` in a read-only repeatable-read one, where every statement sees one state."""
        if self._closed:
            raise StorageUnavailableError(f"metadata store {_redact(self._url)} is closed")
        try:
            async with self._pool.acquire() as conn:
                if snapshot:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        yield conn
                elif transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except _UNAVAILABLE as exc:
            raise StorageUnavailableError(f"metadata store {_redact(self._url)}: {exc}") from exc

    async def _migrate(self) -> None:
        async with self._conn(transaction=True) as conn:
            # Several agents may start at once; the first applies, the rest wait and find it done.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(SCHEMA_MIGRATIONS_DDL)
            applied = [int(row[0]) for row in await conn.fetch("SELECT version FROM schema_migrations")]
            for migration in pending(applied):
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, {_NOW})",
                    migration.version,
                    migration.name,
                )

    async def now_ms(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval(f"SELECT {_NOW}"))

    # -- topics -------------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
    ) -> TopicInfo:
        config_json = c.validate_new_topic(name, partitions, config, value_schema)
        async with self._conn(transaction=True) as conn:
            # The counter row lock also serialises concurrent creators; a creator that loses
            # the name race rolls its increment back with everything else.
            topic_id = await conn.fetchval(
                "UPDATE counters SET value = value + 1 WHERE name = 'topic_id' RETURNING value"
            )
            row = await conn.fetchrow(
                "INSERT INTO topics (name, topic_id, partitions, config, value_schema, created_at_ms)"
                f" VALUES ($1, $2, $3, $4, $5, {_NOW}) ON CONFLICT (name) DO NOTHING"
                f" RETURNING {c.TOPIC_COLUMNS}",
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
            return c.topic_from_row(row)

    async def get_topic(self, name: str) -> TopicInfo:
        c.validate_topic_name(name)
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {c.TOPIC_COLUMNS} FROM topics WHERE name = $1", name)
        if row is None:
            raise TopicNotFoundError(name)
        return c.topic_from_row(row)

    async def list_topics(self) -> list[TopicInfo]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {c.TOPIC_COLUMNS} FROM topics ORDER BY name")
        return [c.topic_from_row(row) for row in rows]

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Sequence[str] = (),
        add_partitions: int = 0,
    ) -> TopicInfo:
        change = c.validate_alter(name, set_config, reset, add_partitions)
        async with self._conn(transaction=True) as conn:
            # NO KEY UPDATE: concurrent alters and delete_topic queue on the row, while segment
            # commits (KEY SHARE) go on; they only ever see the count grow.
            row = await conn.fetchrow("SELECT partitions, config FROM topics WHERE name = $1 FOR NO KEY UPDATE", name)
            if row is None:
                raise TopicNotFoundError(name)
            before = int(row["partitions"])
            after = c.check_growth(name, before, change.add_partitions)
            await conn.execute(
                "INSERT INTO partitions (topic, partition_id, end_offset)"
                " SELECT $1, p, 0 FROM generate_series($2::integer, $3::integer - 1) AS p",
                name,
                before,
                after,
            )
            updated = await conn.fetchrow(
                f"UPDATE topics SET partitions = $2, config = $3 WHERE name = $1 RETURNING {c.TOPIC_COLUMNS}",
                name,
                after,
                change.config_json(row["config"]),
            )
            assert updated is not None
            return c.topic_from_row(updated)

    async def delete_topic(self, name: str) -> list[SegmentInfo]:
        c.validate_topic_name(name)
        async with self._conn(transaction=True) as conn:
            partitions = await _lock_topic(conn, name, "FOR UPDATE")
            if partitions is None:
                raise TopicNotFoundError(name)
            resources = [partition_resource(name, p) for p in range(partitions)]
            await conn.executemany(c.REVOKE_LEASE_SQL, [(r,) for r in resources])
            rows = await conn.fetch(f"DELETE FROM segments WHERE topic = $1 RETURNING {c.SEGMENT_COLUMNS}", name)
            await conn.execute("DELETE FROM consumer_offsets WHERE topic = $1", name)
            # A job reading the topic must not resume a re-created one at the old offsets.
            await conn.execute("DELETE FROM job_source_offsets WHERE topic = $1", name)
            await conn.execute("DELETE FROM partitions WHERE topic = $1", name)
            await conn.execute("DELETE FROM topics WHERE name = $1", name)
        return c.in_log_order([c.segment_from_row(row) for row in rows])

    # -- partitions and segments ----------------------------------------------------------------
    async def get_end_offset(self, topic: str, partition: int) -> int:
        c.validate_topic_name(topic)
        c.validate_partition_arg(partition)
        async with self._conn() as conn:
            # One statement, no locks: a plain read. $2 is bigint so any int binds before the range
            # check; the int4 = int8 comparison still uses the primary key.
            row = await conn.fetchrow(
                "SELECT t.partitions, p.end_offset FROM topics t LEFT JOIN partitions p"
                " ON p.topic = t.name AND p.partition_id = $2::bigint WHERE t.name = $1",
                topic,
                partition,
            )
        c.check_partition(topic, partition, None if row is None else int(row["partitions"]))
        assert row is not None
        return int(row["end_offset"])

    async def commit_segment(self, segment: SegmentInfo, holder: str, epoch: int) -> None:
        c.validate_segment(segment, holder, epoch)
        topic, partition = segment.topic, segment.partition
        resource = partition_resource(topic, partition)
        async with self._conn(transaction=True) as conn:
            c.check_partition(topic, partition, await _lock_topic(conn, topic, "FOR KEY SHARE"))
            lease = await conn.fetchrow("SELECT holder, epoch FROM leases WHERE resource = $1 FOR UPDATE", resource)
            c.check_fence(resource, lease, holder, epoch)
            c.check_base_offset(segment, await _locked_end_offset(conn, topic, partition))
            await conn.execute(_INSERT_SEGMENT, *c.segment_values(segment))
            await conn.execute(
                "UPDATE partitions SET end_offset = $3 WHERE topic = $1 AND partition_id = $2",
                topic,
                partition,
                segment.end_offset,
            )

    async def list_segments(
        self, topic: str, partition: int, start_offset: int = 0, end_offset: int | None = None
    ) -> list[SegmentInfo]:
        c.validate_topic_name(topic)
        c.validate_partition_arg(partition)
        c.validate_range(start_offset, end_offset)
        async with self._conn() as conn:
            c.check_partition(topic, partition, await _lock_topic(conn, topic, ""))
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
        return [c.segment_from_row(row) for row in rows]

    # -- leases ---------------------------------------------------------------------------------
    async def acquire_lease(self, resource: str, holder: str, ttl_ms: int) -> Lease:
        c.validate_resource(resource)
        c.validate_holder(holder)
        c.validate_ttl(ttl_ms)
        async with self._conn() as conn:
            # Between a declined upsert and the read of the holder the lease may be released or
            # deleted; then try again rather than report a holder that no longer exists.
            for _ in range(3):
                row = await conn.fetchrow(_ACQUIRE, resource, holder, ttl_ms)
                if row is not None:
                    return c.lease_from_row(row)
                current = await conn.fetchval("SELECT holder FROM leases WHERE resource = $1", resource)
                if current is not None and current != holder:
                    raise LeaseHeldError(resource, current)
        raise StorageUnavailableError(f"lease {resource!r} kept changing hands; try again")

    async def renew_lease(self, resource: str, holder: str, epoch: int, ttl_ms: int) -> Lease:
        c.validate_resource(resource)
        c.validate_holder(holder)
        c.validate_ttl(ttl_ms)
        c.validate_epoch(epoch)
        async with self._conn() as conn:
            # An expired lease nobody took may be renewed: the epoch, not the expiry, is the fence.
            row = await conn.fetchrow(
                f"UPDATE leases SET expires_at_ms = {_NOW} + $4"
                f" WHERE resource = $1 AND holder = $2 AND epoch = $3 RETURNING {c.LEASE_COLUMNS}",
                resource,
                holder,
                epoch,
                ttl_ms,
            )
            if row is None:
                current = await conn.fetchrow("SELECT holder, epoch FROM leases WHERE resource = $1", resource)
                raise c.fenced(resource, current, holder, epoch)
        return c.lease_from_row(row)

    async def release_lease(self, resource: str, holder: str, epoch: int) -> None:
        c.validate_resource(resource)
        c.validate_holder(holder)
        c.validate_epoch(epoch)
        async with self._conn() as conn:
            # LEAST: an already expired lease keeps its expiry; raising it to now would revive it.
            await conn.execute(
                f"UPDATE leases SET expires_at_ms = LEAST(expires_at_ms, {_NOW})"
                " WHERE resource = $1 AND holder = $2 AND epoch = $3",
                resource,
                holder,
                epoch,
            )

    async def get_lease(self, resource: str) -> Lease | None:
        c.validate_resource(resource)
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {c.LEASE_COLUMNS} FROM leases WHERE resource = $1", resource)
        return None if row is None else c.lease_from_row(row)

    # -- jobs -------------------------------------------------------------------------------------
    async def create_job(
        self, name: str, sql: str, output_topic: str, options: Mapping[str, str] | None = None
    ) -> JobInfo:
        options_json = c.validate_new_job(name, sql, output_topic, options)
        async with self._conn(transaction=True) as conn:
            # As in create_topic: the counter row lock serialises creators, and the loser of a
            # name race rolls its increment back.
            job_id = await conn.fetchval("UPDATE counters SET value = value + 1 WHERE name = 'job_id' RETURNING value")
            row = await conn.fetchrow(
                "INSERT INTO jobs (name, job_id, sql_text, output_topic, options, created_at_ms)"
                f" VALUES ($1, $2, $3, $4, $5, {_NOW}) ON CONFLICT (name) DO NOTHING RETURNING {c.JOB_COLUMNS}",
                name,
                job_id,
                sql,
                output_topic,
                options_json,
            )
            if row is None:
                raise JobExistsError(name)
            return c.job_from_row(row)

    async def get_job(self, name: str) -> JobInfo:
        c.validate_job_name(name)
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {c.JOB_COLUMNS} FROM jobs WHERE name = $1", name)
        if row is None:
            raise JobNotFoundError(name)
        return c.job_from_row(row)

    async def list_jobs(self) -> list[JobInfo]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {c.JOB_COLUMNS} FROM jobs ORDER BY name")
        return [c.job_from_row(row) for row in rows]

    async def delete_job(self, name: str) -> list[str]:
        c.validate_job_name(name)
        async with self._conn(transaction=True) as conn:
            # The job row lock waits for a checkpoint in flight, which holds it until it commits.
            if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1 FOR UPDATE", name) is None:
                raise JobNotFoundError(name)
            await conn.execute(c.REVOKE_JOB_LEASE_SQL, job_resource(name))
            await conn.execute("DELETE FROM job_source_offsets WHERE job = $1", name)
            rows = await conn.fetch("DELETE FROM job_checkpoints WHERE job = $1 RETURNING seq, state_key", name)
            await conn.execute("DELETE FROM jobs WHERE name = $1", name)
        return c.state_keys(rows)

    async def commit_checkpoint(self, checkpoint: Checkpoint, holder: str, epoch: int) -> None:
        plan = c.validate_checkpoint(checkpoint, holder, epoch)
        job = checkpoint.job
        resource = job_resource(job)
        async with self._conn(transaction=True) as conn:
            # The job row lock serialises the job's checkpoints (and delete_job): the seq read
            # below cannot change before this transaction commits.
            if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1 FOR UPDATE", job) is None:
                raise JobNotFoundError(job)
            # As in commit_segment: a takeover (acquire_lease) waits for this commit to finish,
            # so nothing is committed under an epoch after it stopped being current.
            lease = await conn.fetchrow("SELECT holder, epoch FROM leases WHERE resource = $1 FOR UPDATE", resource)
            c.check_fence(resource, lease, holder, epoch)
            c.check_seq(
                job, checkpoint.seq, await conn.fetchval("SELECT max(seq) FROM job_checkpoints WHERE job = $1", job)
            )
            # KEY SHARE on every topic named, sources included, keeps delete_topic out until we
            # commit; it does not block producers, whose commits take the same mode.
            for topic, partitions in plan.topics.items():
                count = await _lock_topic(conn, topic, "FOR KEY SHARE")
                for partition in partitions:
                    c.check_partition(topic, partition, count)
            # Output segments are fenced by the job's lease (checked above), not by partition
            # leases: the job is the writer of its output partitions.
            for (topic, partition), run in plan.outputs.items():
                c.check_base_offset(run[0], await _locked_end_offset(conn, topic, partition))
                await conn.executemany(_INSERT_SEGMENT, [c.segment_values(s) for s in run])
                await conn.execute(
                    "UPDATE partitions SET end_offset = $3 WHERE topic = $1 AND partition_id = $2",
                    topic,
                    partition,
                    run[-1].end_offset,
                )
            await conn.executemany(
                "INSERT INTO job_source_offsets (job, topic, partition_id, next_offset) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (job, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset",
                [(job, topic, partition, offset) for topic, partition, offset in plan.sources],
            )
            await conn.execute(
                f"INSERT INTO job_checkpoints ({c.CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, {_NOW})",
                *c.checkpoint_values(checkpoint, plan),
            )
            await conn.execute(
                "DELETE FROM job_checkpoints WHERE job = $1 AND seq <= $2",
                job,
                checkpoint.seq - c.CHECKPOINT_HISTORY,
            )

    async def latest_checkpoint(self, job: str) -> Checkpoint | None:
        c.validate_job_name(job)
        # A snapshot: the checkpoint row and the offsets are from the same commit.
        async with self._conn(snapshot=True) as conn:
            if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1", job) is None:
                raise JobNotFoundError(job)
            row = await conn.fetchrow(
                f"SELECT {c.CHECKPOINT_COLUMNS} FROM job_checkpoints WHERE job = $1 ORDER BY seq DESC LIMIT 1", job
            )
            if row is None:
                return None
            offsets = await conn.fetch(
                "SELECT topic, partition_id, next_offset FROM job_source_offsets WHERE job = $1", job
            )
        return c.checkpoint_from_row(row, offsets)

    # -- consumer groups --------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        c.validate_group(group)
        c.validate_topic_name(topic)
        pairs = c.validate_offsets(offsets)
        async with self._conn(transaction=True) as conn:
            partitions = await _lock_topic(conn, topic, "FOR KEY SHARE")
            if partitions is None:  # checked even when there are no offsets to store
                raise TopicNotFoundError(topic)
            for partition, _ in pairs:
                c.check_partition(topic, partition, partitions)
            await conn.executemany(
                "INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset, committed_at_ms)"
                f" VALUES ($1, $2, $3, $4, {_NOW}) ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET"
                " next_offset = excluded.next_offset, committed_at_ms = excluded.committed_at_ms",
                [(group, topic, partition, offset) for partition, offset in pairs],
            )

    async def fetch_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        c.validate_group(group)
        if topic is not None:
            c.validate_topic_name(topic)
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
        c.validate_group(group)
        if topic is not None:
            c.validate_topic_name(topic)
        async with self._conn() as conn:
            await conn.execute(
                "DELETE FROM consumer_offsets WHERE group_id = $1 AND ($2::text IS NULL OR topic = $2)",
                group,
                topic,
            )


async def _lock_topic(conn: _Conn, topic: str, mode: str) -> int | None:
    """The topic's partition count, with its row locked in `mode` ("" for a plain read), or None
    if it does not exist.

    Writers take KEY SHARE, which only conflicts with delete_topic's UPDATE lock: a topic cannot
    vanish half way through a write, and writes to one topic never block each other on it."""
    value = await conn.fetchval(f"SELECT partitions FROM topics WHERE name = $1 {mode}", topic)
    return None if value is None else int(value)


async def _locked_end_offset(conn: _Conn, topic: str, partition: int) -> int:
    value = await conn.fetchval(
        "SELECT end_offset FROM partitions WHERE topic = $1 AND partition_id = $2 FOR UPDATE",
        topic,
        partition,
    )
    assert value is not None, "every partition of an existing topic has a row"
    return int(value)


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
