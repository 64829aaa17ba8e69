"""PostgreSQL metadata store, part two: leases (the fence of every writer) and continuous
jobs with their checkpoints. Lock order as in postgres.py: job → job lease → topics →
partitions, each group sorted."""

from __future__ import annotations

from collections.abc import Mapping

from streamhouse.storage.errors import (
    JobExistsError,
    JobNotFoundError,
    LeaseHeldError,
    StorageUnavailableError,
)
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.postgres_base import (
    INSERT_SEGMENT,
    NOW,
    PostgresBase,
    hold_fence,
    lock_topic,
    locked_end_offset,
)
from streamhouse.storage.model import Checkpoint, JobInfo, Lease, job_resource

# One atomic statement: concurrent acquirers of one row queue on its lock, each seeing the
# previous one's result, so exactly one of them can take a free lease.
_ACQUIRE = r.acquire_lease_sql(NOW, "$")


class PostgresLeasesJobs(PostgresBase):
    # -- leases ---------------------------------------------------------------------------------
    async def acquire_lease(self, resource: str, holder: str, ttl_ms: int) -> Lease:
        v.validate_resource(resource)
        v.validate_holder(holder)
        v.validate_ttl(ttl_ms)
        async with self._conn() as conn:
            # Between a declined upsert and the read of the holder the lease may be released or
            # deleted; then try again rather than report a holder that no longer exists.
            for _ in range(3):
                row = await conn.fetchrow(_ACQUIRE, resource, holder, ttl_ms)
                if row is not None:
                    return r.lease_from_row(row)
                current = await conn.fetchval("SELECT holder FROM leases WHERE resource = $1", resource)
                if current is not None and current != holder:
                    raise LeaseHeldError(resource, current)
        raise StorageUnavailableError(f"lease {resource!r} kept changing hands; try again")

    async def renew_lease(self, resource: str, holder: str, epoch: int, ttl_ms: int) -> Lease:
        v.validate_resource(resource)
        v.validate_holder(holder)
        v.validate_ttl(ttl_ms)
        v.validate_epoch(epoch)
        async with self._conn() as conn:
            # An expired lease nobody took may be renewed: the epoch, not the expiry, is the fence.
            row = await conn.fetchrow(
                f"UPDATE leases SET expires_at_ms = {NOW} + $4"
                f" WHERE resource = $1 AND holder = $2 AND epoch = $3 RETURNING {r.LEASE_COLUMNS}",
                resource,
                holder,
                epoch,
                ttl_ms,
            )
            if row is None:
                current = await conn.fetchrow("SELECT holder, epoch FROM leases WHERE resource = $1", resource)
                raise r.fenced(resource, current, holder, epoch)
        return r.lease_from_row(row)

    async def release_lease(self, resource: str, holder: str, epoch: int) -> None:
        v.validate_resource(resource)
        v.validate_holder(holder)
        v.validate_epoch(epoch)
        async with self._conn() as conn:
            # LEAST: an already expired lease keeps its expiry; raising it to now would revive it.
            await conn.execute(
                f"UPDATE leases SET expires_at_ms = LEAST(expires_at_ms, {NOW})"
                " WHERE resource = $1 AND holder = $2 AND epoch = $3",
                resource,
                holder,
                epoch,
            )

    async def get_lease(self, resource: str) -> Lease | None:
        v.validate_resource(resource)
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {r.LEASE_COLUMNS} FROM leases WHERE resource = $1", resource)
        return None if row is None else r.lease_from_row(row)

    # -- jobs -------------------------------------------------------------------------------------
    async def create_job(
        self, name: str, sql: str, output_topic: str, options: Mapping[str, str] | None = None
    ) -> JobInfo:
        options_json = v.validate_new_job(name, sql, output_topic, options)
        async with self._conn(transaction=True) as conn:
            # As in create_topic: the counter row lock serialises creators, and the loser of a
            # name race rolls its increment back.
            job_id = await conn.fetchval("UPDATE counters SET value = value + 1 WHERE name = 'job_id' RETURNING value")
            row = await conn.fetchrow(
                "INSERT INTO jobs (name, job_id, sql_text, output_topic, options, created_at_ms)"
                f" VALUES ($1, $2, $3, $4, $5, {NOW}) ON CONFLICT (name) DO NOTHING RETURNING {r.JOB_COLUMNS}",
                name,
                job_id,
                sql,
                output_topic,
                options_json,
            )
            if row is None:
                raise JobExistsError(name)
            return r.job_from_row(row)

    async def get_job(self, name: str) -> JobInfo:
        v.validate_job_name(name)
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {r.JOB_COLUMNS} FROM jobs WHERE name = $1", name)
        if row is None:
            raise JobNotFoundError(name)
        return r.job_from_row(row)

    async def list_jobs(self) -> list[JobInfo]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {r.JOB_COLUMNS} FROM jobs ORDER BY name")
        return [r.job_from_row(row) for row in rows]

    async def delete_job(self, name: str) -> list[str]:
        v.validate_job_name(name)
        async with self._conn(transaction=True) as conn:
            # The job row lock waits for a checkpoint in flight, which holds it until it commits.
            if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1 FOR UPDATE", name) is None:
                raise JobNotFoundError(name)
            await conn.execute(r.REVOKE_JOB_LEASE_SQL, job_resource(name))
            await conn.execute("DELETE FROM job_source_offsets WHERE job = $1", name)
            rows = await conn.fetch("DELETE FROM job_checkpoints WHERE job = $1 RETURNING seq, state_key", name)
            await conn.execute("DELETE FROM jobs WHERE name = $1", name)
        return r.state_keys(rows)

    async def commit_checkpoint(self, checkpoint: Checkpoint, holder: str, epoch: int) -> None:
        plan = v.validate_checkpoint(checkpoint, holder, epoch)
        job = checkpoint.job
        resource = job_resource(job)
        async with self._conn(transaction=True) as conn:
            # The job row lock serialises the job's checkpoints (and delete_job): the seq read
            # below cannot change before this transaction commits.
            if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1 FOR UPDATE", job) is None:
                raise JobNotFoundError(job)
            # As in commit_segment: a takeover (acquire_lease) waits for this commit to finish,
            # so nothing is committed under an epoch after it stopped being current.
            await hold_fence(conn, resource, holder, epoch)
            r.check_seq(
                job, checkpoint.seq, await conn.fetchval("SELECT max(seq) FROM job_checkpoints WHERE job = $1", job)
            )
            # KEY SHARE on every topic named, sources included, keeps delete_topic out until we
            # commit; it does not block producers, whose commits take the same mode.
            for topic, partitions in plan.topics.items():
                count = await lock_topic(conn, topic, "FOR KEY SHARE")
                for partition in partitions:
                    r.check_partition(topic, partition, count)
            # Output segments are fenced by the job's lease (checked above), not by partition
            # leases: the job is the writer of its output partitions.
            for (topic, partition), run in plan.outputs.items():
                r.check_base_offset(run[0], await locked_end_offset(conn, topic, partition))
                await conn.executemany(INSERT_SEGMENT, [r.segment_values(s) for s in run])
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
                f"INSERT INTO job_checkpoints ({r.CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, {NOW})",
                *v.checkpoint_values(checkpoint, plan),
            )
            await conn.execute(
                "DELETE FROM job_checkpoints WHERE job = $1 AND seq <= $2",
                job,
                checkpoint.seq - v.CHECKPOINT_HISTORY,
            )

    async def latest_checkpoint(self, job: str) -> Checkpoint | None:
        v.validate_job_name(job)
        # A snapshot: the checkpoint row and the offsets are from the same commit.
        async with self._conn(snapshot=True) as conn:
            if await conn.fetchval("SELECT 1 FROM jobs WHERE name = $1", job) is None:
                raise JobNotFoundError(job)
            row = await conn.fetchrow(
                f"SELECT {r.CHECKPOINT_COLUMNS} FROM job_checkpoints WHERE job = $1 ORDER BY seq DESC LIMIT 1", job
            )
            if row is None:
                return None
            offsets = await conn.fetch(
                "SELECT topic, partition_id, next_offset FROM job_source_offsets WHERE job = $1", job
            )
        return r.checkpoint_from_row(row, offsets)
