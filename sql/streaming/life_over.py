"""An OVER window across the rows a lifetime join closes, as one continuous job (docs/DESIGN.md
§8, issue 17): Nexmark q6, a seller's average final price over its last auctions,

    SELECT Q.seller, AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time
                                        ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
    FROM (SELECT MAX(B.price) AS final, A.seller, MAX(B.date_time) AS date_time
          FROM auction A, bid B
          WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
          GROUP BY A.id, A.seller) Q

Auctions close out of their ORDER BY order, so a closing auction can land before rows already
emitted and change their averages: the job emits changes ('emit' = 'changes', required), and
folding the changelog gives the ad-hoc query over the auctions closed so far. (Flink's Nexmark
leaves q6 out for this reason; retractions are what make it possible.)

How state stays bounded: the ORDER BY column must be a time no earlier than the auction's own
start (MAX / MIN of the bid time, or the auction's start or end column), so a row whose time is
before every open auction's start and the watermark is *settled*: nothing can land before it
any more, and its result is final. Settled rows are dropped except the last N of each
partition (the PRECEDING context later rows need); results are kept only for unsettled rows.

Each step is whole-batch: the partitions the new rows touch are recomputed by DataFusion (the
user's OVER over those partitions' kept rows), matched to what was emitted by the auction's
key (carried as a hidden column), and diffed with sql.streaming.group_agg's vectorised
changelog; settling and trimming run as one more DataFusion ROW_NUMBER.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from streamhouse.sql.dialect import ident_name, to_sql
from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.catalog import partitioned
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.streaming.assign import event_ms
from streamhouse.sql.streaming.group_agg import changelog
from streamhouse.sql.streaming.life_agg import (
    LifeAggOperator,
    LifeAggPlan,
    failing,
    from_subquery,
    life_fields,
    over_inner,
    refuse_clauses,
)
from streamhouse.sql.streaming.life_plan import LifePlan, plan_life_join
from streamhouse.sql.streaming.operator import StepResult
from streamhouse.sql.streaming.two_sided import fingerprint
from streamhouse.sql.windows.relations import table_name

__all__ = ["LifeOverOperator", "LifeOverPlan", "outer_over", "plan_life_over"]

OWNER = "__sh_owner"  # the auction's key, carried so a result row is matched to its auction
_SETTLED = "__sh_settled"
_HAD = "__sh_had"
_OLD = "__sh_old_"
_KEPT = "__sh_kept"
_INNER = "__sh_inner"


@dataclass(frozen=True)
class OverSpec:
    partition_by: tuple[str, ...]
    order_by: str  # the inner column the OVER orders by
    preceding: int  # ROWS BETWEEN preceding PRECEDING AND CURRENT ROW
    outer_sql: str  # the user's outer query over `__sh_inner`, plus the OWNER column


@dataclass(frozen=True)
class LifeOverPlan(LifeAggPlan):
    over: OverSpec | None = None

    def describe(self) -> str:
        assert self.over is not None
        parts = ", ".join(self.over.partition_by)
        return "\n".join(
            [
                self.inner().describe(),
                f"then an OVER (PARTITION BY {parts} ORDER BY {self.over.order_by} ROWS {self.over.preceding} "
                "PRECEDING) over its rows, emitted as changes (+I, -U/+U) as rows land out of order",
                f"state: per partition, the rows not yet settled plus the last {self.over.preceding} settled rows",
            ]
        )


def outer_over(tree: exp.Query) -> exp.Subquery | None:
    """The inner query of `SELECT …, f(…) OVER (…) FROM (<query>) [alias]`, or None."""
    if not isinstance(tree, exp.Select) or tree.args.get("group") or not _windows(tree):
        return None
    return from_subquery(tree)


def plan_life_over(
    sql: str, tree: exp.Select, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf
) -> LifeOverPlan:
    subquery = outer_over(tree)
    assert subquery is not None

    fail = failing(sql)
    inner_tree = subquery.this
    assert isinstance(inner_tree, exp.Select)
    probe = plan_life_join(to_sql(inner_tree), inner_tree, schema_of, watermark_of)
    owner, other = probe.sides
    if not isinstance(inner_tree.args.get("group"), exp.Group):
        raise fail("an OVER across a lifetime join's rows needs one row per auction: GROUP BY its key inside", tree)
    aliases = {t.alias_or_name: table_name(t) for t in inner_tree.find_all(exp.Table)}
    owner_alias = next(a for a, t in aliases.items() if t == owner.topic)
    keyed = inner_tree.copy().select(exp.column(probe.owner_key, table=owner_alias).as_(OWNER), copy=False)
    life = plan_life_join(to_sql(keyed), keyed, schema_of, watermark_of)
    refuse_clauses(tree, "an OVER across a lifetime join's rows", fail)
    windows = _windows(tree)
    shapes = {
        (to_sql(exp.Tuple(expressions=w.args.get("partition_by") or [])), to_sql(w.args["order"])) for w in windows
    }
    if len(shapes) != 1:
        raise fail("the OVER windows across a lifetime join's rows share one PARTITION BY and ORDER BY", windows[1])
    window = windows[0]
    parts = window.args.get("partition_by") or []
    order = window.args.get("order")
    ordered = order.expressions if isinstance(order, exp.Order) else []
    spec = window.args.get("spec")
    start = spec.args.get("start") if isinstance(spec, exp.WindowSpec) else None
    if (
        not parts
        or not all(isinstance(p, exp.Column) for p in parts)
        or len(ordered) != 1
        or not isinstance(ordered[0].this, exp.Column)
        or ordered[0].args.get("desc")
        or not isinstance(spec, exp.WindowSpec)
        or str(spec.args.get("kind")).upper() != "ROWS"
        or not isinstance(start, exp.Literal)
        or str(spec.args.get("start_side")).upper() != "PRECEDING"
        or str(spec.args.get("end")).upper() != "CURRENT ROW"
        or any(w.args.get("spec") != spec for w in windows)
    ):
        raise fail(
            "an OVER across a lifetime join's rows is OVER (PARTITION BY columns ORDER BY one column "
            "ROWS BETWEEN n PRECEDING AND CURRENT ROW)",
            window,
        )
    order_by = ident_name(ordered[0].this)
    if not _settles(inner_tree, order_by, aliases, owner.topic, other.topic, other.event_time, probe):
        raise fail(
            f"the OVER's ORDER BY {order_by} must be a time no earlier than the {owner.topic} row's start "
            f"(MAX or MIN of {other.topic}.{other.event_time}, or {owner.topic}.{owner.event_time} / "
            f"{probe.end_column}), so rows settle and state stays bounded",
            ordered[0],
        )
    rewritten, output = over_inner(tree, subquery, life.output_schema, fail)
    alias = subquery.alias_or_name
    keyed_outer = rewritten.select(exp.column(OWNER, table=alias) if alias else exp.column(OWNER), copy=True)
    over = OverSpec(tuple(ident_name(p) for p in parts), order_by, int(start.this), to_sql(keyed_outer))
    return LifeOverPlan(**life_fields(life, sql, output, "lifetime join + OVER"), over=over)


def _windows(tree: exp.Select) -> list[exp.Window]:
    """The OVER calls of the query's own select list (not of its subqueries)."""
    return [node for item in tree.expressions for node in item.find_all(exp.Window)]


