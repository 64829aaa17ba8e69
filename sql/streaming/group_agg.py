"""An updating GROUP BY over an append-only stream of rows (docs/DESIGN.md §8, issue 17):
Nexmark q4's outer `AVG(final) … GROUP BY category` over the auctions a lifetime join closes.

Such a grouping never closes on an unbounded stream, so it is emitted as a changelog (the
job's `'emit' = 'changes'`, Flink's RowKinds in `_op`): a group's first result is '+I'; when
later rows change it, '-U' the old row then '+U' the new one; a group whose result did not
change emits nothing, as Flink's group aggregate does. Applying the changelog gives, at any
point, the ad-hoc GROUP BY over every row so far.

State is one row per group: the keys and each aggregate's partials (COUNT → count, SUM →
sum, MIN → min, MAX → max, AVG → sum + count), so it is bounded by the number of groups,
never by the number of rows. Each step is whole-batch pyarrow: the new rows are grouped,
stacked under the state with a marker column, and grouped once more — which merges the
partials, tells which groups the step touched and which existed before, and carries each
touched group's old partials (a group has at most one state row) — so old and new results
come from the same finalisation, never from a Python loop per row or per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["GroupAggSpec", "GroupAggregate", "OuterAggregate", "changelog"]

_SRC = "__sh_src"  # 0: a state row, 1: a new partial
_OLD = "__sh_old_"  # a state row's partial carried next to the merged one
_PARTS: dict[str, tuple[str, ...]] = {"COUNT": ("count",), "COUNT_STAR": ("count",), "SUM": ("sum",)}
_PARTS |= {"MIN": ("min",), "MAX": ("max",), "AVG": ("sum", "count")}
Bools = np.ndarray[Any, np.dtype[np.bool_]]
_MERGE = {"count": "sum", "sum": "sum", "min": "min", "max": "max"}


@dataclass(frozen=True)
class OuterAggregate:
    """One aggregate of the grouping: `function` over input column `column` (None: COUNT(*))."""

    function: str  # COUNT, COUNT_STAR, SUM, MIN, MAX, AVG
    column: str | None
    index: int

    def part(self, name: str) -> str:
        return f"__sh_g{self.index}_{name}"

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.part(name) for name in _PARTS[self.function])


@dataclass(frozen=True)
class GroupAggSpec:
    """What the grouping computes: output column i is `outputs[i]`, a key column name of the
    input or an aggregate; `output_schema` is the ad-hoc query's."""

    keys: tuple[str, ...]
    outputs: tuple[str | OuterAggregate, ...]
    output_schema: pa.Schema

    @property
    def aggregates(self) -> tuple[OuterAggregate, ...]:
        return tuple(o for o in self.outputs if isinstance(o, OuterAggregate))

    @property
    def key_outputs(self) -> tuple[str, ...]:
        """The output names of the key columns (they identify a changelog row)."""
        return tuple(name for name, o in zip(self.output_schema.names, self.outputs, strict=True) if isinstance(o, str))


