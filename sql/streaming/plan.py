"""Planning a continuous query (docs/DESIGN.md §8): what the window operator needs to run a SELECT
over a stream of micro-batches.

    plan_job(select_sql, schema_of, watermark_of) -> JobPlan

This module plans a job over one source topic (a join of two is sql.streaming.join_plan). Two
shapes are accepted:

- windowed: every window TVF call (TUMBLE / HOP / CUMULATE / SESSION, any spelling
  window_calls accepts) reads the topic itself and all calls are the same window, over the
  topic's watermark column. The operator assigns rows to windows, keeps the rows of open
  windows, and when windows fire runs `JobPlan.query_sql`: the user's query with each call
  replaced by the table WINDOWED_TABLE of the firing windows' annotated rows (the topic's
  columns plus window_start, window_end, window_time, exactly as the ad-hoc rewrite makes
  them). A plain reference to the topic beside the call (Nexmark q7's `FROM bid B JOIN
  (… TUMBLE(TABLE bid …)) B1`) reads the source rows of the firing windows, once each.
  The SELECT that reads a call must keep windows apart: an aggregate groups by window_start
  and window_end, an OVER (…) partitions by them, a DISTINCT projects them. A LIMIT at the
  top would cut each firing's output, so it is refused; an ORDER BY only orders each firing.
- stateless (no window call): a filter / projection run on each micro-batch on its own, so
  DataFusion's plan may only project, filter and unnest. Aggregates, joins, DISTINCT, OVER,
  ORDER BY, LIMIT and subqueries over an unbounded stream need a window and are refused.

Everything else is a SqlError that says why. The plan keeps only the topic columns the query
names (all of them after a `*`), so window state holds no more than it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import TableArg, WindowCall, ident_name, node_position, parse_query, to_sql
from streamhouse.sql.errors import SqlError
from streamhouse.sql.windows.calls import WINDOW_COLUMNS, bind_window
from streamhouse.sql.windows.datafusion_sql import WindowSpec, window_type
from streamhouse.sql.windows.relations import Relations, find_cte, table_name
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.values.schema import parse_value_schema

__all__ = ["WINDOWED_TABLE", "JobPlan", "SchemaOf", "WatermarkOf", "plan_job", "quoted_table", "topic_watermark"]

WINDOWED_TABLE = "__sh_windowed"

SchemaOf = Callable[[str], pa.Schema]
WatermarkOf = Callable[[str], "tuple[str, int] | None"]

# DataFusion plan nodes a per-batch (stateless) query may use.
_STATELESS_NODES = {"Projection", "Filter", "TableScan", "SubqueryAlias", "Unnest", "Union"}
_STATELESS_REFUSED = {
    "Aggregate": "aggregates over an unbounded stream need a window (GROUP BY window_start, window_end)",
    "Distinct": "DISTINCT over an unbounded stream needs a window",
    "WindowAggr": "OVER (...) over an unbounded stream needs a window TVF",
    "Sort": "ORDER BY over an unbounded stream has no meaning; order the job's output when reading it",
    "Limit": "LIMIT over an unbounded stream has no meaning",
    "Join": (
        "a join of unbounded streams needs a bound on its state, and this one has neither a window (TUMBLE / HOP / "
        "CUMULATE over each side, joined ON l.window_start = r.window_start AND l.window_end = r.window_end) "
        "nor an interval condition (a.ts BETWEEN b.ts - INTERVAL … AND b.ts + INTERVAL …)"
    ),
    "Subquery": "subqueries are not supported in a query without windows",
}
# Aggregates the dialect leaves as anonymous calls (it keeps only COUNT/SUM/MIN/MAX/AVG typed).
_AGGREGATE_NAMES = {
    "APPROX_DISTINCT", "APPROX_MEDIAN", "APPROX_PERCENTILE_CONT", "ARRAY_AGG", "BIT_AND", "BIT_OR", "BIT_XOR",
    "BOOL_AND", "BOOL_OR", "CORR", "COVAR", "COVAR_POP", "COVAR_SAMP", "FIRST_VALUE", "LAST_VALUE", "MEDIAN",
    "NTH_VALUE", "STDDEV", "STDDEV_POP", "STDDEV_SAMP", "STRING_AGG", "VAR", "VAR_POP", "VAR_SAMP", "VARIANCE",
}  # fmt: skip


@dataclass(frozen=True)
class JobPlan:
    """What the window operator runs. `window` is None for a stateless plan.

    `columns` are the topic columns the job reads, in the topic's order: micro-batches must
    carry them, and window state keeps only them. `query_sql` is DataFusion SQL over
    WINDOWED_TABLE (the firing windows' rows: `columns` + window_start, window_end,
    window_time) and, when `reads_raw`, over the topic's name (the source rows of the firing
    windows); a stateless plan's `query_sql` reads the micro-batch under the topic's name.
    """

    sql: str
    topic: str
    topic_schema: pa.Schema
    columns: tuple[str, ...]
    window: WindowSpec | None
    event_time: str | None  # the topic's watermark column
    delay_ms: int
    query_sql: str
    reads_raw: bool
    output_schema: pa.Schema

    @property
    def stateless(self) -> bool:
        return self.window is None

    @property
    def input_schema(self) -> pa.Schema:
        """The schema micro-batch rows are kept in."""
        return pa.schema([self.topic_schema.field(name) for name in self.columns])

    @property
    def windowed_schema(self) -> pa.Schema:
        return _windowed_schema(self.input_schema, self.window)


def topic_watermark(info: TopicInfo) -> tuple[str, int] | None:
    """`watermark_of` for a topic: its declared (column, delay_ms), or None."""
    schema = parse_value_schema(info.value_schema)
    if schema is None or schema.watermark is None:
        return None
    return schema.watermark.column, schema.watermark.delay_ms


def quoted_table(name: str) -> str:
    """A table name as DataFusion registers it verbatim (case kept, no folding)."""
    return '"' + name.replace('"', '""') + '"'


def plan_job(select_sql: str, schema_of: SchemaOf, watermark_of: WatermarkOf) -> JobPlan:
    """Plan a continuous query (see the module doc); SqlError when the shape is unsupported.

    `schema_of(table)` is the topic's SQL schema (sql.catalog.topic_schema) and raises
    KeyError or NotFoundError for an unknown table; `watermark_of(table)` is the topic's
    (watermark column, delay in ms), or None when it declares no watermark.
    """
    return _Planner(select_sql, schema_of, watermark_of).plan()


def _windowed_schema(schema: pa.Schema, spec: WindowSpec | None) -> pa.Schema:
    if spec is None:
        return schema
    kind = window_type(spec.time_type)
    return pa.schema([*schema, *(pa.field(name, kind) for name in WINDOW_COLUMNS)])


def _data_table(call: WindowCall) -> exp.Expr:
    """The relation a (bound) window call reads: its DATA argument, unwrapped."""
    node: exp.Expr | None = None
    for argument in call.expressions:
        if isinstance(argument, exp.Kwarg):
            if argument.this.name.lower() == "data":
                node = argument.expression
                break
        else:
            node = argument
            break
    assert node is not None, "bind_window checked the DATA argument"
    return node.this if isinstance(node, TableArg) else node


class _Planner:
    def __init__(self, sql: str, schema_of: SchemaOf, watermark_of: WatermarkOf) -> None:
        self.sql = sql
        self.schema_of = schema_of
        self.watermark_of = watermark_of
        self.tree = parse_query(sql)
        self.relations = Relations(sql, schema_of, self._refuse_nested)

    def fail(self, message: str, at: exp.Expr | None = None, name: str | None = None) -> SqlError:
        position = node_position(at, self.sql) if at is not None else None
        return SqlError(message, position=position, name=name)

    def _refuse_nested(self, relation: exp.Expr) -> None:
        raise self.fail(
            "in a continuous query a window function reads the source topic itself (TABLE topic), "
            "not a subquery or CTE; filter in WHERE after the window call instead",
            relation,
        )

    def plan(self) -> JobPlan:
        calls = list(self.tree.find_all(WindowCall))
        specs = [bind_window(call, self.relations, self.sql) for call in calls]
        inputs = [_data_table(call) for call in calls]
        topic, raw = self._source(inputs)
        schema = self.relations.table_schema(topic)
        watermark = self.watermark_of(topic)
        if not specs:
            return self._stateless(topic, schema, watermark)
        spec = specs[0]
        for call, other in zip(calls[1:], specs[1:], strict=True):
            if other != spec:
                raise self.fail(
                    "the window calls of a continuous query must all be the same window over the same topic "
                    f"(this one differs from the first: {other.kind} over {other.time_column})",
                    call,
                )
        if watermark is None:
            raise self.fail(
                f"topic {topic!r} declares no watermark; a windowed continuous query needs one "
                f"(CREATE TOPIC {topic} (..., WATERMARK FOR {spec.time_column} AS {spec.time_column} "
                "- INTERVAL '1' SECOND))",
                calls[0],
                topic,
            )
        column, delay_ms = watermark
        if spec.time_column != column:
            raise self.fail(
                f"{spec.kind}: windows over {spec.time_column!r}, but the watermark of topic {topic!r} is on "
                f"{column!r}; a continuous query windows by the watermark column",
                calls[0],
                spec.time_column,
            )
        for call in calls:
            self._check_window_local(_holder(call))
        if self.tree.args.get("limit") or self.tree.args.get("offset"):
            raise self.fail("LIMIT / OFFSET at the top of a continuous query would cut each firing's output")
        for call in calls:
            holder = _holder(call)
            holder.replace(exp.Table(this=exp.to_identifier(WINDOWED_TABLE), alias=holder.args.get("alias")))
        query_sql = to_sql(self.tree)
        columns, output = self._columns_and_output(topic, schema, spec, query_sql, raw, (column, *spec.keys))
        return JobPlan(
            sql=self.sql,
            topic=topic,
            topic_schema=schema,
            columns=columns,
            window=spec,
            event_time=column,
            delay_ms=delay_ms,
            query_sql=query_sql,
            reads_raw=raw,
            output_schema=output,
        )

    # -- the source topic -------------------------------------------------------------------
    def _source(self, inputs: list[exp.Expr]) -> tuple[str, bool]:
        """The one topic the query reads, and whether it reads it outside window calls."""
        names: dict[str, exp.Table] = {}
        raw = False
        for table in self.tree.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier) or find_cte(table) is not None:
                continue
            if table.args.get("db") or table.args.get("catalog"):
                raise self.fail(f"qualified table names are not supported: {to_sql(table)}", table)
            names.setdefault(table_name(table), table)
            raw = raw or not any(table is node for node in inputs)
        if not names:
            raise self.fail("a continuous query reads a source topic; this one reads no table")
        if len(names) > 1:
            listed = ", ".join(sorted(names))
            second = list(names.values())[1]
            raise self.fail(
                f"a continuous query reads exactly one source topic; this one reads {listed} "
                "(two topics are joined by a window join: sql.streaming.join_plan.plan_continuous plans it)",
                second,
            )
        return next(iter(names)), raw

    # -- window-locality of the SELECT reading a call ---------------------------------------
    def _check_window_local(self, holder: exp.Table) -> None:
        select = holder.parent.parent if holder.parent is not None else None
        if not isinstance(select, exp.Select):
            return
        alias = holder.args.get("alias")
        qualifier = ident_name(alias.this) if isinstance(alias, exp.TableAlias) and alias.this else None
        own = _own_nodes(select, holder)

        def window_names(items: list[exp.Expr]) -> set[str]:
            found = set()
            for item in items:
                if isinstance(item, exp.Literal) and item.is_int and 0 < int(item.name) <= len(select.expressions):
                    item = select.expressions[int(item.name) - 1]
                item = item.unalias()
                if isinstance(item, exp.Column) and (not item.table or ident_name(item.args["table"]) == qualifier):
                    found.add(ident_name(item))
            return found

        needed = {"window_start", "window_end"}
        group = select.args.get("group")
        aggregates = [n for n in own if _is_aggregate(n) and n.find_ancestor(exp.Window) is None]
        if isinstance(group, exp.Group) or aggregates:
            items = list(group.expressions) if isinstance(group, exp.Group) else []
            if not needed <= window_names(items):
                raise self.fail(
                    "an aggregate over windows must GROUP BY window_start, window_end (each window is "
                    "computed once, when it fires)",
                    group if isinstance(group, exp.Group) else aggregates[0],
                )
        for over in (n for n in own if isinstance(n, exp.Window)):
            if not needed <= window_names(list(over.args.get("partition_by") or [])):
                raise self.fail("OVER (...) over windows must PARTITION BY window_start, window_end", over)
        if select.args.get("distinct") and not needed <= window_names(list(select.expressions)):
            raise self.fail("SELECT DISTINCT over windows must select window_start and window_end", select)

    # -- schemas ----------------------------------------------------------------------------
    def _columns_and_output(
        self, topic: str, schema: pa.Schema, spec: WindowSpec | None, query_sql: str, raw: bool, extra: tuple[str, ...]
    ) -> tuple[tuple[str, ...], pa.Schema]:
        """The topic columns to keep, and the query's output schema planned over them.
        If planning over the narrowed columns fails, the full schema is tried (and its error
        reported): narrowing is an optimisation, never a new failure."""
        wanted = _named_columns(self.tree, schema, extra)
        attempts = [wanted, tuple(schema.names)] if wanted != tuple(schema.names) else [wanted]
        error: Exception | None = None
        for columns in attempts:
            kept = pa.schema([schema.field(name) for name in columns])
            try:
                return columns, _plan_schema(topic, kept, spec, query_sql, raw)
            except Exception as failure:  # DataFusion raises plain Exceptions for planning errors
                error = failure
        raise self.fail(f"cannot plan the continuous query: {_clean(str(error))}")

    def _stateless(self, topic: str, schema: pa.Schema, watermark: tuple[str, int] | None) -> JobPlan:
        event_time = (watermark[0],) if watermark and watermark[0] in schema.names else ()
        columns, output = self._columns_and_output(topic, schema, None, self.sql, True, event_time)
        kept = pa.schema([schema.field(name) for name in columns])
        refused = _plan_nodes(topic, kept, self.sql) - _STATELESS_NODES
        if refused:
            node = sorted(refused)[0]
            reason = _STATELESS_REFUSED.get(node, f"a {node} step is not supported")
            raise self.fail(f"a continuous query without a window TVF runs on each micro-batch alone: {reason}")
        return JobPlan(
            sql=self.sql,
            topic=topic,
            topic_schema=schema,
            columns=columns,
            window=None,
            event_time=watermark[0] if watermark else None,
            delay_ms=watermark[1] if watermark else 0,
            query_sql=self.sql,
            reads_raw=True,
            output_schema=output,
        )


def _holder(call: WindowCall) -> exp.Table:
    """The FROM/JOIN table node holding a window call (bind_window checked it is one)."""
    holder = call.parent
    assert isinstance(holder, exp.Table)
    return holder


def _is_aggregate(node: exp.Expr) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and str(node.this).upper() in _AGGREGATE_NAMES


def _own_nodes(select: exp.Select, holder: exp.Table) -> list[exp.Expr]:
    """Nodes of `select` itself: not inside the window call, nested queries or its WITH."""

    def prune(node: exp.Expr) -> bool:
        return node is not select and (node is holder or isinstance(node, exp.Query | exp.Subquery | exp.With))

    return [node for node in select.walk(prune=prune) if node is not select]


def _named_columns(tree: exp.Expr, schema: pa.Schema, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Topic columns the query may read: every column after a `*`, else every name written
    (a superset is safe), plus `extra` (the watermark column, session keys)."""
    if any(not isinstance(star.parent, exp.Count) for star in tree.find_all(exp.Star)):
        return tuple(schema.names)
    written = {i.name for i in tree.find_all(exp.Identifier)}
    written |= {name.lower() for name in written}
    written |= set(extra)
    return tuple(name for name in schema.names if name in written or name.lower() in written)


