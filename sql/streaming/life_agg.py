"""An updating GROUP BY over a lifetime join, as one continuous job (docs/DESIGN.md §8, issue 17):
Nexmark q4 whole,

    SELECT Q.category, AVG(Q.final) FROM (
        SELECT A.id, A.category, MAX(B.price) AS final FROM auction A, bid B
        WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
        GROUP BY A.id, A.category) Q
    GROUP BY Q.category

The inner query is a lifetime join (sql.streaming.life_plan): each auction's row is final once
the watermark passes its `expires`, so the inner rows form an append-only stream. The outer
grouping over many auctions never closes, so it runs as an updating aggregate
(sql.streaming.group_agg) and the job must emit changes (`'emit' = 'changes'`): applying the
view's changelog gives the ad-hoc q4 over every auction closed so far — all of them after the
input ends. The outer query may select its GROUP BY columns and COUNT(*), COUNT, SUM, MIN, MAX
and AVG of the inner query's columns; anything else (WHERE, HAVING, expressions, DISTINCT) is
refused naming it. State: the lifetime join's plus one row per group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import ident_name, node_position, to_sql
from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.streaming.group_agg import GroupAggregate, GroupAggSpec, OuterAggregate
from streamhouse.sql.streaming.life_join import LifeJoinOperator
from streamhouse.sql.streaming.life_plan import LifePlan, plan_life_join
from streamhouse.sql.streaming.operator import FLUSH_WATERMARK, OperatorStats, StepResult
from streamhouse.sql.streaming.two_sided import fingerprint

__all__ = ["LifeAggOperator", "LifeAggPlan", "from_subquery", "outer_grouping", "plan_life_agg"]

_INNER = "__sh_inner"
_FUNCTIONS: dict[type[exp.Expr], str] = {exp.Count: "COUNT", exp.Sum: "SUM", exp.Min: "MIN", exp.Max: "MAX"}
_FUNCTIONS[exp.Avg] = "AVG"


@dataclass(frozen=True)
class LifeAggPlan(LifePlan):
    """A LifePlan whose rows feed an updating grouping; `output_schema` is the grouping's."""

    inner_output: pa.Schema = dataclasses.field(default_factory=lambda: pa.schema([]))
    grouping: GroupAggSpec | None = None

    def inner(self) -> LifePlan:
        """The lifetime join alone, as its operator runs it."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(LifePlan)}
        return LifePlan(**(values | {"output_schema": self.inner_output, "kind": "lifetime join"}))

    def describe(self) -> str:
        assert self.grouping is not None
        keys = ", ".join(self.grouping.keys)
        return "\n".join(
            [
                self.inner().describe(),
                f"then an updating GROUP BY {keys} over its rows, emitted as changes (+I, -U/+U)",
                f"state: one row of partial aggregates per group ({keys})",
            ]
        )


def from_subquery(tree: exp.Query) -> exp.Subquery | None:
    """The subquery of `SELECT … FROM (<select>) [alias] …` (no joins), or None."""
    source = tree.args.get("from_") or tree.args.get("from")
    if not isinstance(tree, exp.Select) or source is None or tree.args.get("joins"):
        return None
    inner = source.this
    return inner if isinstance(inner, exp.Subquery) and isinstance(inner.this, exp.Select) else None


def outer_grouping(tree: exp.Query) -> exp.Subquery | None:
    """The inner query of `SELECT … FROM (<query>) [alias] GROUP BY …`, or None."""
    return from_subquery(tree) if isinstance(tree.args.get("group"), exp.Group) else None


def failing(sql: str) -> Callable[[str, exp.Expr | None], SqlError]:
    def fail(message: str, at: exp.Expr | None = None) -> SqlError:
        return SqlError(message, position=node_position(at, sql) if at is not None else None)

    return fail


def refuse_clauses(tree: exp.Select, what: str, fail: Callable[[str, exp.Expr | None], SqlError]) -> None:
    """The outer query over a lifetime join only selects: WHERE and the like go inside."""
    for arg in ("where", "having", "qualify", "distinct", "limit"):
        if tree.args.get(arg):
            raise fail(f"{what} takes no {arg.upper()} (filter inside)", tree)


def over_inner(
    tree: exp.Select, subquery: exp.Subquery, inner: pa.Schema, fail: Callable[[str, exp.Expr | None], SqlError]
) -> tuple[exp.Select, pa.Schema]:
    """The outer query reading the inner rows as table `__sh_inner` (ORDER BY dropped: a stream
    has no order), and the ad-hoc schema of its result."""
    rewritten = tree.copy()
    rewritten.set("order", None)
    source = rewritten.args.get("from_") or rewritten.args.get("from")
    assert isinstance(source, exp.From)
    alias = subquery.alias_or_name
    source.set("this", exp.to_table(_INNER).as_(alias) if alias else exp.to_table(_INNER))
    ctx = datafusion.SessionContext()
    ctx.register_record_batches(_INNER, [[pa.RecordBatch.from_pylist([], schema=inner)]])
    try:
        output: pa.Schema = ctx.sql(to_sql(rewritten)).schema()
    except Exception as error:  # DataFusion raises plain Exceptions for planning errors
        raise fail(f"cannot plan the continuous query: {single._clean(str(error))}", None) from None
    return rewritten, output


def life_fields(life: LifePlan, sql: str, output: pa.Schema, kind: str) -> dict[str, Any]:
    """A lifetime join's plan fields for a plan that runs a query over its rows."""
    values = {f.name: getattr(life, f.name) for f in dataclasses.fields(LifePlan)}
    return values | {"sql": sql, "output_schema": output, "kind": kind, "inner_output": life.output_schema}