class GroupAggregate:
    """The state and steps of one updating grouping (see the module doc)."""

    def __init__(self, spec: GroupAggSpec, input_schema: pa.Schema) -> None:
        self.spec = spec
        fields = [input_schema.field(key) for key in spec.keys]
        for agg in spec.aggregates:
            for name, part in zip(_PARTS[agg.function], agg.parts, strict=True):
                fields.append(pa.field(part, _part_type(agg, name, input_schema)))
        self.schema = pa.schema(fields)
        self.state = self.schema.empty_table()

    @property
    def groups(self) -> int:
        return self.state.num_rows

    def add(self, rows: pa.Table) -> pa.Table:
        """Fold `rows` into the state; the changelog (`_op` first) of the groups they changed."""
        if not rows.num_rows:
            return self.empty_changes()
        fresh = self._partials(rows)
        marked = [
            self.state.append_column(_SRC, pa.array(np.zeros(self.state.num_rows, np.int8))),
            fresh.append_column(_SRC, pa.array(np.ones(fresh.num_rows, np.int8))),
        ]
        stacked = pa.concat_tables(marked)
        parts = [p for agg in self.spec.aggregates for p in agg.parts]
        for part in parts:  # the old partials: the state row's value, null on new partials
            column = stacked.column(part)
            old = pc.if_else(_flags(stacked.column(_SRC), 0), column, pa.nulls(len(stacked), column.type))
            stacked = stacked.append_column(_OLD + part, old)
        aggs: list[Any] = [(part, _MERGE[part.rsplit("_", 1)[1]]) for part in parts]
        aggs += [(_OLD + part, "min") for part in parts] + [(_SRC, "min"), (_SRC, "max")]
        grouped = stacked.group_by(list(self.spec.keys), use_threads=False).aggregate(aggs)
        keys: dict[str, Any] = {key: grouped.column(key) for key in self.spec.keys}
        merged = pa.table(
            keys | {part: grouped.column(f"{part}_{_MERGE[part.rsplit('_', 1)[1]]}") for part in parts}
        ).cast(self.schema)
        self.state = merged
        touched = _flags(grouped.column(f"{_SRC}_max"), 1)
        existed = _flags(grouped.column(f"{_SRC}_min"), 0)
        new = self._finalise(merged).filter(pa.array(touched))
        olds = pa.table(keys | {part: grouped.column(f"{_OLD}{part}_min") for part in parts}).cast(self.schema)
        old = self._finalise(olds).filter(pa.array(touched))
        return changelog(old, new, existed[touched])

    def empty_changes(self) -> pa.Table:
        return _tag(self.spec.output_schema.empty_table(), np.zeros(0, np.int8))

    def _partials(self, rows: pa.Table) -> pa.Table:
        aggs: list[tuple[Any, ...]] = []
        names: list[str] = []
        for agg in self.spec.aggregates:
            for name, part in zip(_PARTS[agg.function], agg.parts, strict=True):
                if agg.function == "COUNT_STAR":
                    aggs.append(([], "count_all"))
                else:
                    aggs.append((agg.column, name))
                names.append(part)
        grouped = rows.group_by(list(self.spec.keys), use_threads=False).aggregate(aggs)
        # pyarrow names an aggregate column "<column>_<function>" (two aggregates may share a
        # name), so they are taken by position: the keys come first in pyarrow >= 15, last before.
        nkeys = len(self.spec.keys)
        keys_first = grouped.column_names[:nkeys] == list(self.spec.keys)
        values = grouped.columns[nkeys:] if keys_first else grouped.columns[: len(names)]
        columns: dict[str, Any] = {key: grouped.column(key) for key in self.spec.keys}
        table = pa.table(columns | dict(zip(names, values, strict=True)))
        return table.cast(self.schema)

    def _finalise(self, state: pa.Table) -> pa.Table:
        columns: list[Any] = []
        for output, field in zip(self.spec.outputs, self.spec.output_schema, strict=True):
            if isinstance(output, str):
                column: Any = state.column(output)
            elif output.function == "AVG":
                total, count = (state.column(p) for p in output.parts)
                nonzero = pc.greater(count, pa.scalar(0, pa.int64()))
                column = pc.if_else(
                    nonzero,
                    pc.divide(total.cast(pa.float64()), count.cast(pa.float64())),
                    pa.scalar(None, pa.float64()),
                )
            else:
                column = state.column(output.parts[0])
                if output.function in ("COUNT", "COUNT_STAR"):
                    column = pc.fill_null(column, 0)
            columns.append(column.cast(field.type))
        return pa.Table.from_arrays(columns, schema=self.spec.output_schema)


def _part_type(agg: OuterAggregate, part: str, schema: pa.Schema) -> pa.DataType:
    if part == "count":
        return pa.int64()
    source = schema.field(agg.column).type if agg.column is not None else pa.int64()
    if part == "sum":
        if pa.types.is_floating(source) or pa.types.is_decimal(source):
            return pa.float64() if pa.types.is_floating(source) else source
        return pa.uint64() if pa.types.is_unsigned_integer(source) else pa.int64()
    return source


def _flags(column: Any, value: int) -> Bools:
    """Where an int8 marker column equals `value`, as a numpy mask."""
    equal: Any = pc.equal(column, pa.scalar(value, pa.int8()))
    return np.asarray(equal.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _same(old: pa.Table, new: pa.Table) -> Bools:
    """Per row, whether the two tables' rows are equal (nulls equal nulls)."""
    same = np.ones(new.num_rows, dtype=np.bool_)
    for a, b in zip(old.columns, new.columns, strict=True):
        compared: Any = pc.equal(a, b)
        equal: Any = pc.fill_null(compared, False)
        both_null: Any = pc.and_(pc.is_null(a), pc.is_null(b))
        same &= np.asarray(pc.or_(equal, both_null).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return same


def changelog(old: pa.Table, new: pa.Table, existed: Bools) -> pa.Table:
    """Per touched group in order: '+I' new for a new group; '-U' old, '+U' new for a changed one."""
    changed = existed & ~_same(old, new)
    fresh = ~existed
    n = new.num_rows
    # Two candidate rows per group (old at 2i, new at 2i + 1), then keep the ones emitted.
    both = pa.concat_tables([old, new])
    order = np.empty(2 * n, np.int64)
    order[0::2] = np.arange(n)
    order[1::2] = n + np.arange(n)
    keep = np.empty(2 * n, bool)
    keep[0::2] = changed
    keep[1::2] = changed | fresh
    ops = np.empty(2 * n, np.int8)
    ops[0::2] = 1  # -U
    ops[1::2] = np.where(fresh, 0, 2)  # +I or +U
    picks = order[keep]
    return _tag(both.take(picks), ops[keep])


_OP_NAMES = pa.array(["+I", "-U", "+U"], pa.string())


def _tag(table: pa.Table, ops: np.ndarray[Any, np.dtype[np.int8]]) -> pa.Table:
    column = _OP_NAMES.take(ops.astype(np.int64))
    return table.add_column(0, pa.field("_op", pa.string()), column)
