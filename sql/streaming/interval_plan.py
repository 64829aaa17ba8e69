"""Planning an interval join of two topics in a continuous query (docs/DESIGN.md §8, issue 17).

    SELECT … FROM a JOIN b ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '5' SECOND AND b.ts + INTERVAL '10' SECOND

Each side reads its topic directly (no window call); the ON condition holds a BETWEEN of one
side's watermark column against the other's, shifted by constant intervals. That bounds the
state: with low <= a.ts − b.ts <= high, a row of `a` can only meet rows of `b` whose time is
at most a.ts − low, and rows arriving later than the watermark are late, so an `a` row is
dropped once a.ts − low <= the job's watermark (a `b` row once b.ts + high <= it). Matches are
emitted as soon as the second row of a pair arrives (each pair once), so only inner joins with
a per-row SELECT (projection, filter) are accepted: aggregates over an interval join still
need a window.
"""

from __future__ import annotations

from dataclasses import dataclass

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import ident_name
from streamhouse.sql.errors import SqlError
from streamhouse.sql.intervals import IntervalError, interval_ms
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.streaming.join_plan import unbounded_join
from streamhouse.sql.windows.datafusion_sql import Timestamp
from streamhouse.sql.windows.relations import find_cte, table_name

__all__ = ["IntervalPlan", "IntervalSide", "has_interval", "plan_interval_join"]

# DataFusion plan nodes a per-row SELECT over the join may use.
_ROW_NODES = {"Projection", "Filter", "TableScan", "SubqueryAlias", "Join", "Unnest"}


@dataclass(frozen=True)
class IntervalSide:
    topic: str
    topic_schema: pa.Schema
    columns: tuple[str, ...]
    event_time: str
    time_type: Timestamp
    delay_ms: int

    @property
    def input_schema(self) -> pa.Schema:
        return pa.schema([self.topic_schema.field(name) for name in self.columns])


@dataclass(frozen=True)
class IntervalPlan:
    """An interval join: low_ms <= sides[0].time − sides[1].time <= high_ms. `query_sql` reads
    each side under its topic's name."""

    sql: str
    sides: tuple[IntervalSide, IntervalSide]
    low_ms: int
    high_ms: int
    query_sql: str
    output_schema: pa.Schema
    kind: str = "interval join"
    # Set for a regular join planned under the job's state TTL (sql.streaming.regular_join):
    # the interval [-ttl, +ttl] was added to its ON clause.
    ttl_ms: int | None = None

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(side.topic for side in self.sides)

    def keep_ms(self) -> tuple[int, int]:
        """How long after its own event time each side's row is kept (in watermark time): a
        row of side 0 until time − low <= watermark, of side 1 until time + high <= it."""
        return -self.low_ms, self.high_ms

    def describe(self) -> str:
        first, second = self.sides
        keep = self.keep_ms()
        bound = (
            f"state TTL {self.ttl_ms} ms of event time: rows whose times are at most the TTL apart join"
            if self.ttl_ms is not None
            else f"{first.topic}.{first.event_time} - {second.topic}.{second.event_time} "
            f"in [{self.low_ms}, {self.high_ms}] ms"
        )
        lines = [f"{self.kind}: {bound}; each matching pair emitted once, when its second row arrives"]
        for side, after in zip(self.sides, keep, strict=True):
            lines.append(
                f"state {side.topic}: rows ({', '.join(side.columns)}) kept until the job watermark passes "
                f"{side.event_time} + {after} ms"
            )
        return "\n".join(lines)


