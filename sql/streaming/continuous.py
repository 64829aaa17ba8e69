"""The one entry to planning a continuous query (docs/DESIGN.md §8): which planner a SELECT needs.

    plan_continuous(select_sql, schema_of, watermark_of) -> ContinuousPlan

- one source topic: sql.streaming.plan (windows, or a per-batch filter / projection);
- two topics read through window calls: a window join (sql.streaming.join_plan);
- a topic joined FOR SYSTEM_TIME AS OF another's time: a lookup join (sql.streaming.lookup_plan);
- two topics where one's time lies BETWEEN the other's start and end columns: a lifetime join
  (sql.streaming.life_plan; Nexmark's bids within an auction's life), and a GROUP BY over such a
  join's rows as an updating aggregate (sql.streaming.life_agg; Nexmark q4) and an OVER across
  them (sql.streaming.life_over; Nexmark q6), both emitted as changes;
- two topics read directly: an interval join (sql.streaming.interval_plan), which needs a
  BETWEEN of the topics' watermark columns; without it the join is refused naming the bound
  it lacks, unless the job sets a state TTL (`'state.ttl'`): then a regular join
  (sql.streaming.regular_join), kept for the TTL in event time.
"""

from __future__ import annotations

from typing import TypeAlias

from sqlglot import exp

from streamhouse.sql.dialect import WindowCall, parse_query
from streamhouse.sql.streaming.interval_plan import IntervalPlan, has_interval, plan_interval_join
from streamhouse.sql.streaming.join_plan import JoinPlan, plan_window_join, topics_read
from streamhouse.sql.streaming.life_agg import outer_grouping, plan_life_agg
from streamhouse.sql.streaming.life_over import outer_over, plan_life_over
from streamhouse.sql.streaming.life_plan import find_life, plan_life_join
from streamhouse.sql.streaming.lookup_plan import is_lookup, plan_lookup_join
from streamhouse.sql.streaming.plan import JobPlan, SchemaOf, WatermarkOf, plan_job
from streamhouse.sql.streaming.regular_join import plan_regular_join
from streamhouse.sql.windows.relations import find_cte, table_name

__all__ = ["ContinuousPlan", "plan_continuous"]

ContinuousPlan: TypeAlias = JobPlan | JoinPlan | IntervalPlan


def plan_continuous(
    select_sql: str, schema_of: SchemaOf, watermark_of: WatermarkOf, *, state_ttl_ms: int | None = None
) -> ContinuousPlan:
    """Plan a continuous query (see the module doc); SqlError when its shape is unsupported."""
    tree = parse_query(select_sql)
    if len(topics_read(tree)) <= 1:
        return plan_job(select_sql, schema_of, watermark_of)
    if is_lookup(tree):
        return plan_lookup_join(select_sql, tree, schema_of, watermark_of)
    subquery = outer_grouping(tree)
    if next(tree.find_all(WindowCall), None) is None and subquery is not None and _life(subquery.this):
        assert isinstance(tree, exp.Select)
        return plan_life_agg(select_sql, tree, schema_of, watermark_of)
    subquery = outer_over(tree)
    if next(tree.find_all(WindowCall), None) is None and subquery is not None and _life(subquery.this):
        assert isinstance(tree, exp.Select)
        return plan_life_over(select_sql, tree, schema_of, watermark_of)
    if next(tree.find_all(WindowCall), None) is None and len(topics_read(tree)) == 2 and _life(tree):
        return plan_life_join(select_sql, tree, schema_of, watermark_of)
    if next(tree.find_all(WindowCall), None) is None and len(topics_read(tree)) == 2:
        if state_ttl_ms is not None and not has_interval(tree):
            return plan_regular_join(select_sql, tree, schema_of, watermark_of, state_ttl_ms)
        return plan_interval_join(select_sql, tree, schema_of, watermark_of)
    return plan_window_join(select_sql, tree, schema_of, watermark_of)


def _life(tree: exp.Query) -> bool:
    tables = [t for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and find_cte(t) is None]
    aliases = {t.alias_or_name: table_name(t) for t in tables} | {table_name(t): table_name(t) for t in tables}
    return find_life(tree, aliases) is not None
