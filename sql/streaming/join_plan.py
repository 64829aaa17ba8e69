"""Planning a continuous query that joins two topics (docs/DESIGN.md §8, issue 17): a window join.

    plan_window_join(select_sql, tree, schema_of, watermark_of) -> JoinPlan

sql.streaming.continuous.plan_continuous picks the planner: one topic, sql.streaming.plan; two
topics with window calls, this module; two without, sql.streaming.interval_plan. A window
join is Flink's: each topic is read by one window table function
(TUMBLE / HOP / CUMULATE, the same window on both sides, each over its topic's watermark
column), and the two windowed relations are joined on window_start, window_end (directly or
through the aliases a subquery gives them, as Nexmark q8 does) and any equality keys. Such a
join is bounded: a window's rows of both sides can be joined — and dropped — once the job's
watermark (the minimum over both topics' partitions) passes the window's end. The join
operator (sql.streaming.join) keeps each side's rows of open windows and, when windows close,
runs `JoinPlan.query_sql` (the user's query with each call replaced by its side's table of
the closing windows' rows) in DataFusion.

Anything else that joins streams has no bound on its state and is refused with a SqlError
naming the bound that is missing: a topic read without a window, windows not joined on
window_start and window_end, or different windows on the two sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import WindowCall, ident_name, to_sql
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.windows.calls import bind_window
from streamhouse.sql.windows.datafusion_sql import WindowSpec
from streamhouse.sql.windows.relations import Relations, find_cte, table_name

__all__ = ["JoinPlan", "JoinSide", "plan_window_join", "side_table", "topics_read", "unbounded_join"]

_ALIGNED = ("TUMBLE", "HOP", "CUMULATE")


def side_table(index: int) -> str:
    """The table a side's windowed rows are registered under when windows close."""
    return f"__sh_join_side{index}"


def unbounded_join(topics: list[str], detail: str) -> str:
    """The refusal of a stream join without a bound: which bound is missing, and the two forms
    a continuous query accepts."""
    listed = " and ".join(repr(t) for t in topics)
    return (
        f"a join of the streams {listed} in a continuous query needs a bound on its state: {detail}. "
        "Use a window join (TUMBLE / HOP / CUMULATE over each topic, joined ON l.window_start = "
        "r.window_start AND l.window_end = r.window_end AND keys) or an interval condition "
        "(a.ts BETWEEN b.ts - INTERVAL … AND b.ts + INTERVAL …); ad-hoc SELECTs join anything"
    )


@dataclass(frozen=True)
class JoinSide:
    """One joined topic: what is read of it and the window its rows fall in."""

    topic: str
    table: str  # side_table(i): the name the query reads its windowed rows under
    topic_schema: pa.Schema
    columns: tuple[str, ...]  # the topic columns kept in state, in the topic's order
    window: WindowSpec
    event_time: str
    delay_ms: int

    @property
    def input_schema(self) -> pa.Schema:
        return pa.schema([self.topic_schema.field(name) for name in self.columns])

    @property
    def windowed_schema(self) -> pa.Schema:
        return single._windowed_schema(self.input_schema, self.window)


@dataclass(frozen=True)
class JoinPlan:
    """A window join of two topics (see the module doc). `query_sql` reads each side's
    windowed rows under `side.table`."""

    sql: str
    sides: tuple[JoinSide, JoinSide]
    query_sql: str
    output_schema: pa.Schema
    kind: str = "window join"

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(side.topic for side in self.sides)

    @property
    def window(self) -> WindowSpec:
        return self.sides[0].window

    def describe(self) -> str:
        """What EXPLAIN shows of a job: the join kind and the state it keeps."""
        spec = self.window
        shape = f"{spec.kind} size {spec.size_ms} ms" + (f" step {spec.step_ms} ms" if spec.kind != "TUMBLE" else "")
        parts = [f"{self.kind}: {shape}; joined when the job watermark (min over both topics' partitions) passes"]
        parts[0] += " window_end"
        for side in self.sides:
            parts.append(
                f"state {side.topic}: rows of open windows ({', '.join(side.columns)}), "
                f"by {side.event_time} (watermark delay {side.delay_ms} ms), dropped when their last window closes"
            )
        return "\n".join(parts)


