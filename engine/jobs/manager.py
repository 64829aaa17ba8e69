"""Jobs of this agent: statements that create, drop and list them, and placement — every
job is leased like a partition (`job/{name}`, engine/agent/leases.py), so with several agents
each job runs in exactly one place and moves when its agent dies."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging

import pyarrow as pa

from streamhouse.agent.failures import RoundLog
from streamhouse.agent.leases import HeldLeases, Leases
from streamhouse.jobs.host import JobHost
from streamhouse.jobs.output import output_schema
from streamhouse.jobs.rights import creator_of_request
from streamhouse.jobs.runner import JobRunner, job_plan
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.ddl import CreateJob, DropJob
from streamhouse.sql.statements.job_options import CREATOR, parse_job_options
from streamhouse.sql.streaming.changes import changes_schema
from streamhouse.sql.streaming.explain import explain_job
from streamhouse.sql.streaming.interval_plan import IntervalPlan
from streamhouse.sql.streaming.join_plan import JoinPlan
from streamhouse.sql.streaming.life_agg import LifeAggPlan
from streamhouse.sql.streaming.operator import WindowOperator
from streamhouse.sql.streaming.two_sided import late_schema
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import FencedError, JobNotFoundError, LeaseHeldError, TopicNotFoundError
from streamhouse.storage.model import JobInfo, job_resource
from streamhouse.storage.tasks import cancel_and_wait, wait_event

log = logging.getLogger(__name__)


class JobManager:
    def __init__(self, host: JobHost) -> None:
        self.host = host  # what jobs use of their agent: not the AgentService (jobs/host.py)
        self.running: dict[str, tuple[JobRunner, asyncio.Task[None]]] = {}
        # The lease of each job placed here, by name; its epoch is the runner's checkpoint fence.
        config = host.config
        self.leases: HeldLeases[str] = HeldLeases(
            Leases(host.metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms),
            self._lease_lost,
        )
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # The last failure of each job that stopped with an error (e.g. a source value that does
        # not fit its declared columns): logged once, shown by SHOW JOBS.
        self.failures: dict[str, str] = {}

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._place_forever(), name="jobs")

    async def close(self) -> None:
        if self._loop is not None:
            await cancel_and_wait([self._loop])
        for name in list(self.running):
            await self._stop(name, release=True)

    # -- statements -----------------------------------------------------------------------------
    async def create(self, statement: CreateJob) -> pa.Table:
        metadata = self.host.metadata
        options = parse_job_options(statement.options, statement.name)
        if CREATOR in statement.options:
            raise SqlError(f"{statement.name}: option {CREATOR!r} is set by the agent (the creating principal)")
        emit = options.emit
        org = ns.org_of(statement.name)  # the job's org: its query names that org's topics only
        topics = ns.scoped(await metadata.list_topics(), org)
        probe = JobInfo(statement.name, statement.select, statement.name, statement.options, 0, 0)
        try:
            plan = job_plan(probe, topics)
        except KeyError as exc:
            raise SqlError(f"unknown topic {exc.args[0]!r}; SHOW TOPICS lists them") from None
        if isinstance(plan, LifeAggPlan):
            if emit != "changes":
                raise SqlError(
                    f"a {plan.kind}'s results change as rows close (a GROUP BY or OVER across a lifetime join's "
                    "rows never closes on a stream), so the job must emit changes (WITH ('emit' = 'changes'))"
                )
        elif emit == "changes":
            if isinstance(plan, JoinPlan | IntervalPlan):
                raise SqlError(f"'emit' = 'changes' is not supported for {plan.kind}s yet; use 'final'")
            WindowOperator(plan, emit=emit)  # SqlError for what changes mode does not support
        dead_letter = options.dead_letter
        if dead_letter and dead_letter not in topics:
            # A join's late rows carry both topics' columns and `source_topic` naming theirs.
            value_schema = (
                output_schema(late_schema(plan)).to_json()
                if isinstance(plan, JoinPlan | IntervalPlan)
                else topics[plan.topic].value_schema
            )
            await self.host.topics.create_topic(ns.inner(dead_letter, org), 1, {}, value_schema)
        if statement.materialized:
            schema = output_schema(changes_schema(plan.output_schema) if emit == "changes" else plan.output_schema)
            await self.host.topics.create_topic(statement.name, 1, {"job": statement.name}, schema.to_json())
        elif (ns.outer(statement.name, org) or statement.name) not in topics:
            raise TopicNotFoundError(statement.name)
        creator = creator_of_request()  # the job runs with its creator's rights (jobs/rights.py)
        stored = dict(statement.options) | ({CREATOR: creator} if creator else {})
        job = await metadata.create_job(statement.name, statement.select, statement.name, stored)
        self._wake.set()
        return pa.table({"job": [job.name], "output_topic": [job.output_topic]})

    async def explain(self, statement: CreateJob) -> pa.Table:
        """EXPLAIN CREATE MATERIALIZED VIEW / INSERT INTO: how the job would run and the state
        it keeps (sql/streaming/explain.py); creates nothing."""
        topics = ns.scoped(await self.host.metadata.list_topics(), ns.org_of(statement.name))
        probe = JobInfo(statement.name, statement.select, statement.name, statement.options, 0, 0)
        try:
            plan = job_plan(probe, topics)
        except KeyError as exc:
            raise SqlError(f"unknown topic {exc.args[0]!r}; SHOW TOPICS lists them") from None
        return explain_job(plan)

    async def drop(self, statement: DropJob, *, materialized: bool) -> pa.Table:
        try:
            job = await self.host.metadata.get_job(statement.name)
        except JobNotFoundError:
            if statement.if_exists:
                return pa.table({"dropped": pa.array([], pa.string())})
            raise
        await self._stop(job.name, release=False)
        self.failures.pop(job.name, None)
        for key in await self.host.metadata.delete_job(job.name):
            with contextlib.suppress(Exception):
                await self.host.store.delete(key)
        if materialized:
            with contextlib.suppress(TopicNotFoundError):
                info = await self.host.metadata.get_topic(job.output_topic)
                if info.config.get("job") == job.name:  # only a view's own topic goes with it
                    await self.host.topics.delete_topic(job.output_topic)
        return pa.table({"dropped": [job.name]})

    async def show(self) -> pa.Table:
        metadata = self.host.metadata
        rows: dict[str, list[object]] = {k: [] for k in _SHOW_COLUMNS}
        topics = {t.name: t for t in await metadata.list_topics()}
        for job in await metadata.list_jobs():
            checkpoint = await metadata.latest_checkpoint(job.name)
            stats = dict(checkpoint.stats) if checkpoint else {}
            lag = 0
            if checkpoint is not None:
                for (topic, p), offset in checkpoint.source_offsets.items():
                    if topic in topics:
                        # Counted to the acknowledged end: records still waiting for their
                        # durable round are lag too (wait_for_job waits for them).
                        lag += max(0, await self.host.topics.acked_end(topic, p) - offset)
            lease = await metadata.get_lease(job_resource(job.name))
            state = "running here" if job.name in self.running else "running" if lease else "waiting"
            if job.name in self.failures:
                state += f"; last failure: {self.failures[job.name]}"
            watermark = stats.get("watermark", -1)
            values = {
                "job": job.name,
                "output_topic": job.output_topic,
                "state": state,
                "source_lag": lag,
                "watermark": None if watermark in (-1, None) else _iso(int(watermark)),
                "rows_in": stats.get("rows_in", 0),
                "rows_out": stats.get("rows_out", 0),
                "late_rows": stats.get("late_rows", 0),
                "retention_skipped": stats.get("retention_skipped", 0),
                "checkpoints": checkpoint.seq if checkpoint else 0,
                "last_checkpoint": _iso(checkpoint.created_at_ms) if checkpoint else None,
                "sql": job.sql,
                "options": json.dumps(dict(job.options), sort_keys=True),
            }
            for key in _SHOW_COLUMNS:
                rows[key].append(values[key])
        return pa.table(rows)

    # -- placement ------------------------------------------------------------------------------
    async def _place_forever(self) -> None:
        every = self.host.config.renew_interval_ms / 1000
        said = RoundLog("job placement round", log)
        while True:
            try:
                await self._place()
            except Exception as exc:
                said.failed(exc)
            else:
                said.succeeded()
            self._wake.clear()
            await wait_event(self._wake, every)

    async def _place(self) -> None:
        metadata = self.host.metadata
        jobs = {j.name: j for j in await metadata.list_jobs()}
        for name in [n for n in self.running if n not in jobs]:
            await self._stop(name, release=False)
        for name, job in jobs.items():
            entry = self.running.get(name)
            if entry is not None and not entry[1].done():
                if not await self.leases.renew(name):  # lost: _lease_lost has stopped the runner
                    await self._stop(name, release=False)
                continue
            try:
                # A previous incarnation of this agent (same agent id, e.g. restarted on another
                # port) is dead since the WAL lock is ours: take the job back now rather than a
                # lease TTL later, as partitions do. A lease this holder still has keeps its epoch.
                lease = await self.leases.leases.acquire(job_resource(name), take_back="earlier-self")
            except LeaseHeldError:
                continue
            self.leases.add(name, lease)
            runner = JobRunner(self.host, job, lease.epoch)
            task = asyncio.create_task(runner.run(), name=f"job {name}")
            task.add_done_callback(functools.partial(self._finished, name))
            self.running[name] = (runner, task)
            log.info("running job %s at epoch %d", name, lease.epoch)

    def _finished(self, name: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = str(task.exception())
            repeated = self.failures.get(name) == error
            self.failures[name] = error
            # A fenced or failed runner is retried by the next placement round: at once the
            # first time, a renew interval later when it failed the same way (no spinning).
            log.log(logging.DEBUG if repeated else logging.WARNING, "job %s stopped: %s", name, error)
            self.running.pop(name, None)
            if not repeated:
                self._wake.set()

    async def _lease_lost(self, name: str, error: FencedError) -> None:
        del error  # the runner's own fenced checkpoint says the same; stopping is what matters
        await self._stop(name, release=False)

    async def _stop(self, name: str, *, release: bool) -> None:
        entry = self.running.pop(name, None)
        if entry is None:
            self.leases.forget(name)
            return
        await cancel_and_wait([entry[1]])
        if not release:
            self.leases.forget(name)
            return
        with contextlib.suppress(Exception):
            await self.leases.release(name)


_SHOW_COLUMNS = (
    "job",
    "output_topic",
    "state",
    "source_lag",
    "watermark",
    "rows_in",
    "rows_out",
    "late_rows",
    "retention_skipped",
    "checkpoints",
    "last_checkpoint",
    "sql",
    "options",
)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
