"""SQLite metadata store, part two: leases (the fence of every writer) and continuous jobs with
their checkpoints. BEGIN IMMEDIATE serialises every check-then-write here (see sqlite.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from streamhouse.storage.errors import JobExistsError, JobNotFoundError, LeaseHeldError
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.sqlite_base import (
    INSERT_SEGMENT,
    NOW,
    SqliteBase,
    all_rows,
    end_offset,
    hold_fence,
    job_exists,
    one,
    partition_count,
)
from streamhouse.storage.model import Checkpoint, JobInfo, Lease, job_resource

_ACQUIRE = r.acquire_lease_sql(NOW, "?")


class SqliteLeasesJobs(SqliteBase):
    # -- leases ---------------------------------------------------------------------------------
    async def acquire_lease(self, resource: str, holder: str, ttl_ms: int) -> Lease:
        v.validate_resource(resource)
        v.validate_holder(holder)
        v.validate_ttl(ttl_ms)

        def tx(conn: sqlite3.Connection) -> Lease:
            row = one(conn, _ACQUIRE, (resource, holder, ttl_ms))
            if row is not None:
                return r.lease_from_row(row)
            current = one(conn, "SELECT holder FROM leases WHERE resource = ?", (resource,))
            assert current is not None, "the upsert only declines when a live row exists"
            raise LeaseHeldError(resource, current["holder"])

        return await self._write(tx)

    async def renew_lease(self, resource: str, holder: str, epoch: int, ttl_ms: int) -> Lease:
        v.validate_resource(resource)
        v.validate_holder(holder)
        v.validate_ttl(ttl_ms)
        v.validate_epoch(epoch)

        def tx(conn: sqlite3.Connection) -> Lease:
            # Renewing an expired lease that nobody took is allowed: the epoch is still the fence.
            row = one(
                conn,
                f"UPDATE leases SET expires_at_ms = {NOW} + ?"
                f" WHERE resource = ? AND holder = ? AND epoch = ? RETURNING {r.LEASE_COLUMNS}",
                (ttl_ms, resource, holder, epoch),
            )
            if row is None:
                current = one(conn, "SELECT holder, epoch FROM leases WHERE resource = ?", (resource,))
                raise r.fenced(resource, current, holder, epoch)
            return r.lease_from_row(row)

        return await self._write(tx)

    async def release_lease(self, resource: str, holder: str, epoch: int) -> None:
        v.validate_resource(resource)
        v.validate_holder(holder)
        v.validate_epoch(epoch)
        # min(): an already expired lease keeps its expiry; raising it to now would revive it.
        sql = (
            f"UPDATE leases SET expires_at_ms = min(expires_at_ms, {NOW})"
            " WHERE resource = ? AND holder = ? AND epoch = ?"
        )
        await self._write(lambda conn: conn.execute(sql, (resource, holder, epoch)).close())

    async def get_lease(self, resource: str) -> Lease | None:
        v.validate_resource(resource)
        row = await self._read(
            lambda conn: one(conn, f"SELECT {r.LEASE_COLUMNS} FROM leases WHERE resource = ?", (resource,))
        )
        return None if row is None else r.lease_from_row(row)

    # -- jobs -------------------------------------------------------------------------------------
    async def create_job(
        self, name: str, sql: str, output_topic: str, options: Mapping[str, str] | None = None
    ) -> JobInfo:
        options_json = v.validate_new_job(name, sql, output_topic, options)

        def tx(conn: sqlite3.Connection) -> JobInfo:
            if job_exists(conn, name):
                raise JobExistsError(name)
            counter = one(conn, "UPDATE counters SET value = value + 1 WHERE name = 'job_id' RETURNING value")
            assert counter is not None, "migration 0002 seeds the job_id counter"
            row = one(
                conn,
                "INSERT INTO jobs (name, job_id, sql_text, output_topic, options, created_at_ms)"
                f" VALUES (?, ?, ?, ?, ?, {NOW}) RETURNING {r.JOB_COLUMNS}",
                (name, int(counter[0]), sql, output_topic, options_json),
            )
            assert row is not None
            return r.job_from_row(row)

        return await self._write(tx)

    async def get_job(self, name: str) -> JobInfo:
        v.validate_job_name(name)
        row = await self._read(lambda conn: one(conn, f"SELECT {r.JOB_COLUMNS} FROM jobs WHERE name = ?", (name,)))
        if row is None:
            raise JobNotFoundError(name)
        return r.job_from_row(row)

    async def list_jobs(self) -> list[JobInfo]:
        rows = await self._read(lambda conn: all_rows(conn, f"SELECT {r.JOB_COLUMNS} FROM jobs ORDER BY name"))
        return [r.job_from_row(row) for row in rows]

    async def delete_job(self, name: str) -> list[str]:
        v.validate_job_name(name)

        def tx(conn: sqlite3.Connection) -> list[str]:
            if not job_exists(conn, name):
                raise JobNotFoundError(name)
            conn.execute(r.REVOKE_JOB_LEASE_SQL.replace("$1", "?"), (job_resource(name),))
            conn.execute("DELETE FROM job_source_offsets WHERE job = ?", (name,))
            rows = all_rows(conn, "DELETE FROM job_checkpoints WHERE job = ? RETURNING seq, state_key", (name,))
            conn.execute("DELETE FROM jobs WHERE name = ?", (name,))
            return r.state_keys(rows)

        return await self._write(tx)

    async def commit_checkpoint(self, checkpoint: Checkpoint, holder: str, epoch: int) -> None:
        plan = v.validate_checkpoint(checkpoint, holder, epoch)
        job = checkpoint.job
        resource = job_resource(job)

        def tx(conn: sqlite3.Connection) -> None:
            # BEGIN IMMEDIATE holds the write lock from here to COMMIT: nothing read below can
            # change before the writes land, in this process or another.
            if not job_exists(conn, job):
                raise JobNotFoundError(job)
            hold_fence(conn, resource, holder, epoch)
            last = one(conn, "SELECT max(seq) FROM job_checkpoints WHERE job = ?", (job,))
            r.check_seq(job, checkpoint.seq, None if last is None or last[0] is None else int(last[0]))
            for topic, partitions in plan.topics.items():
                count = partition_count(conn, topic)
                for partition in partitions:
                    r.check_partition(topic, partition, count)
            # Output segments are fenced by the job's lease (checked above), not by partition
            # leases: the job is the writer of its output partitions.
            for (topic, partition), run in plan.outputs.items():
                r.check_base_offset(run[0], end_offset(conn, topic, partition))
                conn.executemany(INSERT_SEGMENT, (r.segment_values(s) for s in run))
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
                f"INSERT INTO job_checkpoints ({r.CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, {NOW})",
                v.checkpoint_values(checkpoint, plan),
            )
            conn.execute(
                "DELETE FROM job_checkpoints WHERE job = ? AND seq <= ?",
                (job, checkpoint.seq - v.CHECKPOINT_HISTORY),
            )

        await self._write(tx)

    async def latest_checkpoint(self, job: str) -> Checkpoint | None:
        v.validate_job_name(job)

        def tx(conn: sqlite3.Connection) -> Checkpoint | None:
            # One read transaction: the checkpoint row and the offsets are from the same commit.
            if not job_exists(conn, job):
                raise JobNotFoundError(job)
            row = one(
                conn,
                f"SELECT {r.CHECKPOINT_COLUMNS} FROM job_checkpoints WHERE job = ? ORDER BY seq DESC LIMIT 1",
                (job,),
            )
            if row is None:
                return None
            offsets = all_rows(
                conn, "SELECT topic, partition_id, next_offset FROM job_source_offsets WHERE job = ?", (job,)
            )
            return r.checkpoint_from_row(row, offsets)

        return await self._read(tx)
