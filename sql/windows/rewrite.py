"""Window table-valued functions: Flink's TUMBLE / HOP / CUMULATE / SESSION rewritten to
plain DataFusion SQL (docs/DESIGN.md §7).

    rewrite_windows(sql, schema_of) -> str

takes one SELECT / WITH query that may call window TVFs in FROM or JOIN and returns an
equivalent query DataFusion runs as is. Each call is replaced by a subquery that yields the
input's columns plus window_start, window_end and window_time (= window_end − 1 ms), with
Flink's semantics: [start, end) windows aligned to the epoch plus an optional offset, sessions
that close when the gap between consecutive events (per partition key) exceeds the gap, and
rows with a NULL time dropped. Everything around the calls (GROUP BY window_start, window_end;
window Top-N; joins of windowed results; CTEs; subqueries; aliases) is left to DataFusion.
A query without window calls is returned unchanged.

Accepted spellings (see window_calls for argument rules):
    FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' MINUTES [, offset])) [AS w]
    FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset]))
    FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, size [, offset]))
    FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), gap))
    FROM TUMBLE(t, ts, size) / HOP(t, ts, slide, size) / CUMULATE(t, ts, step, size)
    FROM SESSION(t, ts, gap [, key, ...])          -- short form: keys trail the gap
`t` may be a table, a CTE or a (subquery); named arguments (`DATA => TABLE t`, `TIMECOL =>`,
`SIZE =>`, `SLIDE =>`, `STEP =>`, `GAP =>`, `OFFSET =>`) work as in Flink. An unaliased call
over a table is named after the table (`bids.window_start`), like a plain `FROM bids`.
Table and column names resolve as DataFusion resolves them: unquoted names fold to lower case,
so `schema_of` is asked for "bids" when the query says Bids, and for "Bids" when it says "Bids".
Windows are aligned to the Unix epoch in UTC, whatever the time column's zone.
"""

from __future__ import annotations

import typing as t

from sqlglot import exp

from streamhouse.sql.dialect import RawSql, WindowCall, parse_query, to_sql
from streamhouse.sql.windows.calls import bind_window
from streamhouse.sql.windows.datafusion_sql import window_sql
from streamhouse.sql.windows.panes import rewrite_with_panes
from streamhouse.sql.windows.relations import Relations, SchemaOf, hidden_tables

__all__ = ["rewrite_windows"]


class _Rewriter:
    def __init__(self, sql: str, schema_of: SchemaOf, panes: bool) -> None:
        self.sql = sql
        self.panes = panes
        self.relations = Relations(sql, schema_of, self.rewrite)

    def rewrite(self, subtree: exp.Expr) -> None:
        """Replace every window call under `subtree`. Resolving one call's input may rewrite
        others first (a CTE or subquery it reads), so always look again for the next."""
        while (call := subtree.find(WindowCall)) is not None:
            self._rewrite_call(call)

    def _rewrite_call(self, call: WindowCall) -> None:
        spec = bind_window(call, self.relations, self.sql)
        holder = t.cast(exp.Table, call.parent)  # bind_window checked it
        if self.panes and rewrite_with_panes(holder, spec, self.relations):
            return
        generated = RawSql(this=window_sql(spec), tables=hidden_tables(call))
        holder.replace(exp.Subquery(this=generated, alias=holder.args.get("alias")))


def rewrite_windows(sql: str, schema_of: SchemaOf, *, panes: bool = True) -> str:
    """DataFusion SQL for `sql` with every window TVF call replaced (see the module doc).

    `schema_of(table)` returns a table's Arrow schema and raises KeyError (or a
    NotFoundError) for an unknown table. `panes=False` turns off the HOP/CUMULATE
    pre-aggregation, leaving only the generic rewrite (tests compare the two).
    Raises SqlError for syntax errors and malformed window calls.
    """
    tree = parse_query(sql)
    if tree.find(WindowCall) is None:
        return sql
    _Rewriter(sql, schema_of, panes).rewrite(tree)
    return to_sql(tree)
