"""Partial-aggregate state for the common windowed aggregate (docs/DESIGN.md §8).

    spec = partials_for(plan)      # PartialSpec, or None: the operator keeps rows instead

A plan qualifies when its query is one SELECT straight over one TUMBLE / HOP / CUMULATE call
(not SESSION, no join, CTE, subquery or raw topic read) that groups by window_start,
window_end (and optionally window_time) plus plain topic columns, selects only those group
columns and COUNT(*), COUNT(col), SUM(col), MIN(col), MAX(col), AVG(col) of plain topic
columns (no DISTINCT, FILTER, nested expressions), and has no HAVING, DISTINCT, ORDER BY,
LIMIT, QUALIFY or window functions. A WHERE on topic columns (no window columns,
aggregates or subqueries) is evaluated on each micro-batch. SUM / AVG take integer or
floating-point columns; MIN / MAX numbers, strings, booleans, dates and timestamps.

State is one row per (pane, group keys): `__sh_pane` (the pane start, ms), the keys, `__sh_n`
(rows passing the WHERE) and per aggregate its partials (count, sum, min, max; AVG = sum +
count). Each micro-batch is grouped with pyarrow and merged into the state; a (pane, keys)
row exists for every pane and key with rows (even if the WHERE passed none), so the
operator's pane arithmetic (lateness, open / fired window counts) sees what it would see
with rows. Firing expands panes to their windows (Aligned.firing), groups by (window, keys),
drops groups no row passed, and finalises to the plan's output schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from streamhouse.sql.dialect import ident_name, parse_query, to_sql
from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.unsliced import unsliced
from streamhouse.sql.streaming.assign import Ints, window_columns
from streamhouse.sql.streaming.plan import WINDOWED_TABLE, JobPlan
from streamhouse.sql.windows.calls import WINDOW_COLUMNS

__all__ = ["PANE", "Aggregate", "PartialSpec", "partials_for"]

PANE = "__sh_pane"
_N = "__sh_n"
_START = "__sh_start"
_END = "__sh_end"
_INDEX = "__sh_i"
_FUNCTIONS = {exp.Count: "COUNT", exp.Sum: "SUM", exp.Min: "MIN", exp.Max: "MAX", exp.Avg: "AVG"}
# Partials each aggregate keeps, and how partials merge.
_PARTS = {"COUNT": ("count",), "SUM": ("sum",), "MIN": ("min",), "MAX": ("max",), "AVG": ("sum", "count")}
_MERGE = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}


@dataclass(frozen=True)
class Aggregate:
    function: str  # COUNT, SUM, MIN, MAX, AVG
    column: str | None  # None: COUNT(*)
    index: int

    def part(self, name: str) -> str:
        return f"__sh_a{self.index}_{name}"

    @property
    def parts(self) -> tuple[str, ...]:
        return () if self.column is None else _PARTS[self.function]


@dataclass(frozen=True)
class PartialSpec:
    """How a qualifying plan's state is kept; `outputs` are the select list in order: a
    group column name (topic column or window column) or an Aggregate."""

    plan: JobPlan
    keys: tuple[str, ...]  # topic columns grouped by
    outputs: tuple[str | Aggregate, ...]
    where_sql: str | None  # SELECT __sh_i FROM ... WHERE ...: the batch rows passing the WHERE

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return tuple(o for o in self.outputs if isinstance(o, Aggregate))

    @property
    def schema(self) -> pa.Schema:
        """The state's schema."""
        fields = [pa.field(PANE, pa.int64()), *(self.plan.input_schema.field(k) for k in self.keys)]
        fields.append(pa.field(_N, pa.int64()))
        for agg in self.aggregates:
            for part in agg.parts:
                fields.append(pa.field(agg.part(part), self._part_type(agg, part)))
        return pa.schema(fields)

    def _part_type(self, agg: Aggregate, part: str) -> pa.DataType:
        assert agg.column is not None
        source: pa.DataType = self.plan.input_schema.field(agg.column).type
        if part == "count":
            return pa.int64()
        if part == "sum":
            return _sum_type(source, agg.function)
        return source

    # -- micro-batches in ---------------------------------------------------------------------
    def aggregate(self, batch: pa.Table, panes: Ints) -> pa.Table:
        """The partials of a batch's rows (of panes `panes`), one row per (pane, keys)."""
        passed = self._passed(batch)
        columns: dict[str, Any] = {PANE: pa.array(panes, pa.int64())}
        for key in self.keys:
            columns[key] = batch.column(key)
        columns[_N] = (
            pa.array(passed.astype(np.int64)) if passed is not None else pa.array(np.ones(batch.num_rows, np.int64))
        )
        aggregations: list[tuple[str, str]] = [(_N, "sum")]
        for agg in self.aggregates:
            if agg.column is None:
                continue
            value = batch.column(agg.column)
            if passed is not None:
                value = pc.if_else(pa.array(passed), value, pa.nulls(len(value), value.type))
            for part in agg.parts:
                name = agg.part(part)
                if part == "sum":
                    columns[name] = pc.cast(value, self._part_type(agg, part))
                    aggregations.append((name, "sum"))
                elif part == "count":
                    columns[name] = value
                    aggregations.append((name, "count"))
                else:
                    columns[name] = value
                    aggregations.append((name, part))
        table = pa.table(columns)
        grouped = table.group_by([PANE, *self.keys], use_threads=False).aggregate(list[Any](aggregations))
        return self._named(grouped, aggregations)

    def _passed(self, batch: pa.Table) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
        if self.where_sql is None:
            return None
        indexed = batch.append_column(_INDEX, pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        ctx = datafusion.SessionContext()
        ctx.register_record_batches(
            WINDOWED_TABLE,
            [[unsliced(b) for b in indexed.to_batches()] or [pa.RecordBatch.from_pylist([], schema=indexed.schema)]],
        )
        try:
            found = ctx.sql(self.where_sql).to_arrow_table()
        except Exception as error:  # DataFusion raises plain Exceptions
            raise SqlError(f"continuous query failed: {error}") from error
        mask = np.zeros(batch.num_rows, dtype=np.bool_)
        mask[np.asarray(found.column(0).to_numpy(), dtype=np.int64)] = True
        return mask

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        """Partials of the same (pane, keys) combined into one row."""
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return self._combine(table, [PANE, *self.keys])

    def _combine(self, table: pa.Table, by: list[str]) -> pa.Table:
        aggregations = [(_N, "sum")]
        for agg in self.aggregates:
            aggregations += [(agg.part(part), _MERGE[part]) for part in agg.parts]
        grouped = table.group_by(by, use_threads=False).aggregate(list[Any](aggregations))
        return self._named(grouped, aggregations, by)

    def _named(self, grouped: pa.Table, aggregations: list[tuple[str, str]], by: list[str] | None = None) -> pa.Table:
        by = [PANE, *self.keys] if by is None else by
        columns = {name: grouped.column(f"{name}_{how}") for name, how in aggregations}
        out: dict[str, Any] = {name: grouped.column(name) for name in by}
        out.update(columns)
        result = pa.table(out)
        if by[0] == PANE:
            return result.cast(self.schema)
        return result

    # -- firing -------------------------------------------------------------------------------
    def finalize(self, state: pa.Table, rows: Ints, starts: Ints, ends: Ints) -> pa.Table:
        """The output of the windows (rows, starts, ends) of Aligned.firing over the state."""
        spec = self.plan.window
        assert spec is not None
        expanded = state.take(rows).drop_columns([PANE])
        expanded = expanded.append_column(_START, pa.array(starts, pa.int64()))
        expanded = expanded.append_column(_END, pa.array(ends, pa.int64()))
        grouped = self._combine(expanded, [_START, _END, *self.keys])
        grouped = grouped.filter(pc.greater(grouped.column(_N), pa.scalar(0, pa.int64())))
        window = dict(
            zip(
                WINDOW_COLUMNS,
                window_columns(
                    np.asarray(grouped.column(_START).to_numpy(), dtype=np.int64),
                    np.asarray(grouped.column(_END).to_numpy(), dtype=np.int64),
                    spec.time_type,
                ),
                strict=True,
            )
        )
        schema = self.plan.output_schema
        arrays: list[Any] = []
        for output, field in zip(self.outputs, schema, strict=True):
            if isinstance(output, str):
                value: Any = window[output] if output in window else grouped.column(output)
            else:
                value = self._final(output, grouped)
            arrays.append(pc.cast(value, field.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def _final(self, agg: Aggregate, grouped: pa.Table) -> Any:
        if agg.column is None:
            return grouped.column(_N)
        if agg.function == "AVG":
            total = pc.cast(grouped.column(agg.part("sum")), pa.float64())
            count = grouped.column(agg.part("count"))
            return pc.if_else(
                pc.equal(count, pa.scalar(0, pa.int64())),
                pa.scalar(None, pa.float64()),
                pc.divide(total, pc.cast(count, pa.float64())),
            )
        return grouped.column(agg.part(_PARTS[agg.function][0]))


def _sum_type(source: pa.DataType, function: str) -> pa.DataType:
    if function == "AVG" or pa.types.is_floating(source):
        return pa.float64()
    if pa.types.is_unsigned_integer(source):
        return pa.uint64()
    return pa.int64()


def _summable(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _orderable(kind: pa.DataType) -> bool:
    return (
        _summable(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
    )


def partials_for(plan: JobPlan) -> PartialSpec | None:
    """The partial-aggregate state for a plan of the qualifying shape (module doc), or None."""
    spec = plan.window
    if spec is None or spec.kind == "SESSION" or plan.reads_raw:
        return None
    try:
        tree = parse_query(plan.query_sql)
    except SqlError:
        return None
    if not isinstance(tree, exp.Select):
        return None
    for arg in ("with", "joins", "having", "order", "limit", "offset", "distinct", "qualify", "laterals", "windows"):
        if tree.args.get(arg):
            return None
    source = tree.args.get("from_") or tree.args.get("from")
    table = source.this if isinstance(source, exp.From) else None
    if not isinstance(table, exp.Table) or table.name != WINDOWED_TABLE or table.args.get("db"):
        return None
    alias = table.args.get("alias")
    qualifier = ident_name(alias.this) if isinstance(alias, exp.TableAlias) and alias.this else WINDOWED_TABLE
    names = set(plan.input_schema.names) | set(WINDOW_COLUMNS)

    def column(node: exp.Expr) -> str | None:
        if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
            return None
        if node.args.get("db") or node.args.get("catalog"):
            return None
        if node.table and ident_name(node.args["table"]) != qualifier:
            return None
        name = ident_name(node)
        return name if name in names else None

    group = tree.args.get("group")
    if not isinstance(group, exp.Group) or any(group.args.get(a) for a in ("rollup", "cube", "grouping_sets")):
        return None
    grouped: list[str] = []
    for item in group.expressions:
        name = column(item)
        if name is None:
            return None
        grouped.append(name)
    if not {"window_start", "window_end"} <= set(grouped):
        return None
    keys = tuple(dict.fromkeys(name for name in grouped if name not in WINDOW_COLUMNS))
    if any(pa.types.is_nested(plan.input_schema.field(k).type) for k in keys):
        return None
    outputs: list[str | Aggregate] = []
    for number, item in enumerate(tree.expressions):
        node = item.this if isinstance(item, exp.Alias) else item
        name = column(node)
        if name is not None:
            if name not in grouped:
                return None
            outputs.append(name)
            continue
        agg = _aggregate(node, column, plan.input_schema, number)
        if agg is None:
            return None
        outputs.append(agg)
    if len(outputs) != len(plan.output_schema):
        return None
    where_sql = None
    where = tree.args.get("where")
    if isinstance(where, exp.Where):
        condition = where.this
        if any(isinstance(n, exp.Query | exp.Subquery | exp.AggFunc | exp.Window | exp.Star) for n in condition.walk()):
            return None
        for node in condition.find_all(exp.Column):
            if column(node) is None or ident_name(node) in WINDOW_COLUMNS:
                return None
        selected = exp.select(exp.column(_INDEX, table=alias.this.copy() if alias and alias.this else None))
        where_sql = to_sql(selected.from_(table.copy()).where(condition.copy()))
    return PartialSpec(plan, keys, tuple(outputs), where_sql)


def _aggregate(node: exp.Expr, column: Any, schema: pa.Schema, index: int) -> Aggregate | None:
    function = next((name for kind, name in _FUNCTIONS.items() if type(node) is kind), None)
    if function is None:
        return None
    argument = node.this
    if {k for k, v in node.args.items() if v} - {"this", "big_int"}:
        return None
    if function == "COUNT" and isinstance(argument, exp.Star):
        return Aggregate("COUNT", None, index)
    name = column(argument)
    if name is None or name in WINDOW_COLUMNS:
        return None
    kind = schema.field(name).type
    if function in ("SUM", "AVG") and not _summable(kind):
        return None
    if function in ("MIN", "MAX") and not _orderable(kind):
        return None
    return Aggregate(function, name, index)
