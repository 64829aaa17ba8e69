"""Our SQL (PostgreSQL + Flink's window TVFs, sql/dialect.py) rewritten to the SQL Daft plans.

    to_daft_sql(sql, schema_of) -> DaftQuery

Daft's SQL planner differs from DataFusion's; every difference this module knows is either
rewritten or refused here, before any segment is read:

Rewritten
1. Window TVFs (TUMBLE, HOP, CUMULATE, SESSION; every spelling sql/windows/calls.py binds) →
   inline subqueries (engine/daft_sql/windows.py), e.g. TUMBLE → a computed window_start /
   window_end / window_time projection that the query's GROUP BY then groups on.
2. Identifiers: PostgreSQL and DataFusion fold unquoted names to lower case, Daft matches them as
   written → unquoted identifiers are lower-cased (`AuctionBids.num` → `auctionbids.num`).
3. INNER JOIN … ON with non-equality conjuncts: Daft executes equi-joins only → those conjuncts
   move to the WHERE of the same SELECT (the same rows for an inner join); a join left with no
   condition becomes a comma join. CROSS JOIN → a comma join (Daft has no CROSS JOIN).
4. MOD(a, b) → a % b (Daft has no MOD function).
5. Timestamp literals: `TIMESTAMP '…'` and `CAST('…' AS TIMESTAMP)` become Daft timestamps of
   the compared column's kind (Daft compares no naive with zoned timestamps and no strings with
   timestamps, where DataFusion coerces); a bare string compared with a known time column
   (`_timestamp >= '2026-01-01'`) likewise. Literals are UTC, as in sql/query/pruning.py.
6. INTERVAL literals: sqlglot prints `INTERVAL '10' SECOND` as `INTERVAL '10 SECOND'`, which
   Daft cannot parse → `INTERVAL '10000 milliseconds'` (sql/intervals.py's exact length);
   months and years (no fixed length) as `INTERVAL '<n> <unit>'`.
7. Result types: Daft's COUNT is UINT64 → cast to BIGINT as DataFusion returns it (run.py).

Refused (UnsupportedOnDaftError, saying what and to run the query without --engine)
- OUTER joins whose ON has non-equality conditions (moving them would change the rows);
- aggregate FILTER (WHERE …) clauses; statements that are not queries;
- HOP / CUMULATE with more than windows.MAX_WINDOWS_PER_ROW windows per row.
Anything else Daft cannot plan is its own error, re-raised as SqlError by run.py.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from streamhouse.daft_sql.errors import UnsupportedOnDaftError
from streamhouse.daft_sql.windows import daft_window_sql
from streamhouse.sql.dialect import RawSql, WindowCall, parse_query, to_sql
from streamhouse.sql.intervals import IntervalError, interval_ms
from streamhouse.sql.query.pruning import conjuncts
from streamhouse.sql.windows.calls import bind_window
from streamhouse.sql.windows.relations import Relations, SchemaOf, hidden_tables

__all__ = ["DaftQuery", "to_daft_sql"]

_ADVICE = "; run it without --engine (the agent's DataFusion engine runs it)"


@dataclass(frozen=True)
class DaftQuery:
    """The rewritten text and the table names it reads (lower-cased unless quoted)."""

    sql: str
    tables: frozenset[str]


def to_daft_sql(sql: str, schema_of: SchemaOf) -> DaftQuery:
    """Daft SQL for one query of ours. SqlError for bad SQL and window calls (as on DataFusion),
    UnsupportedOnDaftError for what Daft cannot run (the module doc lists both)."""
    tree = parse_query(sql)
    if not isinstance(tree, exp.Query):
        raise UnsupportedOnDaftError("only queries (SELECT, WITH) run on Daft" + _ADVICE)
    tree = normalize_identifiers(tree, dialect="postgres")
    for clause in tree.find_all(exp.Filter):
        raise UnsupportedOnDaftError(f"aggregate FILTER clauses: {to_sql(clause)[:80]}" + _ADVICE)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = frozenset(
        table.name
        for table in tree.find_all(exp.Table)
        if isinstance(table.this, exp.Identifier) and table.name not in ctes  # not a window call's holder
    )
    time_zones = _time_columns(tables, schema_of)
    _rewrite_windows(tree, sql, schema_of)
    for join in list(tree.find_all(exp.Join)):
        _equi_join(join)
    for call in list(tree.find_all(exp.Anonymous)):
        if str(call.this).lower() == "mod" and len(call.expressions) == 2:
            call.replace(exp.Paren(this=exp.Mod(this=call.expressions[0], expression=call.expressions[1])))
    _timestamp_literals(tree, time_zones)
    for interval in list(tree.find_all(exp.Interval)):
        interval.replace(_interval(interval))
    return DaftQuery(to_sql(tree), tables)


def _rewrite_windows(tree: exp.Expr, sql: str, schema_of: SchemaOf) -> None:
    """Replace every window call, inner ones first when an input holds one (as rewrite.py)."""

    def rewrite(subtree: exp.Expr) -> None:
        while (call := subtree.find(WindowCall)) is not None:
            spec = bind_window(call, relations, sql)
            holder = t.cast(exp.Table, call.parent)  # bind_window checked it
            generated = RawSql(this=daft_window_sql(spec), tables=hidden_tables(call))
            alias = holder.args.get("alias")
            if alias is None and isinstance(spec.source_sql, str) and spec.source_sql.isidentifier():
                alias = exp.TableAlias(this=exp.to_identifier(spec.source_sql))  # named like the table
            holder.replace(exp.Subquery(this=generated, alias=alias))

    relations = Relations(sql, schema_of, rewrite)
    rewrite(tree)


def _equi_join(join: exp.Join) -> None:
    if join.args.get("kind") and str(join.args["kind"]).upper() == "CROSS":
        join.set("kind", None)
        return
    on = join.args.get("on")
    if on is None:
        return
    parts = conjuncts(on)
    equal = [
        p for p in parts if isinstance(p, exp.EQ) and isinstance(p.left, exp.Column) and isinstance(p.right, exp.Column)
    ]
    rest = [p for p in parts if p not in equal]
    if not rest:
        return
    side = str(join.args.get("side") or "").upper()
    kind = str(join.args.get("kind") or "").upper()
    if side or kind not in ("", "INNER"):
        raise UnsupportedOnDaftError(
            f"{side or kind} JOIN with conditions other than column = column ({to_sql(rest[0])[:80]}): "
            "Daft joins on equalities only" + _ADVICE
        )
    select = join.find_ancestor(exp.Select)
    if select is None:
        raise UnsupportedOnDaftError("a join outside a SELECT with non-equality conditions" + _ADVICE)
    join.set("on", exp.and_(*equal) if equal else None)
    if not equal:
        join.set("kind", None)  # a comma join; the conditions filter it below
    select.where(*[p.copy() for p in rest], copy=False)


def _time_columns(tables: frozenset[str], schema_of: SchemaOf) -> dict[str, bool]:
    """Time column name → zoned (True) or naive, over the tables read; window columns naive
    unless every table's window-able columns are zoned (they take the time column's type)."""
    zones: dict[str, bool] = {}
    for name in tables:
        try:
            schema = schema_of(name)
        except Exception:
            continue
        for field in schema:
            if pa.types.is_timestamp(field.type):
                zones[field.name] = t.cast(pa.TimestampType, field.type).tz is not None
    for window in ("window_start", "window_end", "window_time"):
        zones.setdefault(window, False)
    return zones


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def _timestamp_literals(tree: exp.Expr, zones: dict[str, bool]) -> None:
    for node in list(tree.find_all(exp.Cast)):
        if isinstance(node.this, exp.Literal) and node.this.is_string and node.to.is_type("timestamp", "timestamptz"):
            node.replace(_literal(node.this.this, _zone_near(node, zones), node.to.is_type("timestamptz")))
    for comparison in list(tree.find_all(*_COMPARISONS, exp.Between)):
        columns = [c for c in comparison.find_all(exp.Column) if c.name in zones]
        if not columns:
            continue
        zoned = zones[columns[0].name]
        for literal in [v for side in comparison.iter_expressions() for v in _string_operands(side)]:
            literal.replace(_literal(literal.this, zoned, zoned))


def _string_operands(node: exp.Expr) -> list[exp.Literal]:
    """String literals a comparison side starts from: `'…'`, `('…')`, `'…' - INTERVAL …`."""
    if isinstance(node, exp.Literal) and node.is_string:
        return [node]
    if isinstance(node, exp.Paren | exp.Add | exp.Sub):
        return _string_operands(node.this)
    return []


def _zone_near(node: exp.Expr, zones: dict[str, bool]) -> bool:
    parent = node.parent
    while isinstance(parent, exp.Paren | exp.Add | exp.Sub):
        parent = parent.parent
    if isinstance(parent, (*_COMPARISONS, exp.Between)):
        return any(zones.get(c.name, False) for c in parent.find_all(exp.Column))
    return False


def _literal(text: str, zoned: bool, default_zoned: bool) -> exp.Expr:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return exp.Literal.string(text)  # not a timestamp: Daft reports the comparison
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if zoned or default_zoned:
        return RawSql(this=f"TIMESTAMP '{parsed.astimezone(UTC).isoformat(sep=' ')}'")
    ms = int(parsed.timestamp() * 1000)
    return RawSql(this=f"CAST({ms} AS TIMESTAMP(3))")


def _interval(node: exp.Interval) -> exp.Expr:
    try:
        return RawSql(this=f"INTERVAL '{interval_ms(node)} milliseconds'")
    except IntervalError:
        unit = node.args.get("unit")
        text = node.this.name if isinstance(node.this, exp.Literal) else to_sql(node.this)
        return RawSql(this=f"INTERVAL '{text}{' ' + unit.name.lower() if unit is not None else ''}'")