def plan_life_agg(
    sql: str, tree: exp.Select, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf
) -> LifeAggPlan:
    subquery = outer_grouping(tree)
    assert subquery is not None
    inner_tree = subquery.this
    assert isinstance(inner_tree, exp.Select)
    life = plan_life_join(to_sql(inner_tree), inner_tree, schema_of, watermark_of)
    fail = failing(sql)
    refuse_clauses(tree, "an updating GROUP BY over a lifetime join", fail)
    keys = []
    for item in tree.args["group"].expressions:
        if not isinstance(item, exp.Column) or ident_name(item) not in life.output_schema.names:
            raise fail("an updating GROUP BY over a lifetime join groups by columns of its subquery", item)
        keys.append(ident_name(item))
    outputs: list[str | OuterAggregate] = []
    for index, item in enumerate(tree.expressions):
        node = item.unalias()
        if isinstance(node, exp.Column) and ident_name(node) in keys:
            outputs.append(ident_name(node))
            continue
        function = _FUNCTIONS.get(type(node))
        argument = node.this if function else None
        if function == "COUNT" and isinstance(argument, exp.Star):
            outputs.append(OuterAggregate("COUNT_STAR", None, index))
            continue
        if (
            function is None
            or not isinstance(argument, exp.Column)
            or ident_name(argument) not in life.output_schema.names
            or isinstance(node.this, exp.Distinct)
        ):
            raise fail(
                "an updating GROUP BY over a lifetime join selects its GROUP BY columns and COUNT(*), COUNT, "
                "SUM, MIN, MAX or AVG of a subquery column",
                item,
            )
        outputs.append(OuterAggregate(function, ident_name(argument), index))
    _, output = over_inner(tree, subquery, life.output_schema, fail)
    spec = GroupAggSpec(tuple(keys), tuple(outputs), output)
    return LifeAggPlan(**life_fields(life, sql, output, "lifetime join + updating aggregate"), grouping=spec)


class LifeAggOperator(LifeJoinOperator):
    """The lifetime join, its closed rows folded into the grouping; output is the changelog."""

    _MAGIC = b"SHLIFAG1"
    _WHAT = "lifetime join aggregate"

    def __init__(
        self,
        plan: LifeAggPlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        super().__init__(plan.inner(), idle_timeout_ms, slots=slots)
        self.outer = plan
        # A subclass folding rows another way (sql.streaming.life_over) has no grouping.
        self._group = GroupAggregate(plan.grouping, plan.inner_output) if plan.grouping is not None else None
        self._changes_out = 0

    @property
    def output_schema(self) -> pa.Schema:
        assert self._group is not None
        return self._group.empty_changes().schema

    @property
    def state_rows(self) -> int:
        return super().state_rows + (self._group.groups if self._group is not None else 0)

    def stats(self) -> OperatorStats:
        return dataclasses.replace(super().stats(), rows_out=self._changes_out, state_rows=self.state_rows)

    def process_round(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int] = ()) -> StepResult:
        return self._fold(super().process_round(batches, now_ms, pending), self._marks.emitted)

    def advance(self, now_ms: int) -> StepResult:
        return self._fold(super().advance(now_ms), self._marks.emitted)

    def flush(self) -> StepResult:
        return self._fold(super().flush(), FLUSH_WATERMARK)

    def _fold(self, step: StepResult, watermark: int | None) -> StepResult:
        """Fold the rows the lifetime join closed (`step.output`) into the grouping; the step
        with its changelog as output. `watermark` is the one the join closed rows at."""
        assert self._group is not None
        changes = self._group.add(step.output)
        self._changes_out += changes.num_rows
        return dataclasses.replace(step, output=changes, stats=self.stats())

    def _fingerprint(self) -> str:
        keys = list(self.outer.grouping.keys) if self.outer.grouping is not None else []
        return fingerprint([super()._fingerprint(), self.outer.sql, keys])

    def snapshot(self) -> bytes:
        assert self._group is not None
        tables = [(side.table, side.schema) for side in self._sides] + [(self._group.state, self._group.schema)]
        counters = [self._rows_in, self._rows_out, self._late_rows, self._changes_out]
        return self._frame({"counters": counters}, tables)

    def restore(self, data: bytes) -> None:
        assert self._group is not None
        header, tables = self._unframe(data, sides=3)
        *sides, groups = tables
        if not groups.schema.equals(self._group.schema):
            raise ValueError("the snapshot's state does not have this job's columns")
        self._restore_sides(sides)
        self._rows_in, self._rows_out, self._late_rows, self._changes_out = (int(v) for v in header["counters"])
        self._group.state = groups