def _settles(
    inner: exp.Select, name: str, aliases: dict[str, str], owner: str, other: str, other_time: str, life: LifePlan
) -> bool:
    """Whether inner column `name` is never earlier than its owner row's start."""
    for item in inner.expressions:
        if item.alias_or_name != name:
            continue
        node = item.unalias()
        if isinstance(node, exp.Max | exp.Min) and isinstance(node.this, exp.Column):
            return aliases.get(node.this.table) == other and ident_name(node.this) == other_time
        if isinstance(node, exp.Column):
            starts = (life.sides[0].event_time, life.end_column)
            return aliases.get(node.table) == owner and ident_name(node) in starts
    return False


class LifeOverOperator(LifeAggOperator):
    """The lifetime join, its closed rows fed to the OVER (see the module doc)."""

    _MAGIC = b"SHLIFOV1"
    _WHAT = "lifetime join OVER"

    def __init__(
        self,
        plan: LifeOverPlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        assert plan.over is not None
        self.over = plan.over
        self.plan_over = plan
        super().__init__(plan, idle_timeout_ms, slots=slots)
        self._kept_schema = plan.inner_output.append(pa.field(_SETTLED, pa.bool_()))
        self._kept = self._kept_schema.empty_table()
        self._results_schema = pa.schema([*plan.output_schema, plan.inner_output.field(OWNER)])
        self._emitted = self._results_schema.empty_table()
        self._empty_changes = changelog(
            plan.output_schema.empty_table(), plan.output_schema.empty_table(), np.zeros(0, np.bool_)
        )
        self._over_ctx = datafusion.SessionContext()

    @property
    def output_schema(self) -> pa.Schema:
        return self._empty_changes.schema

    @property
    def state_rows(self) -> int:
        return super().state_rows + self._kept.num_rows

    @property
    def over_rows(self) -> int:
        """Closed rows the OVER keeps: the unsettled ones and the settled context."""
        return self._kept.num_rows

    def _fold(self, step: StepResult, watermark: int | None) -> StepResult:
        changes = self._empty_changes
        rows = step.output
        if rows.num_rows:
            fresh = rows.append_column(_SETTLED, pa.array(np.zeros(rows.num_rows, np.bool_)))
            self._kept = pa.concat_tables([self._kept, fresh]).combine_chunks()
            changes = self._recompute(rows)
        self._settle(watermark)
        self._changes_out += changes.num_rows
        return dataclasses.replace(step, output=changes, stats=self.stats())

    def _recompute(self, rows: pa.Table) -> pa.Table:
        keys = list(self.over.partition_by)
        touched = rows.select(keys).group_by(keys, use_threads=False).aggregate([])
        subset = self._kept.join(touched, keys, join_type="left semi", use_threads=False)
        results = self._run_over(subset.drop_columns([_SETTLED]))
        settled_owners = subset.filter(subset.column(_SETTLED)).column(OWNER)
        results = results.filter(pc.invert(pc.is_in(results.column(OWNER), value_set=settled_owners.combine_chunks())))
        old = self._emitted.append_column(_HAD, pa.array(np.ones(self._emitted.num_rows, np.bool_)))
        old = old.rename_columns([n if n == OWNER else _OLD + n for n in old.column_names])
        joined = results.join(old, OWNER, join_type="left outer", use_threads=False)
        names = list(self.plan_over.output_schema.names)
        new = joined.select(names)
        before = joined.select([_OLD + n for n in names]).rename_columns(names)
        had: Any = pc.fill_null(joined.column(_OLD + _HAD), pa.scalar(False))
        existed = np.asarray(had.to_numpy(zero_copy_only=False), np.bool_)
        changes = changelog(before, new, existed)
        owners = joined.column(OWNER).combine_chunks()
        unchanged = self._emitted.filter(pc.invert(pc.is_in(self._emitted.column(OWNER), value_set=owners)))
        self._emitted = pa.concat_tables([unchanged, joined.select(self._results_schema.names)]).combine_chunks()
        return changes

    def _run_over(self, table: pa.Table) -> pa.Table:
        self._over_ctx.register_record_batches(_INNER, partitioned(table))
        try:
            result = self._over_ctx.sql(self.over.outer_sql).to_arrow_table()
        except Exception as error:  # DataFusion raises plain Exceptions (e.g. a failed cast)
            raise SqlError(f"continuous query failed: {error}") from error
        finally:
            self._over_ctx.deregister_table(_INNER)
        return result.cast(self._results_schema)

    def _settle(self, watermark: int | None) -> None:
        """Mark the rows nothing can land before any more, forget their results, and keep of
        the settled rows only the last `preceding` per partition."""
        if watermark is None or not self._kept.num_rows:
            return
        bound = watermark + 1
        owners = self._sides[0]
        if owners.ms.size:
            bound = min(bound, int(owners.ms.min()))
        field = self._kept_schema.field(self.over.order_by)
        order_ms, valid = event_ms(self._kept.column(self.over.order_by), field.type)
        now = order_ms < bound if valid is None else (order_ms < bound) & valid
        settled = np.asarray(self._kept.column(_SETTLED).to_numpy(zero_copy_only=False), np.bool_)
        newly = now & ~settled
        if not newly.any():
            return
        done = self._kept.column(OWNER).filter(pa.array(newly)).combine_chunks()
        self._emitted = self._emitted.filter(pc.invert(pc.is_in(self._emitted.column(OWNER), value_set=done)))
        kept = self._kept.set_column(self._kept.column_names.index(_SETTLED), _SETTLED, pa.array(settled | now))
        self._kept = self._trim(kept)

    def _trim(self, kept: pa.Table) -> pa.Table:
        keys = ", ".join(f'"{k}"' for k in self.over.partition_by)
        sql = (
            f'SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY "{self.over.order_by}" DESC) '
            f'AS __sh_rank FROM {_KEPT} WHERE "{_SETTLED}") s WHERE __sh_rank <= {self.over.preceding}'
        )
        self._over_ctx.register_record_batches(_KEPT, partitioned(kept))
        try:
            context = self._over_ctx.sql(sql).to_arrow_table().drop_columns(["__sh_rank"])
        finally:
            self._over_ctx.deregister_table(_KEPT)
        open_rows = kept.filter(pc.invert(kept.column(_SETTLED)))
        return pa.concat_tables([context.cast(self._kept_schema), open_rows]).combine_chunks()

    def _fingerprint(self) -> str:
        return fingerprint([super()._fingerprint(), self.over.outer_sql, self.over.preceding])

    def snapshot(self) -> bytes:
        tables = [(side.table, side.schema) for side in self._sides]
        tables += [(self._kept, self._kept_schema), (self._emitted, self._results_schema)]
        counters = [self._rows_in, self._rows_out, self._late_rows, self._changes_out]
        return self._frame({"counters": counters}, tables)

    def restore(self, data: bytes) -> None:
        header, tables = self._unframe(data, sides=4)
        *sides, kept, emitted = tables
        if not kept.schema.equals(self._kept_schema) or not emitted.schema.equals(self._results_schema):
            raise ValueError("the snapshot's state does not have this job's columns")
        self._restore_sides(sides)
        self._rows_in, self._rows_out, self._late_rows, self._changes_out = (int(v) for v in header["counters"])
        self._kept, self._emitted = kept, emitted
