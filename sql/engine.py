"""One SQL statement in, one Arrow table out: topic DDL and metadata statements are handled
here, queries are rewritten (window TVFs), analysed for pruning, fed the topics they read and
run by DataFusion under the statement's limits (query_limits, query_run): a memory cap, a time
limit, and cancellation when the caller goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import pyarrow as pa
from datafusion import SessionContext
from sqlglot import exp
from sqlglot.errors import ParseError

from streamhouse.sql.dialect import parse_query as parse_user_query
from streamhouse.sql.dialect import to_sql
from streamhouse.sql.errors import SqlError
from streamhouse.sql.org_names import client_name as _client_name
from streamhouse.sql.org_names import named as _named
from streamhouse.sql.org_names import named_jobs as _named_jobs
from streamhouse.sql.org_names import stored as _stored
from streamhouse.sql.org_names import visible_topics
from streamhouse.sql.query.catalog import TopicScan, TopicSource, scan_topic, split_small, topic_schema
from streamhouse.sql.query.coverage import read_chunk_bytes, with_coverage
from streamhouse.sql.query.latest import is_latest, latest_tables, scan_latest
from streamhouse.sql.query.limits import (
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT_S,
    QueryLimits,
    SetStatement,
    agent_limits,
    format_bytes,
    format_duration,
    parse_set,
    session_limits,
)
from streamhouse.sql.query.native import split_native
from streamhouse.sql.query.pruning import parse_query, topic_bounds
from streamhouse.sql.query.run import clean_message, clear_spill, run_query
from streamhouse.sql.query.stream import READ_AHEAD
from streamhouse.sql.statements.admin import AdminControl, parse_admin
from streamhouse.sql.statements.ddl import (
    AlterTopic,
    CreateJob,
    CreateTopic,
    Describe,
    DropJob,
    DropTopic,
    Explain,
    ShowJobs,
    ShowTopics,
    parse_statement,
)
from streamhouse.sql.windows.rewrite import rewrite_windows
from streamhouse.storage import access
from streamhouse.storage.errors import NotFoundError, QueryTimeoutError, TopicExistsError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.isolation import READ_COMMITTED
from streamhouse.storage.metadata.log_start import PartitionStats
from streamhouse.storage.metadata.txn_reads import CommittedReads
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.values.schema import parse_value_schema
from streamhouse.storage.values.types import SYSTEM_COLUMN_TYPES


@dataclass(frozen=True)
class Planned:
    sql: str  # DataFusion SQL
    names: dict[str, TopicInfo]  # table name as DataFusion sees it → topic
    latest: dict[str, TopicInfo] = field(default_factory=dict)  # `latest.<topic>` tables (sql/query/latest.py)


class JobControl(Protocol):
    """Where continuous-query statements go (the agent's job manager)."""

    async def create(self, statement: CreateJob) -> pa.Table: ...

    async def drop(self, statement: DropJob, *, materialized: bool) -> pa.Table: ...

    async def show(self) -> pa.Table: ...

    async def explain(self, statement: CreateJob) -> pa.Table: ...


class SqlEngine:
    def __init__(
        self,
        source: TopicSource,
        jobs: JobControl | None = None,
        *,
        limits: QueryLimits | None = None,
        spill_dir: Path | None = None,
        admin: AdminControl | None = None,
        committed: CommittedReads | None = None,
    ) -> None:
        """`limits`: the default and ceiling of every statement's limits (the agent's flags);
        `spill_dir`: where operators that can spill write (default: the OS temp directory);
        `committed`: the Kafka transactions' view, so queries read committed rows unless the
        session sets isolation_level = 'read_uncommitted' (None: every row is shown)."""
        self.source = source
        self.jobs = jobs
        self.limits = limits if limits is not None else agent_limits(DEFAULT_TIMEOUT_S, DEFAULT_MEMORY)
        self.spill_dir = spill_dir
        self.admin = admin  # organisations, API keys, ACLs (sql/statements/admin.py)
        self.committed = committed
        if spill_dir is not None:
            clear_spill(spill_dir)
        self.last_scans: list[TopicScan] = []  # what the last query read (tests, EXPLAIN)

    async def execute(self, sql: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        """Run one statement. `settings` are the session's SET values (query_limits.SETTINGS),
        checked against this engine's limits before anything runs."""
        setting = parse_set(sql)
        if setting is not None:
            return self._set(setting)
        limits = session_limits(settings or {}, self.limits)
        admin = parse_admin(sql)
        if admin is not None:
            if self.admin is None:
                raise SqlError("organisations, API keys and ACLs are managed by an agent (or the embedded engine)")
            return await self.admin.run(admin)
        statement = parse_statement(sql)
        if isinstance(statement, CreateTopic):
            return await self._create(statement)
        if isinstance(statement, DropTopic):
            return await self._drop(statement)
        if isinstance(statement, AlterTopic):
            s = statement
            access.require("alter", "topic", s.name)
            info = await self.source.alter_topic(_stored(s.name), s.set_config, s.reset, s.add_partitions)
            return _show([_named(info)]).select(["topic", "partitions", "config"])
        if isinstance(statement, ShowTopics):
            return _show([_named(t) for t in (await self._visible()).values()])
        if isinstance(statement, Describe):
            access.require("describe", "topic", statement.name)
            if statement.partitions:
                return await self._describe_partitions(await self._topic(statement.name))
            return _describe(_named(await self._topic(statement.name)))
        if isinstance(statement, Explain):
            job = parse_statement(statement.query)
            if isinstance(job, CreateJob) and self.jobs is not None:  # EXPLAIN of a job: its kind and state
                return await self.jobs.explain(replace(job, name=_stored(job.name)))
            return await self._governed(statement.query, limits, explain=True)
        if isinstance(statement, CreateJob | DropJob | ShowJobs):
            if self.jobs is None:
                raise SqlError("continuous queries need an agent (or the embedded engine) to run them")
            if isinstance(statement, CreateJob):
                await self._authorize_job(statement)
                return _named_jobs(await self.jobs.create(replace(statement, name=_stored(statement.name))))
            if isinstance(statement, DropJob):
                access.require("delete", "job", statement.name)
                materialized = sql.split(None, 2)[1].upper() == "MATERIALIZED"
                stored = replace(statement, name=_stored(statement.name))
                return _named_jobs(await self.jobs.drop(stored, materialized=materialized), "dropped")
            return _named_jobs(await self.jobs.show())
        return await self._governed(sql, limits, explain=False)

    def _set(self, setting: SetStatement) -> pa.Table:
        """SET is checked here (name, value, the agent's ceiling) and answered with the value in
        force; keeping it for the session is the client's part (the agent is stateless per call)."""
        if setting.value is not None:
            session_limits({setting.name: setting.value}, self.limits)
            return pa.table({"setting": [setting.name], "value": [setting.value]})
        defaults = {
            "statement_timeout": format_duration(self.limits.timeout_s) if self.limits.timeout_s else "none",
            "query_memory": format_bytes(self.limits.memory_bytes),
            "isolation_level": self.limits.isolation,
        }
        names = list(defaults) if setting.name == "all" else [setting.name]
        return pa.table({"setting": names, "value": [defaults[n] for n in names]})

    # -- DDL ------------------------------------------------------------------------------------
    async def _create(self, statement: CreateTopic) -> pa.Table:
        access.require("create", "topic", statement.name)
        schema = statement.schema.to_json() if statement.schema is not None else None
        try:
            name = _stored(statement.name)
            info = await self.source.create_topic(name, statement.partitions, statement.config, schema)
        except TopicExistsError:
            if not statement.if_not_exists:
                raise
            info = await self.source.get_topic(_stored(statement.name))
        return pa.table({"topic": [statement.name], "partitions": pa.array([info.partitions], pa.int32())})

    async def _drop(self, statement: DropTopic) -> pa.Table:
        access.require("delete", "topic", statement.name)
        try:
            await self.source.delete_topic(_stored(statement.name))
        except NotFoundError:
            if not statement.if_exists:
                raise
        return pa.table({"dropped": [statement.name]})

    async def _visible(self) -> dict[str, TopicInfo]:
        """The topics the current request may describe, by the names its org uses (its
        namespace, storage/namespace.py; ACLs, storage/access.py) → the stored topic: a query or
        SHOW TOPICS does not learn that the others exist, nor can it name another org's."""
        return visible_topics(await self.source.list_topics())

    async def _authorize_job(self, statement: CreateJob) -> None:
        """A job runs with its creator's rights, checked here when it is created: create on the
        job, create (a materialized view's new topic) or write (INSERT INTO) on its output, and
        read on every topic its query reads."""
        access.require("create", "job", statement.name)
        access.require("create" if statement.materialized else "write", "topic", statement.name)
        if access.CURRENT.get() is None:
            return  # auth off: nothing to check, and no planning cost
        planned = self._plan(statement.select, await self._visible())
        for info in (*planned.names.values(), *planned.latest.values()):
            access.require("read", "topic", _client_name(info.name))

    async def _topic(self, name: str) -> TopicInfo:
        try:
            return await self.source.get_topic(_stored(name))
        except NotFoundError:
            raise SqlError(f"topic {name!r} does not exist", name=name) from None

    async def _describe_partitions(self, info: TopicInfo) -> pa.Table:
        try:
            stats = await self.source.partition_stats(info.name)
        except NotFoundError:
            raise SqlError(f"topic {info.name!r} does not exist", name=info.name) from None
        ends = [await self.source.end_offset(info.name, s.partition) for s in stats]  # the leader's, when here
        return _partitions_table(stats, ends)

    # -- queries --------------------------------------------------------------------------------
    async def _governed(self, sql: str, limits: QueryLimits, *, explain: bool) -> pa.Table:
        """The query under its time limit. Cancelling this coroutine stops the query (query_run)."""
        if limits.timeout_s is None:
            return await self._query(sql, limits, explain=explain)
        try:
            async with asyncio.timeout(limits.timeout_s) as deadline:
                return await self._query(sql, limits, explain=explain)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise QueryTimeoutError(
                f"the statement ran longer than its time limit of {format_duration(limits.timeout_s)} and was "
                "stopped (SET statement_timeout, up to the agent's --query-timeout)"
            ) from None

    async def _query(self, sql: str, limits: QueryLimits, *, explain: bool) -> pa.Table:
        planned = self._plan(sql, await self._visible())
        for info in (*planned.names.values(), *planned.latest.values()):
            access.require("read", "topic", _client_name(info.name))  # a topic it may see but not read: refused
        tree = parse_query(planned.sql)
        # Columns from the query as written: the window rewrite's own SELECT * reads nothing more.
        columns = _referenced_columns(parse_user_query(sql))
        events = {name: _event_column(info) for name, info in planned.names.items()}
        bounds = topic_bounds(tree, set(planned.names), events)
        used = {name: info for name, info in planned.names.items() if name in bounds}
        # Plan against empty tables of the full schemas first: names and types are checked (and
        # reported against the whole table) before a single segment is read.
        schemas = {name: topic_schema(info) for name, info in (used | planned.latest).items()}
        await run_blocking(_check, schemas, planned.sql)
        chunk = read_chunk_bytes(limits.memory_bytes)
        committed = self.committed if limits.isolation == READ_COMMITTED else None
        scans = await asyncio.gather(
            *(scan_topic(self.source, info, bounds[name], columns, chunk, committed) for name, info in used.items())
        )
        self.last_scans = list(scans)
        tables, streams = await split_small(dict(zip(used, scans, strict=True)), chunk)
        latest = await asyncio.gather(*(scan_latest(self.source, info, committed) for info in planned.latest.values()))
        tables.update(zip(planned.latest, latest, strict=True))
        text = ("EXPLAIN " if explain else "") + planned.sql
        # Committed segment files DataFusion reads itself where it can (sql/query/native.py).
        streams, natives = await split_native(self.source, streams, planned.sql, explain=explain)
        held = (len(streams) + sum(n.rest is not None for n in natives.values())) * (READ_AHEAD + 1) * chunk
        result = await run_query(tables, text, limits, self.spill_dir, streams, held, natives)
        if explain:
            pairs = zip(used, scans, strict=True)
            rows = [tables[n].num_rows if n in tables else await s.stream.count_rows() for n, s in pairs]
            return _with_pruning(result, scans, rows)
        return with_coverage(result, {_client_name(s.info.name): s.coverage() for s in scans})

    def _plan(self, sql: str, topics: dict[str, TopicInfo]) -> Planned:
        names: dict[str, TopicInfo] = {}

        def schema_of(name: str) -> pa.Schema:
            info = _resolve(name, topics)
            if info is None:
                raise SqlError(f"unknown topic {name!r}; SHOW TOPICS lists them", name=name)
            return topic_schema(info)

        rewritten = rewrite_windows(sql, schema_of)
        try:
            tree = parse_query(rewritten)
        except ParseError as exc:
            raise SqlError(f"cannot parse the query: {exc}") from None
        latest = latest_tables(tree, lambda name: _resolve(name, topics))
        if latest:
            rewritten = to_sql(tree)
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if table.name in ctes or table.args.get("db") or is_latest(table.name):
                continue
            info = _resolve(table.name, topics)
            if info is None:
                raise SqlError(f"unknown topic {table.name!r}; SHOW TOPICS lists them", name=table.name)
            quoted = isinstance(table.this, exp.Identifier) and table.this.quoted
            names[table.name if quoted else table.name.lower()] = info
        return Planned(rewritten, names, latest)


def _resolve(name: str, topics: dict[str, TopicInfo]) -> TopicInfo | None:
    if name in topics:
        return topics[name]
    matches = [t for n, t in topics.items() if n.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _event_column(info: TopicInfo) -> str | None:
    schema = parse_value_schema(info.value_schema)
    return schema.event_time if schema is not None else None


def _referenced_columns(tree: exp.Expr) -> set[str] | None:
    """Columns the query may read (lower-cased), or None when a * reads them all. Every
    identifier counts (DESCRIPTOR(ts) and PARTITION BY keys are not column nodes): a superset
    of the columns is safe, a subset would not be."""
    if any(not isinstance(star.parent, exp.Count) for star in tree.find_all(exp.Star)):
        return None
    names = {i.name.lower() for i in tree.find_all(exp.Identifier)}
    return names | {"_partition", "_offset"}


def _check(schemas: dict[str, pa.Schema], sql: str) -> None:
    ctx = SessionContext()
    for name, schema in schemas.items():
        ctx.register_record_batches(name, [[pa.RecordBatch.from_pylist([], schema=schema)]])
    try:
        ctx.sql(sql).logical_plan()
    except Exception as exc:
        raise SqlError(clean_message(str(exc))) from None


def _with_pruning(plan: pa.Table, scans: list[TopicScan], read: list[int]) -> pa.Table:
    rows = [
        (
            "streamhouse pruning",
            f"topic {_client_name(s.info.name)}: partitions {s.partitions_kept}/{s.partitions_total}, "
            f"segments {s.stats.segments_kept}/{s.stats.segments_total}, "
            f"blocks {s.stats.row_groups_kept}/{s.stats.row_groups_total}, "
            f"unflushed rows {s.stats.buffered_rows}, rows read {n}, "
            f"values not matching the columns {s.stats.json_errors}",
        )
        for s, n in zip(scans, read, strict=True)
    ]
    extra = pa.table({"plan_type": [r[0] for r in rows], "plan": [r[1] for r in rows]})
    return pa.concat_tables([extra, plan.select(["plan_type", "plan"]).cast(extra.schema)])


def _show(topics: list[TopicInfo]) -> pa.Table:
    def describe(info: TopicInfo) -> str:
        schema = topic_schema(info)
        return ", ".join(f"{f.name} {f.type}" for f in schema if not f.name.startswith("_") or f.name == "_value")

    return pa.table(
        {
            "topic": [t.name for t in topics],
            "partitions": pa.array([t.partitions for t in topics], pa.int32()),
            "columns": [describe(t) for t in topics],
            "watermark": [_watermark(t) for t in topics],
            "config": [json.dumps(dict(t.config), sort_keys=True) for t in topics],
        }
    )


def _watermark(info: TopicInfo) -> str | None:
    schema = parse_value_schema(info.value_schema)
    if schema is None or schema.watermark is None:
        return None
    w = schema.watermark
    return f"{w.column} - INTERVAL '{w.delay_ms}' MILLISECOND"


def _partitions_table(stats: list[PartitionStats], ends: list[int]) -> pa.Table:
    """DESCRIBE TOPIC: per partition where the log starts (retention), where it ends, what the
    committed segments hold and when compaction last finished a pass (null: never)."""
    return pa.table(
        {
            "partition": pa.array([s.partition for s in stats], pa.int32()),
            "log_start": pa.array([s.log_start for s in stats], pa.int64()),
            "end_offset": pa.array(ends, pa.int64()),
            "durable_end_offset": pa.array([s.durable_end for s in stats], pa.int64()),
            "segments": pa.array([s.segments for s in stats], pa.int64()),
            "size_bytes": pa.array([s.size_bytes for s in stats], pa.int64()),
            "last_compacted": pa.array([s.last_compacted_ms for s in stats], pa.timestamp("ms", tz="UTC")),
        }
    )


def _describe(info: TopicInfo) -> pa.Table:
    schema = topic_schema(info)
    declared = parse_value_schema(info.value_schema)
    sql_types: dict[str, str] = {c.name: c.sql_type for c in declared.columns} if declared else {}
    system = SYSTEM_COLUMN_TYPES
    watermark = _watermark(info)
    event = declared.event_time if declared else None
    type_of: Callable[[str], str] = lambda n: system.get(n) or sql_types.get(n, "")  # noqa: E731
    return pa.table(
        {
            "column": schema.names,
            "type": [type_of(n) for n in schema.names],
            "arrow_type": [str(f.type) for f in schema],
            "nullable": [f.nullable for f in schema],
            "watermark": [watermark if n == event else None for n in schema.names],
        }
    )
