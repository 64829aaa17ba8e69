"""Checking a window call's arguments against Flink's signatures and the input's schema.

Signatures (positional, or Flink's named `DATA =>`, `TIMECOL =>`, `SIZE =>`, … arguments):
    TUMBLE(data, timecol, size [, offset])
    HOP(data, timecol, slide, size [, offset])
    CUMULATE(data, timecol, step, size [, offset])
    SESSION(data [PARTITION BY key | (key, …)], timecol, gap)
`data` is `TABLE t`, `TABLE (subquery)`, or in the short (RisingWave) form a bare table name or
subquery; `timecol` is `DESCRIPTOR(col)` or a bare column. The short SESSION form takes its
partition keys as trailing columns: `SESSION(t, ts, gap, key1, key2)`.
Every mistake is a SqlError naming the function, the argument and where it was written.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import (
    Descriptor,
    TableArg,
    WindowCall,
    ident_name,
    node_position,
    node_text,
    to_sql,
)
from streamhouse.sql.errors import SqlError
from streamhouse.sql.intervals import IntervalError, interval_ms
from streamhouse.sql.windows.datafusion_sql import WindowSpec
from streamhouse.sql.windows.relations import Relations, table_name

__all__ = ["MAX_WINDOWS_PER_ROW", "WINDOW_COLUMNS", "bind_window"]

WINDOW_COLUMNS = ("window_start", "window_end", "window_time")
# HOP and CUMULATE put each row into size/slide (size/step) windows. Past this many the query
# cannot be meant (HOP 1 ms over 1 day is 86.4 M windows a row, and once took an agent to
# 23.7 GB on 2,600 rows), so it is refused before anything runs. A generous bound: a one-day
# window sliding every 10 s is 8,640.
MAX_WINDOWS_PER_ROW = 10_000

_PARAMETERS: dict[str, tuple[str, ...]] = {
    "TUMBLE": ("data", "timecol", "size", "offset"),
    "HOP": ("data", "timecol", "slide", "size", "offset"),
    "CUMULATE": ("data", "timecol", "step", "size", "offset"),
    "SESSION": ("data", "timecol", "gap"),
}
_REQUIRED = {"TUMBLE": 3, "HOP": 4, "CUMULATE": 4, "SESSION": 3}


@dataclass(frozen=True)
class _Arg:
    node: exp.Expr
    number: int  # 1-based position as written, for messages


class _Binder:
    def __init__(self, call: WindowCall, relations: Relations, sql: str) -> None:
        self.call = call
        self.kind = call.name.upper()
        self.relations = relations
        self.sql = sql

    def fail(self, message: str, at: exp.Expr | None = None, name: str | None = None) -> SqlError:
        position = node_position(at if at is not None else self.call, self.sql)
        return SqlError(f"{self.kind}: {message}", position=position, name=name)

    def signature(self) -> str:
        params = _PARAMETERS[self.kind]
        required, optional = params[: _REQUIRED[self.kind]], params[_REQUIRED[self.kind] :]
        tail = "".join(f" [, {p}]" for p in optional)
        keys = " [PARTITION BY key]" if self.kind == "SESSION" else ""
        return f"{self.kind}({required[0]}{keys}, {', '.join(required[1:])}{tail})"

    def assign(self) -> tuple[dict[str, _Arg], list[_Arg]]:
        """Map arguments to parameter names; extra positional SESSION arguments are keys."""
        params = _PARAMETERS[self.kind]
        bound: dict[str, _Arg] = {}
        extra: list[_Arg] = []
        named_seen = False
        for number, node in enumerate(self.call.expressions, start=1):
            if isinstance(node, exp.Kwarg):
                named_seen = True
                name = node.this.name.lower()
                if name not in params:
                    raise self.fail(f"unknown argument name {name.upper()}; expected {self.signature()}", node)
                if name in bound:
                    raise self.fail(f"argument {name} given twice (argument {number})", node)
                bound[name] = _Arg(node.expression, number)
            elif named_seen:
                raise self.fail(f"positional argument {number} follows a named argument", node)
            elif number <= len(params):
                bound[params[number - 1]] = _Arg(node, number)
            elif self.kind == "SESSION":
                extra.append(_Arg(node, number))
            else:
                raise self.too_many()
        missing = [p for p in params[: _REQUIRED[self.kind]] if p not in bound]
        if missing:
            got = len(self.call.expressions)
            raise self.fail(f"expected {self.signature()}, got {got} argument{'s' * (got != 1)}; missing {missing[0]}")
        return bound, extra

    def too_many(self) -> SqlError:
        got = len(self.call.expressions)
        return self.fail(f"expected {self.signature()}, got {got} arguments")

    def relation(self, arg: _Arg) -> tuple[exp.Expr, list[exp.Expr]]:
        """The input relation (an exp.Table or exp.Subquery in the tree) and PARTITION BY keys."""
        node, keys = arg.node, []
        if isinstance(node, TableArg):
            keys = list(node.args.get("partition") or [])
            node = node.this
        if isinstance(node, exp.Column) and not node.args.get("db"):
            # Short form `TUMBLE(bids, ...)`: the column-shaped name is a table reference.
            table = exp.Table(this=node.this.copy(), db=node.args.get("table"))
            table.meta.update(node.meta)
            node.replace(table)
            node = table
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            return node, keys
        if isinstance(node, exp.Subquery):
            return node, keys
        raise self.fail(f"argument {arg.number} (data) must be TABLE name, a table name or a (subquery)", arg.node)

    def column(self, arg: _Arg, role: str) -> exp.Column:
        node = arg.node
        if isinstance(node, Descriptor):
            if len(node.expressions) != 1:
                raise self.fail(f"{role} DESCRIPTOR must name exactly one column (argument {arg.number})", node)
            node = node.expressions[0]
        if not isinstance(node, exp.Column):
            raise self.fail(f"argument {arg.number} ({role}) must be a column, e.g. DESCRIPTOR(ts)", arg.node)
        return node

    def duration(self, arg: _Arg, role: str, *, positive: bool = True) -> int:
        try:
            value = interval_ms(arg.node)
        except IntervalError as error:
            raise self.fail(f"{role} {node_text(arg.node)} (argument {arg.number}) {error}", arg.node) from None
        if positive and value <= 0:
            raise self.fail(f"{role} {node_text(arg.node)} (argument {arg.number}) must be positive", arg.node)
        return value

    def multiple(self, bound: dict[str, _Arg], size_ms: int, part: str, part_ms: int) -> None:
        if size_ms % part_ms:
            size, other = bound["size"], bound[part]
            raise self.fail(
                f"size {node_text(size.node)} is not a multiple of {part} {node_text(other.node)} "
                f"(argument {size.number})",
                size.node,
            )

    def bounded(self, bound: dict[str, _Arg], size_ms: int, part: str, part_ms: int) -> None:
        windows = size_ms // part_ms
        if windows > MAX_WINDOWS_PER_ROW:
            size, other = bound["size"], bound[part]
            raise self.fail(
                f"{node_text(size.node)} / {node_text(other.node)} = {windows:,} windows per row exceeds the "
                f"limit of {MAX_WINDOWS_PER_ROW:,} (argument {other.number}); use a longer {part} or a shorter size",
                other.node,
            )

    def durations(self, bound: dict[str, _Arg]) -> tuple[int, int, int]:
        """(size, step, offset) in ms: the gap twice for SESSION; TUMBLE's step is its size.
        The offset is reduced into [0, the length window starts are multiples of)."""
        if self.kind == "SESSION":
            gap = self.duration(bound["gap"], "gap")
            return gap, gap, 0
        size_ms = self.duration(bound["size"], "size")
        part = {"TUMBLE": "size", "HOP": "slide", "CUMULATE": "step"}[self.kind]
        step_ms = self.duration(bound[part], part)
        if part != "size":
            self.multiple(bound, size_ms, part, step_ms)
            self.bounded(bound, size_ms, part, step_ms)
        offset = bound.get("offset")
        if offset is None:
            return size_ms, step_ms, 0
        alignment = step_ms if self.kind == "HOP" else size_ms
        return size_ms, step_ms, self.duration(offset, "offset", positive=False) % alignment

    def bind(self) -> WindowSpec:
        if self.kind not in _PARAMETERS:
            raise self.fail("is not a window function")
        bound, extra = self.assign()
        relation, keys = self.relation(bound["data"])
        holder = self.call.parent
        if isinstance(relation, exp.Table) and isinstance(holder, exp.Table) and not holder.args.get("alias"):
            # Like a plain `FROM bids`, an unaliased call over a table is named after it, so
            # bids.price and bids.window_start both resolve.
            holder.set("alias", exp.TableAlias(this=relation.this.copy()))
        if keys and self.kind != "SESSION":
            raise self.fail("only SESSION takes PARTITION BY keys", bound["data"].node)
        schema = self.relations.relation_schema(relation, function=self.kind)
        source_name = f"table {table_name(relation)}" if isinstance(relation, exp.Table) else "the subquery"
        columns = tuple(schema.names)
        if clash := [c for c in WINDOW_COLUMNS if c in columns]:
            raise self.fail(
                f"{source_name} already has a column named {clash[0]}; rename it (argument 1)",
                bound["data"].node,
                clash[0],
            )
        time_col = self.column(bound["timecol"], "timecol")
        time_name = ident_name(time_col)
        number = bound["timecol"].number
        if time_name not in columns:
            raise self.fail(
                f"time column {time_name!r} (argument {number}) is not a column of {source_name}; "
                f"it has {', '.join(columns)}",
                time_col,
                time_name,
            )
        time_type = schema.field(time_name).type
        if not pa.types.is_timestamp(time_type):
            raise self.fail(
                f"time column {time_name!r} (argument {number}) has type {time_type}; it must be a TIMESTAMP",
                time_col,
                time_name,
            )
        key_names = []
        for key in keys + [self.column(a, "partition key") for a in extra]:
            name = ident_name(key)
            if name not in columns:
                raise self.fail(f"partition key {name!r} is not a column of {source_name}", key, name)
            key_names.append(name)
        size_ms, step_ms, offset_ms = self.durations(bound)
        return WindowSpec(
            kind=self.kind,
            source_sql=to_sql(relation),
            time_column=time_name,
            time_type=time_type,
            schema=schema,
            size_ms=size_ms,
            step_ms=step_ms,
            offset_ms=offset_ms,
            keys=tuple(key_names),
        )


def bind_window(call: WindowCall, relations: Relations, sql: str) -> WindowSpec:
    """Validate one window call (which must sit in a FROM or JOIN) and describe it."""
    binder = _Binder(call, relations, sql)
    holder = call.parent
    if not isinstance(holder, exp.Table) or not isinstance(holder.parent, exp.From | exp.Join):
        raise binder.fail(
            "a window table-valued function can only be used in FROM or JOIN, e.g. "
            "FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)); "
            "the legacy GROUP BY TUMBLE(ts, ...) form is not supported"
        )
    return binder.bind()
