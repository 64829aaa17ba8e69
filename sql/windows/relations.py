"""Schemas of the relations a window call reads: tables, CTEs and subqueries.

A table's schema comes from the caller's `schema_of`. A CTE or subquery has no stored schema,
so it is planned (never run) by DataFusion over empty stand-ins of the query's tables: the
time column's exact Arrow type then comes from the engine that will execute the query, not
from a re-implementation of its type rules. Window calls inside such a relation are rewritten
first (`prepare`), so the planner only ever sees DataFusion SQL.
"""

from __future__ import annotations

from collections.abc import Callable

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import ident_name, node_position, to_sql
from streamhouse.sql.errors import SqlError
from streamhouse.storage.errors import NotFoundError, StreamHouseError

__all__ = ["Relations", "SchemaOf", "table_name"]

SchemaOf = Callable[[str], pa.Schema]


def table_name(table: exp.Table) -> str:
    """The dotted name DataFusion resolves a table reference to (unquoted parts fold)."""
    return ".".join(ident_name(part) for part in table.parts)


def _cte_name(cte: exp.CTE) -> str:
    return ident_name(cte.args["alias"].this)


def _visible_ctes(node: exp.Expr) -> list[exp.CTE]:
    """CTEs a reference at `node` can see, nearest scope first (a CTE sees only earlier ones
    of its own WITH unless the WITH is RECURSIVE)."""
    found: list[exp.CTE] = []
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = list(parent.expressions)
            index = next((i for i, cte in enumerate(ctes) if cte is child), len(ctes))
            visible = ctes if parent.args.get("recursive") else ctes[:index]
            found.extend(reversed(visible))
        else:
            with_ = parent.args.get("with_")
            if isinstance(with_, exp.With) and with_ is not child:
                found.extend(reversed(list(with_.expressions)))
        child, parent = parent, parent.parent
    return found


def find_cte(table: exp.Table) -> exp.CTE | None:
    if table.args.get("db") or table.args.get("catalog"):
        return None
    name = table_name(table)
    return next((cte for cte in _visible_ctes(table) if _cte_name(cte) == name), None)


class Relations:
    """Resolves relation schemas for one query; the planning context is built on first use."""

    def __init__(self, sql: str, schema_of: SchemaOf, prepare: Callable[[exp.Expr], None]) -> None:
        self._sql = sql
        self._schema_of = schema_of
        self._prepare = prepare
        self._context: datafusion.SessionContext | None = None
        self._registered: set[str] = set()

    def table_schema(self, name: str, at: exp.Expr | None = None, *, function: str = "") -> pa.Schema:
        """`schema_of(name)`, with a missing table reported as a SqlError naming it."""
        try:
            schema = self._schema_of(name)
        except (LookupError, NotFoundError) as error:
            prefix = f"{function}: " if function else ""
            position = node_position(at, self._sql) if at is not None else None
            raise SqlError(f"{prefix}unknown table {name!r}", position=position, name=name) from error
        if not isinstance(schema, pa.Schema):
            raise TypeError(f"schema_of({name!r}) returned {type(schema).__name__}, not a pyarrow.Schema")
        return schema

    def relation_schema(self, relation: exp.Expr, *, function: str = "") -> pa.Schema:
        """Schema of a table reference or subquery that sits in the query tree."""
        if isinstance(relation, exp.Table):
            cte = find_cte(relation)
            if cte is None:
                return self.table_schema(table_name(relation), relation, function=function)
        else:
            self._prepare(relation)
        return self.plan_schema(exp.select("*").from_(relation.copy()), relation, function=function)

    def plan_schema(self, query: exp.Query, at: exp.Expr, *, function: str = "") -> pa.Schema:
        """Output schema of `query` (detached) as if it were written at `at`, CTEs included."""
        ctes = self._needed_ctes(query, at)
        for cte in ctes:
            self._prepare(cte.this)
        probe = query.copy()
        if ctes:
            probe.set("with_", exp.With(expressions=[cte.copy() for cte in ctes]))
        text = to_sql(probe)
        try:
            return self._planner(probe).sql(text).schema()
        except Exception as error:  # DataFusion raises plain Exceptions for planning errors
            prefix = f"{function}: " if function else ""
            raise SqlError(
                f"{prefix}cannot plan {to_sql(query)[:200]}: {error}", position=node_position(at, self._sql)
            ) from error

    def _needed_ctes(self, query: exp.Expr, at: exp.Expr) -> list[exp.CTE]:
        """CTEs `query` reads, directly or through each other, dependencies first."""
        ordered: dict[str, exp.CTE] = {}

        def visit(node: exp.Expr, scope: exp.Expr) -> None:
            visible = _visible_ctes(scope)
            for table in node.find_all(exp.Table):
                if not isinstance(table.this, exp.Identifier) or table.args.get("db"):
                    continue
                name = table_name(table)
                cte = next((c for c in visible if _cte_name(c) == name), None)
                if cte is not None and name not in ordered:
                    ordered[name] = cte  # reserve the name first: a CTE cannot read itself
                    visit(cte.this, cte.this)
                    ordered[name] = ordered.pop(name)  # dependencies were added before it

        visit(query, at)
        return list(ordered.values())

    def _planner(self, probe: exp.Expr) -> datafusion.SessionContext:
        """The planning context, with empty stand-ins for the tables `probe` reads."""
        if self._context is None:
            self._context = datafusion.SessionContext()
        ctes = {_cte_name(cte) for cte in probe.find_all(exp.CTE)}
        for table in probe.find_all(exp.Table):
            name = table_name(table)
            if not isinstance(table.this, exp.Identifier) or "." in name or name in ctes:
                continue
            if name in self._registered:
                continue
            self._registered.add(name)
            try:
                schema = self._schema_of(name)
            except (LookupError, StreamHouseError):
                continue  # not a table we know; DataFusion reports it if the probe needs it
            empty = pa.RecordBatch.from_pylist([], schema=schema)
            self._context.register_record_batches('"' + name.replace('"', '""') + '"', [[empty]])
        return self._context


def hidden_tables(relation: exp.Expr) -> list[exp.Table]:
    """Copies of the table references inside a relation, kept beside generated SQL text so
    later probes still see which tables and CTEs that text reads."""
    return [table.copy() for table in relation.find_all(exp.Table)]
