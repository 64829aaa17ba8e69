"""Planning a join bounded by a row's own lifetime (docs/DESIGN.md §8, issue 17), Nexmark's
auctions × bids shape (q4's inner query, q9):

    SELECT … FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, …            -- or ROW_NUMBER() OVER (PARTITION BY A.id …)

The owner side (A) has a start (its watermark column) and an end column of its own; the other
side's rows (B) match while their time lies inside. An owner row's result is final once the job
watermark passes its end: every B row inside its life is in by then (a later one is late). So
the query runs when owners close, over the closing owners and the kept B rows — which is the
ad-hoc result for those owners only if the query's groups and window partitions are per
owner: every GROUP BY and every OVER (PARTITION BY …) must include the owner's join key. A
grouping over several owners (q4's outer AVG per category) never closes on an unbounded
stream, and is refused naming that.
"""

from __future__ import annotations

from dataclasses import dataclass

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import ident_name, to_sql
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.streaming.interval_plan import IntervalPlan, IntervalSide
from streamhouse.sql.windows.relations import find_cte, table_name

__all__ = ["LifePlan", "find_life", "plan_life_join"]


@dataclass(frozen=True)
class LifePlan(IntervalPlan):
    """sides[0] owns the life [event_time, end_column]; sides[1] rows match inside it."""

    end_column: str = ""
    owner_key: str = ""

    def keep_ms(self) -> tuple[int, int]:
        return 0, 0

    def describe(self) -> str:
        owner, other = self.sides
        return "\n".join(
            [
                f"lifetime join: {other.topic}.{other.event_time} within [{owner.topic}.{owner.event_time}, "
                f"{owner.topic}.{self.end_column}]; each {owner.topic} row's result emitted once the job watermark "
                f"passes its {self.end_column}",
                f"state {owner.topic}: rows ({', '.join(owner.columns)}) until the job watermark passes "
                f"{self.end_column}",
                f"state {other.topic}: rows ({', '.join(other.columns)}) while an open {owner.topic} row's life "
                f"may hold them",
            ]
        )


def find_life(tree: exp.Expr, aliases: dict[str, str]) -> tuple[tuple[str, str], tuple[str, str], str] | None:
    """((other topic, its time), (owner topic, its start), owner's end column) of the first
    `x.t BETWEEN y.start AND y.end` anywhere in the query with x and y different topics and
    start and end different columns of y; None when there is none."""
    for between in tree.find_all(exp.Between):
        subject, low, high = between.this, between.args.get("low"), between.args.get("high")
        if not all(isinstance(n, exp.Column) and n.table for n in (subject, low, high)):
            continue
        assert isinstance(subject, exp.Column) and isinstance(low, exp.Column) and isinstance(high, exp.Column)
        other, owner, owner_end = aliases.get(subject.table), aliases.get(low.table), aliases.get(high.table)
        if other is None or owner is None or owner != owner_end or owner == other:
            continue
        if ident_name(low) == ident_name(high):
            continue
        return (other, ident_name(subject)), (owner, ident_name(low)), ident_name(high)
    return None


def plan_life_join(sql: str, tree: exp.Query, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf) -> LifePlan:
    base = single._Planner(sql, schema_of, watermark_of)
    base.tree = tree
    rewritten = tree.copy()
    rewritten.set("order", None)  # a stream has no order
    tables = [t for t in rewritten.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and find_cte(t) is None]
    aliases = {t.alias_or_name: table_name(t) for t in tables} | {table_name(t): table_name(t) for t in tables}
    found = find_life(rewritten, aliases)
    assert found is not None
    (other, other_time), (owner, start), end = found
    for join in rewritten.find_all(exp.Join):
        if join.args.get("side") or (join.args.get("kind") or "").upper() in ("OUTER", "FULL", "ANTI", "SEMI"):
            raise base.fail("a lifetime join in a continuous query is an inner join")
    for topic, column in ((owner, start), (other, other_time)):
        mark = watermark_of(topic)
        if mark is None or mark[0] != column:
            raise base.fail(
                f"a lifetime join runs on event time: {topic}.{column} must be topic {topic!r}'s watermark column"
            )
    key = _owner_key(rewritten, aliases, owner, other)
    if key is None:
        raise base.fail(f"a lifetime join needs an equality of a {owner} column with a {other} column (the key)")
    owner_aliases = {a for a, t in aliases.items() if t == owner}
    for node in [*rewritten.find_all(exp.Group), *(w for w in rewritten.find_all(exp.Window))]:
        parts = node.expressions if isinstance(node, exp.Group) else node.args.get("partition_by") or []
        if not any(isinstance(p, exp.Column) and p.table in owner_aliases and ident_name(p) == key for p in parts):
            what = "GROUP BY" if isinstance(node, exp.Group) else "OVER (PARTITION BY …)"
            raise base.fail(
                f"a lifetime join's results are final per {owner} row when its {end} passes: every {what} must "
                f"include {owner}.{key}; a grouping over many {owner} rows never closes on an unbounded stream "
                "(run it ad hoc over the job's view instead)",
                node,
            )
    sides = []
    for topic, column in ((owner, start), (other, other_time)):
        schema = base.relations.table_schema(topic)
        extra = (column, end, key) if topic == owner else (column,)
        columns = single._named_columns(tree, schema, extra)
        mark = watermark_of(topic)
        assert mark is not None
        sides.append(IntervalSide(topic, schema, columns, column, schema.field(column).type, mark[1]))
    if not isinstance(sides[0].topic_schema.field(end).type, pa.TimestampType):
        raise base.fail(f"the lifetime join's end column {owner}.{end} is not a TIMESTAMP", name=end)
    query_sql = to_sql(rewritten)
    ctx = datafusion.SessionContext()
    for side in sides:
        empty = pa.RecordBatch.from_pylist([], schema=side.input_schema)
        ctx.register_record_batches(single.quoted_table(side.topic), [[empty]])
    try:
        output: pa.Schema = ctx.sql(query_sql).schema()
    except Exception as error:  # DataFusion raises plain Exceptions for planning errors
        raise base.fail(f"cannot plan the continuous query: {single._clean(str(error))}") from None
    return LifePlan(
        sql, (sides[0], sides[1]), 0, 0, query_sql, output, kind="lifetime join", end_column=end, owner_key=key
    )


def _owner_key(tree: exp.Expr, aliases: dict[str, str], owner: str, other: str) -> str | None:
    for eq in tree.find_all(exp.EQ):
        left, right = eq.this, eq.expression
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            named = {aliases.get(left.table): ident_name(left), aliases.get(right.table): ident_name(right)}
            if owner in named and other in named and len(named) == 2:
                return named[owner]
    return None