def plan_window_join(
    select_sql: str, tree: exp.Query, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf
) -> JoinPlan:
    """The window join of the two topics `tree` (parsed `select_sql`) reads; SqlError naming
    the missing bound otherwise."""
    return _JoinPlanner(select_sql, tree, schema_of, watermark_of).plan()


def topics_read(tree: exp.Expr) -> dict[str, exp.Table]:
    """The topics a query reads (CTE names aside), each with its first reference."""
    return _topics(tree)


def _topics(tree: exp.Expr) -> dict[str, exp.Table]:
    names: dict[str, exp.Table] = {}
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Identifier) and find_cte(table) is None:
            names.setdefault(table_name(table), table)
    return names


class _JoinPlanner:
    def __init__(self, sql: str, tree: exp.Query, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf) -> None:
        self.sql = sql
        self.tree = tree
        self.watermark_of = watermark_of
        # The single-topic planner's checks (window locality, errors with positions) apply per side.
        self.base = single._Planner(sql, schema_of, watermark_of)
        self.base.tree = tree
        self.relations: Relations = self.base.relations

    def plan(self) -> JoinPlan:
        names = _topics(self.tree)
        topics = sorted(names)
        if len(topics) > 2:
            raise self.base.fail(f"a continuous query joins at most two topics; this one reads {', '.join(topics)}")
        calls = list(self.tree.find_all(WindowCall))
        specs = [bind_window(call, self.relations, self.sql) for call in calls]
        inputs = [single._data_table(call) for call in calls]
        by_topic: dict[str, list[int]] = {}
        for i, node in enumerate(inputs):
            if not isinstance(node, exp.Table):
                raise self.base.fail("in a window join each window call reads its topic itself (TABLE topic)", calls[i])
            by_topic.setdefault(table_name(node), []).append(i)
        for table in self.tree.find_all(exp.Table):
            raw = isinstance(table.this, exp.Identifier) and find_cte(table) is None
            if raw and not any(table is node for node in inputs):
                raise self.base.fail(
                    unbounded_join(topics, f"topic {table_name(table)!r} is read without a window"),
                    table,
                    table_name(table),
                )
        for topic in topics:
            if topic not in by_topic:
                raise self.base.fail(unbounded_join(topics, f"topic {topic!r} is read without a window"))
            if len(by_topic[topic]) > 1:
                raise self.base.fail(
                    f"a window join reads each topic through one window call; {topic!r} has {len(by_topic[topic])}",
                    calls[by_topic[topic][1]],
                )
        first = specs[0]
        for call, spec in zip(calls, specs, strict=True):
            if spec.kind not in _ALIGNED:
                raise self.base.fail(
                    f"a window join needs TUMBLE, HOP or CUMULATE windows on both sides, not {spec.kind}", call
                )
            if (spec.kind, spec.size_ms, spec.step_ms, spec.offset_ms) != (
                first.kind,
                first.size_ms,
                first.step_ms,
                first.offset_ms,
            ):
                raise self.base.fail(
                    unbounded_join(topics, "the two sides are not the same window (kind, size, step and offset)"),
                    call,
                )
        self._check_window_keys(topics, calls)
        for call in calls:
            self.base._check_window_local(single._holder(call))
        if self.tree.args.get("limit") or self.tree.args.get("offset"):
            raise self.base.fail("LIMIT / OFFSET at the top of a continuous query would cut each firing's output")
        order = [table_name(node) for node in inputs if isinstance(node, exp.Table)]
        sides_info: list[tuple[str, pa.Schema, WindowSpec, str, int]] = []
        for i, (call, spec, topic) in enumerate(zip(calls, specs, order, strict=True)):
            watermark = self.watermark_of(topic)
            if watermark is None:
                raise self.base.fail(
                    f"topic {topic!r} declares no watermark; a window join needs one on both topics "
                    f"(CREATE TOPIC {topic} (..., WATERMARK FOR {spec.time_column} AS {spec.time_column} "
                    "- INTERVAL '1' SECOND))",
                    call,
                    topic,
                )
            column, delay_ms = watermark
            if spec.time_column != column:
                raise self.base.fail(
                    f"{spec.kind}: windows over {spec.time_column!r}, but the watermark of topic {topic!r} is on "
                    f"{column!r}; a continuous query windows by the watermark column",
                    call,
                    spec.time_column,
                )
            sides_info.append((topic, self.relations.table_schema(topic), spec, column, delay_ms))
            holder = single._holder(call)
            holder.replace(exp.Table(this=exp.to_identifier(side_table(i)), alias=holder.args.get("alias")))
        query_sql = to_sql(self.tree)
        sides = tuple(
            JoinSide(
                topic=topic,
                table=side_table(i),
                topic_schema=schema,
                columns=single._named_columns(self.tree, schema, (column,)),
                window=spec,
                event_time=column,
                delay_ms=delay_ms,
            )
            for i, (topic, schema, spec, column, delay_ms) in enumerate(sides_info)
        )
        assert len(sides) == 2
        try:
            output = _plan_schema(sides, query_sql)
        except Exception as error:  # DataFusion raises plain Exceptions for planning errors
            raise self.base.fail(f"cannot plan the continuous query: {single._clean(str(error))}") from None
        return JoinPlan(sql=self.sql, sides=(sides[0], sides[1]), query_sql=query_sql, output_schema=output)

    def _check_window_keys(self, topics: list[str], calls: list[WindowCall]) -> None:
        """Some join must equate window_start and window_end of the two sides (through the names
        a subquery projects them as): otherwise rows of different windows meet, and a side's
        rows could never be dropped. A qualified operand must name its side (the call's alias
        or that of a subquery around it); an unqualified one is taken on trust."""
        starts, ends = {"window_start"}, {"window_end"}
        for alias in self.tree.find_all(exp.Alias):
            inner = alias.this
            if isinstance(inner, exp.Column):
                if ident_name(inner) in starts:
                    starts.add(alias.alias)
                elif ident_name(inner) in ends:
                    ends.add(alias.alias)
        names = [_side_names(call) for call in calls]

        def sides_of(column: exp.Column) -> set[int]:
            if not column.table:
                return {0, 1}
            return {i for i, known in enumerate(names) if column.table in known}

        def crosses(eq: exp.EQ) -> bool:
            left, right = sides_of(eq.this), sides_of(eq.expression)
            return any(a != b for a in left for b in right)

        for join in self.tree.find_all(exp.Join):
            on = join.args.get("on")
            if on is None:
                continue
            pairs = [
                (ident_name(eq.this), ident_name(eq.expression))
                for eq in on.find_all(exp.EQ)
                if isinstance(eq.this, exp.Column) and isinstance(eq.expression, exp.Column) and crosses(eq)
            ]
            if any(a in starts and b in starts for a, b in pairs) and any(a in ends and b in ends for a, b in pairs):
                return
        raise self.base.fail(unbounded_join(topics, "the windowed sides are not joined on window_start and window_end"))


def _side_names(call: WindowCall) -> set[str]:
    """The names a side's rows go by: its call's alias and the alias of every subquery around it."""
    found = set()
    holder = single._holder(call)
    if holder.alias:
        found.add(holder.alias)
    node: exp.Expr | None = holder.parent
    while node is not None:
        if isinstance(node, exp.Subquery) and node.alias:
            found.add(node.alias)
        node = node.parent
    return found


def _plan_schema(sides: tuple[JoinSide, ...], query_sql: str) -> pa.Schema:
    ctx = datafusion.SessionContext()
    for side in sides:
        ctx.register_record_batches(side.table, [[pa.RecordBatch.from_pylist([], schema=side.windowed_schema)]])
    result: pa.Schema = ctx.sql(query_sql).schema()
    return result