def plan_interval_join(
    sql: str, tree: exp.Query, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf
) -> IntervalPlan:
    """The interval join of the two topics `tree` reads; SqlError naming the missing bound or
    the unsupported shape."""
    base = single._Planner(sql, schema_of, watermark_of)
    base.tree = tree
    tables = [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and find_cte(t) is None]
    topics = sorted({table_name(t) for t in tables})
    qualifiers: dict[str, str] = {}
    for table in tables:
        qualifiers[table.alias_or_name] = table_name(table)
        qualifiers[table_name(table)] = table_name(table)
    found = _interval(tree, qualifiers)
    if found is None:
        raise base.fail(
            unbounded_join(
                topics,
                f"topic {topics[0]!r} is read without a window, and no interval condition relates the two "
                "topics' watermark columns (or give the job a state TTL for a regular join: "
                "WITH ('state.ttl' = '1 h'))",
            )
        )
    (first, first_col), (second, second_col), low, high = found
    for join in tree.find_all(exp.Join):
        if join.args.get("side") or (join.args.get("kind") or "").upper() in ("OUTER", "FULL", "ANTI", "SEMI"):
            raise base.fail(
                "an interval join in a continuous query is an inner join; outer interval joins are not supported yet",
                join,
            )
    sides = []
    for topic, column in ((first, first_col), (second, second_col)):
        watermark = watermark_of(topic)
        if watermark is None or watermark[0] != column:
            declared = "declares no watermark" if watermark is None else f"has its watermark on {watermark[0]!r}"
            raise base.fail(
                f"an interval join bounds its state by the topics' watermark columns: topic {topic!r} {declared}, "
                f"but the interval condition uses {column!r}",
                name=column,
            )
        schema = base.relations.table_schema(topic)
        time_type = schema.field(column).type
        if not isinstance(time_type, pa.TimestampType):
            raise base.fail(f"the interval join's time column {topic}.{column} is not a TIMESTAMP", name=column)
        columns = single._named_columns(tree, schema, (column,))
        sides.append(IntervalSide(topic, schema, columns, column, time_type, watermark[1]))
    ctx = datafusion.SessionContext()
    for side in sides:
        empty = pa.RecordBatch.from_pylist([], schema=side.input_schema)
        ctx.register_record_batches(single.quoted_table(side.topic), [[empty]])
    try:
        frame = ctx.sql(sql)
        output: pa.Schema = frame.schema()
        text = frame.logical_plan().display_indent()
    except Exception as error:  # DataFusion raises plain Exceptions for planning errors
        raise base.fail(f"cannot plan the continuous query: {single._clean(str(error))}") from None
    nodes = {line.strip().split(":")[0].strip() for line in text.splitlines() if line.strip()}
    nodes = {"Join" if name.endswith("Join") else name for name in nodes}
    refused = nodes - _ROW_NODES
    if refused:
        raise base.fail(
            "an interval join in a continuous query emits each matching pair once, as its second row arrives: "
            f"its SELECT may only project and filter (found {', '.join(sorted(refused))}); "
            "aggregate over a window join instead"
        )
    return IntervalPlan(sql, (sides[0], sides[1]), low, high, sql, output)


def has_interval(tree: exp.Expr) -> bool:
    """Whether a join of `tree` holds an interval condition of two topics' columns (then a state
    TTL does not apply: the interval bounds the join)."""
    tables = [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and find_cte(t) is None]
    qualifiers = {t.alias_or_name: table_name(t) for t in tables} | {table_name(t): table_name(t) for t in tables}
    return _interval(tree, qualifiers) is not None


def _interval(tree: exp.Expr, qualifiers: dict[str, str]) -> tuple[tuple[str, str], tuple[str, str], int, int] | None:
    """((topic, column) of the subject, (topic, column) of the other side, low, high) with
    low <= subject − other <= high, from a join's ON condition relating the two topics: the
    first `x BETWEEN y - i AND y + j`, else a lower and an upper comparison of the same pair
    (`x >= y - i AND x <= y + j`, either side first; strict ones bound the state the same);
    None when there is none."""
    for join in tree.find_all(exp.Join):
        on = join.args.get("on")
        if on is None:
            continue
        for between in on.find_all(exp.Between):
            subject = _column(between.this, qualifiers)
            low = _shifted(between.args.get("low"), qualifiers)
            high = _shifted(between.args.get("high"), qualifiers)
            if subject is None or low is None or high is None or low[0] != high[0] or low[0][0] == subject[0]:
                continue
            # subject BETWEEN other + low_shift AND other + high_shift
            return subject, low[0], low[1], high[1]
        lows: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}
        highs: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}
        for node in on.find_all(exp.GTE, exp.GT, exp.LTE, exp.LT):
            left, right = _column(node.this, qualifiers), _shifted(node.expression, qualifiers)
            upper = isinstance(node, exp.LTE | exp.LT)
            if left is None or right is None:  # written the other way round: other ± i <op> subject
                left, right = _column(node.expression, qualifiers), _shifted(node.this, qualifiers)
                upper = not upper
            if left is None or right is None or right[0][0] == left[0]:
                continue
            (highs if upper else lows).setdefault((left, right[0]), right[1])
        for pair, low_ms in lows.items():
            if pair in highs:
                return pair[0], pair[1], low_ms, highs[pair]
    return None


def _column(node: exp.Expr | None, qualifiers: dict[str, str]) -> tuple[str, str] | None:
    if not isinstance(node, exp.Column) or not node.table:
        return None
    topic = qualifiers.get(node.table)
    return None if topic is None else (topic, ident_name(node))


def _shifted(node: exp.Expr | None, qualifiers: dict[str, str]) -> tuple[tuple[str, str], int] | None:
    """`col`, `col + INTERVAL …` or `col - INTERVAL …` as ((topic, column), shift in ms)."""
    if node is None:
        return None
    node = node.unnest() if isinstance(node, exp.Paren) else node
    if isinstance(node, exp.Add | exp.Sub):
        column = _column(node.this, qualifiers)
        try:
            shift = interval_ms(node.expression)
        except (IntervalError, SqlError):
            return None
        if column is None:
            return None
        return column, shift if isinstance(node, exp.Add) else -shift
    column = _column(node, qualifiers)
    return None if column is None else (column, 0)
