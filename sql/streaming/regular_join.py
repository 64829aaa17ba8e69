"""Planning a regular (unbounded) inner join of two topics under a state TTL (issue 17).

    CREATE MATERIALIZED VIEW v WITH ('state.ttl' = '1 h') AS
      SELECT p.name, a.id FROM auction a JOIN person p ON a.seller = p.id

Without a window or an interval a join's state grows forever, so it is refused unless the job
sets `state.ttl` (Flink's `table.exec.state.ttl`). Flink measures that TTL in processing time,
which makes the output depend on when rows happen to arrive. Here it is event time: a row is
kept until the job's watermark passes its time + TTL, and the join is defined as the inner join
of the rows whose event times are at most the TTL apart. That is exactly an interval join with
the bound [-TTL, +TTL] on the two topics' watermark columns, so the planner adds that condition
to the ON clause and hands the query to the interval-join planner: the operator
(sql.streaming.interval_join) emits each match once, when its second row arrives, and the
output is deterministic — equal to the ad-hoc join restricted to |a.ts − b.ts| <= TTL (the plain
ad-hoc join when the TTL covers the data's time span), whatever the rounds and arrival order.
"""

from __future__ import annotations

import dataclasses

from sqlglot import exp

from streamhouse.sql.dialect import to_sql
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.streaming.interval_plan import IntervalPlan, plan_interval_join
from streamhouse.sql.windows.relations import find_cte, table_name

__all__ = ["TTL_OPTION", "plan_regular_join"]

TTL_OPTION = "state.ttl"


def plan_regular_join(
    sql: str, tree: exp.Query, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf, ttl_ms: int
) -> IntervalPlan:
    """The join of the two topics `tree` reads, bounded by `ttl_ms` of event time on each
    side; SqlError (from the interval planner) for what an interval join cannot run."""
    bounded = tree.copy()
    # A stream has no order: the ORDER BY (Nexmark's texts end with one, for tests) is dropped
    # as the window join drops it; LIMIT stays and is refused by the planner.
    bounded.set("order", None)
    tables = [t for t in bounded.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and find_cte(t) is None]
    joins = list(bounded.find_all(exp.Join))
    if len(tables) != 2 or len(joins) != 1:
        # Self-joins, subqueries over the topics, several joins: let the interval planner say why.
        return plan_interval_join(sql, tree, schema_of, watermark_of)
    sides = []
    for table in tables:
        watermark = watermark_of(table_name(table))
        if watermark is None:
            return plan_interval_join(sql, tree, schema_of, watermark_of)  # names the missing watermark
        # The qualifier as the user wrote it (DataFusion folds unquoted names), the column quoted.
        alias = table.args.get("alias")
        qualifier = alias.this.copy() if alias is not None and alias.this is not None else table.this.copy()
        sides.append(exp.Column(this=exp.to_identifier(watermark[0], quoted=True), table=qualifier))
    ttl = exp.Interval(this=exp.Literal.string(str(ttl_ms)), unit=exp.var("MILLISECOND"))
    bound = exp.Between(
        this=sides[0],
        low=exp.Sub(this=sides[1].copy(), expression=ttl.copy()),
        high=exp.Add(this=sides[1].copy(), expression=ttl.copy()),
    )
    join = joins[0]
    on = join.args.get("on")
    join.set("on", bound if on is None else exp.and_(exp.paren(on, copy=False), bound, copy=False))
    planned = plan_interval_join(to_sql(bounded), bounded, schema_of, watermark_of)
    return dataclasses.replace(planned, sql=sql, kind="regular join", ttl_ms=ttl_ms)