def _context(topic: str, schema: pa.Schema, spec: WindowSpec | None, raw: bool) -> datafusion.SessionContext:
    ctx = datafusion.SessionContext()
    if spec is not None:
        windowed = _windowed_schema(schema, spec)
        ctx.register_record_batches(WINDOWED_TABLE, [[pa.RecordBatch.from_pylist([], schema=windowed)]])
    if raw:
        ctx.register_record_batches(quoted_table(topic), [[pa.RecordBatch.from_pylist([], schema=schema)]])
    return ctx


def _plan_schema(topic: str, schema: pa.Schema, spec: WindowSpec | None, query_sql: str, raw: bool) -> pa.Schema:
    result: pa.Schema = _context(topic, schema, spec, raw).sql(query_sql).schema()
    return result


def _plan_nodes(topic: str, schema: pa.Schema, query_sql: str) -> set[str]:
    """Names of the DataFusion logical plan nodes of a query over the topic."""
    text = _context(topic, schema, None, True).sql(query_sql).logical_plan().display_indent()
    names = {line.strip().split(":")[0].strip() for line in text.splitlines() if line.strip()}
    return {"Join" if name.endswith("Join") else name for name in names}


def _clean(message: str) -> str:
    for prefix in ("DataFusion error: ", "Error during planning: ", "Schema error: "):
        message = message.replace(prefix, "")
    return message.strip()
