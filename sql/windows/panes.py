"""Pane pre-aggregation for windowed GROUP BYs over HOP and CUMULATE.

The generic HOP rewrite copies every row into size/slide windows before grouping; docs/DESIGN.md §7
measured that ~100× slower than grouping rows into slide-sized panes first and copying the
(far fewer) pane partials into windows. Window bounds are multiples of the slide (HOP) or step
(CUMULATE) from an aligned start, so every row of a pane belongs to exactly the windows its
pane start belongs to, and the two plans agree exactly when every aggregate re-aggregates
exactly: COUNT (summed), SUM of integers (summed), MIN and MAX. Other shapes keep the generic
rewrite.

The recognised shape, directly over the window call:
    SELECT <window_start | window_end | window_time | key | aggregate | expressions of these>
    FROM TABLE(HOP(...)) [AS w] [WHERE <condition on input columns>]
    GROUP BY window_start, window_end [, window_time] [, key ...] [HAVING ...] [ORDER BY ...]
The output must match the generic rewrite's column names and types, so both plans are
planned (not run) once and the pane plan is used only when their schemas agree; unaliased
projections get the generic plan's column names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import RawSql, ident_name, quote_ident, to_sql
from streamhouse.sql.windows.datafusion_sql import (
    WindowSpec,
    cumulate_expand_sql,
    floor_ms_sql,
    hop_expand_sql,
    ms_of_sql,
    window_sql,
)
from streamhouse.sql.windows.relations import Relations, hidden_tables

__all__ = ["rewrite_with_panes"]

_WINDOW_COLUMNS = {"window_start", "window_end", "window_time"}
# How a pane partial of each aggregate combines into the window's value.
_REAGGREGATE: dict[type[exp.Expr], type[exp.Func]] = {
    exp.Count: exp.Sum,
    exp.Sum: exp.Sum,
    exp.Min: exp.Min,
    exp.Max: exp.Max,
}


@dataclass
class _Shape:
    alias: str | None
    keys: list[str] = field(default_factory=list)
    partials: dict[str, tuple[str, str]] = field(default_factory=dict)  # agg SQL -> (column, pane SQL)


def _own_nodes(select: exp.Select, holder: exp.Table) -> list[exp.Expr]:
    """The select's nodes outside the window call it reads from and its own WITH clause."""
    skip = [holder, select.args.get("with_")]
    inside = {id(node) for part in skip if isinstance(part, exp.Expr) for node in part.walk()}
    return [node for node in select.walk() if id(node) not in inside]


def _reads_input(column: exp.Column, select: exp.Select) -> bool:
    """Whether a column sits in an aggregate's argument or the WHERE clause of `select`."""
    node = column.parent
    while node is not None and node is not select:
        if isinstance(node, exp.AggFunc | exp.Where):
            return True
        node = node.parent
    return False


def _group_names(select: exp.Select, shape: _Shape) -> list[str] | None:
    group = select.args.get("group")
    if not isinstance(group, exp.Group) or any(k != "expressions" and v for k, v in group.args.items()):
        return None
    names = []
    for item in group.expressions:
        if isinstance(item, exp.Literal) and item.is_int:  # GROUP BY 1, 2: the projections
            index = int(item.name) - 1
            if not 0 <= index < len(select.expressions):
                return None
            item = select.expressions[index].unalias()
        if not isinstance(item, exp.Column) or (item.table and ident_name(item.args["table"]) != shape.alias):
            return None
        names.append(ident_name(item))
    return names


def _shape(select: exp.Select, holder: exp.Table, spec: WindowSpec) -> _Shape | None:
    """Whether `select` is a decomposable windowed aggregation over `holder`, and its parts."""
    if select.args.get("from_") is not holder.parent or select.args.get("distinct"):
        return None
    if any(select.args.get(k) for k in ("joins", "laterals", "pivots", "qualify", "windows", "connect")):
        return None
    alias = holder.args.get("alias")
    shape = _Shape(alias=ident_name(alias.this) if isinstance(alias, exp.TableAlias) and alias.this else None)
    groups = _group_names(select, shape)
    if groups is None or not {"window_start", "window_end"} <= set(groups):
        return None
    sources = set(spec.columns)
    shape.keys = [g for g in dict.fromkeys(groups) if g not in _WINDOW_COLUMNS]
    if not set(shape.keys) <= sources:
        return None
    outputs = {ident_name(p.args["alias"]) for p in select.expressions if isinstance(p, exp.Alias)}
    where = select.args.get("where")
    for node in _own_nodes(select, holder):
        if isinstance(node, exp.Star) and isinstance(node.parent, exp.Count):
            continue
        if isinstance(node, exp.Window | exp.Subquery | exp.Star | exp.Filter | exp.Distinct | RawSql):
            return None
        if isinstance(node, exp.AggFunc) and not _add_partial(node, shape, spec.schema):
            return None
        if not isinstance(node, exp.Column):
            continue
        if node.table and ident_name(node.args["table"]) != shape.alias:
            return None
        name = ident_name(node)
        in_input = _reads_input(node, select)
        if in_input and (name not in sources or name in _WINDOW_COLUMNS):
            return None  # aggregates and WHERE read input rows, never window columns
        if not in_input and name not in set(groups) | outputs:
            return None
    if where is not None and where.find(exp.AggFunc):
        return None
    return shape


