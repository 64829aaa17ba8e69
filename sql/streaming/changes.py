"""`'emit' = 'changes'`: the changelog the window operator emits for open windows (Flink's
RowKinds as an `_op` column first: '+I' insert, '-U' retract, '+U' replacement).

For each window the operator keeps what it last emitted; `diff(old, new, keys)` is what turns
`old` into `new`. Rows are matched by `keys` (a GROUP BY's non-aggregate output columns: the
window bounds and group keys) when those are unique on both sides: a new key is '+I', a
changed row '-U' old then '+U' new, a vanished row '-U'. Without keys (or when they are not
unique) every old row is retracted ('-U') and every new row inserted ('+U'; '+I' when nothing
was emitted before). Applying a changelog (+I/+U add, -U remove) to `old` always gives `new`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import parse_query
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.job_options import EMIT_MODES
from streamhouse.sql.streaming.plan import JobPlan, _is_aggregate

__all__ = ["EMIT_MODES", "OP_COLUMN", "changes_schema", "diff", "group_keys", "tag"]

OP_COLUMN = "_op"


def changes_schema(schema: pa.Schema) -> pa.Schema:
    """An output schema with the `_op` column first."""
    return pa.schema([pa.field(OP_COLUMN, pa.string()), *schema])


def tag(table: pa.Table, op: str) -> pa.Table:
    return table.add_column(0, pa.field(OP_COLUMN, pa.string()), pa.array([op] * table.num_rows, pa.string()))


def group_keys(plan: JobPlan) -> tuple[str, ...] | None:
    """The output columns that identify a row of a window's result: the non-aggregate columns
    of a top-level GROUP BY select; None when that cannot be told."""
    try:
        tree = parse_query(plan.sql)
    except SqlError:
        return None
    if not isinstance(tree, exp.Select) or not isinstance(tree.args.get("group"), exp.Group):
        return None
    if tree.args.get("distinct") or any(isinstance(e.unalias(), exp.Star) for e in tree.expressions):
        return None
    names = plan.output_schema.names
    if len(tree.expressions) != len(names):
        return None
    keys = []
    for name, expression in zip(names, tree.expressions, strict=True):
        if any(_is_aggregate(node) or isinstance(node, exp.Window) for node in expression.walk()):
            continue
        keys.append(name)
    return tuple(keys) if keys and len(keys) < len(names) else None


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def diff(old: pa.Table | None, new: pa.Table, keys: tuple[str, ...] | None) -> pa.Table:
    """The changelog (`_op` first) that turns `old` (None: nothing emitted) into `new`."""
    if old is None or not old.num_rows:
        return tag(new, "+I")
    old_rows, new_rows = _rows(old), _rows(new)
    if Counter(old_rows) == Counter(new_rows):
        return tag(new.slice(0, 0), "+I")
    both = pa.concat_tables([old, new])
    shift = old.num_rows
    picks: list[int] = []
    ops: list[str] = []
    if keys is not None:
        where = [new.schema.get_field_index(k) for k in keys]
        old_keys = [tuple(row[i] for i in where) for row in old_rows]
        new_keys = [tuple(row[i] for i in where) for row in new_rows]
        if len(set(old_keys)) == len(old_keys) and len(set(new_keys)) == len(new_keys):
            old_at = {key: i for i, key in enumerate(old_keys)}
            present = set(new_keys)
            for i, key in enumerate(old_keys):
                if key not in present:
                    picks.append(i)
                    ops.append("-U")
            for j, key in enumerate(new_keys):
                i = old_at.get(key, -1)
                if i < 0:
                    picks.append(shift + j)
                    ops.append("+I")
                elif old_rows[i] != new_rows[j]:
                    picks += [i, shift + j]
                    ops += ["-U", "+U"]
            return _changelog(both, picks, ops)
    picks = [*range(old.num_rows), *range(shift, shift + new.num_rows)]
    ops = ["-U"] * old.num_rows + ["+U"] * new.num_rows
    return _changelog(both, picks, ops)


def _changelog(both: pa.Table, picks: list[int], ops: list[str]) -> pa.Table:
    rows = both.take(pa.array(picks, pa.int64()))
    return rows.add_column(0, pa.field(OP_COLUMN, pa.string()), pa.array(ops, pa.string()))