def _add_partial(node: exp.AggFunc, shape: _Shape, schema: pa.Schema) -> bool:
    """Register the pane partial for one aggregate; False if it does not re-aggregate exactly."""
    if type(node) not in _REAGGREGATE or any(v for k, v in node.args.items() if k != "this" and k != "big_int"):
        return False
    arg = node.this
    if isinstance(arg, exp.Column):
        name = ident_name(arg)
        if name not in schema.names:
            return False
        if isinstance(node, exp.Sum) and not pa.types.is_integer(schema.field(name).type):
            return False  # float sums depend on addition order; decimals widen twice
        pane_sql = f"{type(node).__name__.upper()}({quote_ident(name)})"
    elif isinstance(node, exp.Count) and isinstance(arg, exp.Star):
        pane_sql = "COUNT(*)"
    else:
        return False
    if pane_sql not in shape.partials:
        shape.partials[pane_sql] = (f"__sh_p{len(shape.partials)}", pane_sql)
    return True


def _panes_sql(select: exp.Select, shape: _Shape, spec: WindowSpec) -> str:
    """Pre-aggregated panes (keys, pane start, partials) expanded into the call's windows."""
    time_col = quote_ident(spec.time_column)
    pane = floor_ms_sql(ms_of_sql(time_col, spec.time_type), spec.step_ms, spec.offset_ms)
    source = spec.source_sql + (f" AS {quote_ident(shape.alias)}" if shape.alias else "")
    where = select.args.get("where")
    condition = f" AND ({to_sql(where.this)})" if isinstance(where, exp.Where) else ""
    keys = "".join(f"{quote_ident(k)}, " for k in shape.keys)
    partials = ", ".join(f"{sql} AS {column}" for column, sql in shape.partials.values())
    panes = (
        f"SELECT {keys}__sh_pane, {partials} FROM ("
        f"SELECT *, {pane} AS __sh_pane FROM {source} WHERE {time_col} IS NOT NULL{condition}) "
        f"GROUP BY {keys}__sh_pane"
    )
    if spec.kind == "HOP":
        return hop_expand_sql(panes, "__sh_pane", spec, aligned=True)
    return cumulate_expand_sql(panes, "__sh_pane", spec)


def _apply(select: exp.Select, shape: _Shape, relation: exp.Expr) -> None:
    """Point `select` at the pane relation and re-aggregate the partials."""
    holder = select.args["from_"].this
    aggregates = [node for node in _own_nodes(select, holder) if isinstance(node, exp.AggFunc)]
    holder.replace(relation.copy())
    select.set("where", None)
    for node in aggregates:
        arg = node.this
        name = "*" if isinstance(arg, exp.Star) else quote_ident(ident_name(arg))
        column, _ = shape.partials[f"{type(node).__name__.upper()}({name})"]
        outer = _REAGGREGATE[type(node)](this=exp.column(column))
        # COUNT never yields NULL; SUM over the (non-empty) pane counts would be nullable.
        node.replace(exp.func("COALESCE", outer, exp.Literal.number(0)) if isinstance(node, exp.Count) else outer)


def rewrite_with_panes(holder: exp.Table, spec: WindowSpec, relations: Relations) -> bool:
    """Rewrite the GROUP BY around a HOP/CUMULATE call with panes; False if it does not fit."""
    select = holder.parent.parent if holder.parent is not None else None
    if spec.kind not in ("HOP", "CUMULATE") or not isinstance(select, exp.Select):
        return False
    shape = _shape(select, holder, spec)
    if shape is None or not shape.partials:
        return False
    tables = hidden_tables(holder.this)
    alias = holder.args.get("alias")
    panes = exp.Subquery(this=RawSql(this=_panes_sql(select, shape, spec), tables=tables), alias=alias)
    generic = exp.Subquery(this=RawSql(this=window_sql(spec), tables=tables), alias=alias)
    generic_select, pane_select = select.copy(), select.copy()
    generic_select.args["from_"].this.replace(generic)
    _apply(pane_select, shape, panes)
    want = relations.plan_schema(generic_select, holder)
    got = relations.plan_schema(pane_select, holder)
    if [(f.type, f.nullable) for f in want] != [(f.type, f.nullable) for f in got]:
        return False
    _apply(select, shape, panes)
    for projection, expected, actual in zip(select.expressions, want.names, got.names, strict=True):
        if expected != actual:
            projection.replace(exp.alias_(projection.unalias(), exp.to_identifier(expected, quoted=True)))
    return True
