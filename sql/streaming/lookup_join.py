"""The continuous lookup (temporal) join operator (docs/DESIGN.md §8, issue 17): each probe row
meets the version of the build topic in effect at its event time (sql.streaming.lookup_plan).

State: the probe rows the watermark has not passed yet, and the build topic's versions. A
probe row at time t is emitted once the job watermark (min over both topics' slots) reaches t:
by then every build row with time <= t is in — a later one would be late — so the version
chosen (the latest build row of the key with time <= t, ties to the last one read) is final and
the output does not depend on how rows were cut into rounds. Build versions at or before the
watermark are superseded by the newest of them per key (future probe rows are later than the
watermark), so only that one and the later ones are kept: the state is one row per key plus the
versions not yet passed.

The as-of search is vectorised: keys of both sides dictionary-encoded together, times ranked
together, each side's (key code, time rank) made one int64, the build side sorted by it, and
np.searchsorted finds each probe row's version — no Python loop per row. The user's query then
runs once in DataFusion over the probe rows and their versions, paired by a row number
(`__sh_row`), so projections and filters are the user's own.

Slots, watermarks, idleness, late rows (with `source_topic`) and snapshots are the interval
join's (sql.streaming.interval_join), which this operator extends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.sql.streaming.assign import Ints
from streamhouse.sql.streaming.interval_join import IntervalJoinOperator
from streamhouse.sql.streaming.lookup_plan import ROW_COLUMN, LookupPlan
from streamhouse.sql.streaming.operator import FLUSH_WATERMARK, StepResult
from streamhouse.sql.streaming.two_sided import fingerprint

__all__ = ["LookupJoinOperator", "as_of"]


def as_of(probe_keys: pa.Array[Any], probe_ms: Ints, build_keys: pa.Array[Any], build_ms: Ints) -> tuple[Ints, Ints]:
    """(probe row indices, build row indices) of each probe row that has a version: the build
    row of the same key with the largest time <= the probe's (ties: the later build row). Null
    keys match nothing."""
    n = len(probe_ms)
    if not n or not len(build_ms):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    keys = pa.concat_arrays([probe_keys, build_keys.cast(probe_keys.type)])
    codes = _codes(keys)
    _, ranks = np.unique(np.concatenate([probe_ms, build_ms]), return_inverse=True)
    span = int(ranks.max()) + 1
    combined = codes * span + ranks
    build_combined = combined[n:]
    order = np.argsort(build_combined, kind="stable")
    found = np.searchsorted(build_combined[order], combined[:n], side="right") - 1
    ok = found >= 0
    ok[ok] = codes[n:][order[found[ok]]] == codes[:n][ok]
    ok &= codes[:n] >= 0
    probe_rows = np.flatnonzero(ok).astype(np.int64)
    return probe_rows, order[found[ok]].astype(np.int64)


def latest_until(keys: pa.Array[Any], ms: Ints, watermark: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which versions to keep: every one after `watermark`, and per key the newest at or before
    it (ties: the later row); versions with a null key never match and go."""
    codes = _codes(keys)
    keep = ms > watermark
    passed = np.flatnonzero(~keep & (codes >= 0))
    if len(passed):
        order = passed[np.lexsort((ms[passed], codes[passed]))]  # by key, then time; stable
        last = np.ones(len(order), dtype=np.bool_)
        last[:-1] = codes[order[1:]] != codes[order[:-1]]
        keep[order[last]] = True
    return keep


def _codes(keys: pa.Array[Any]) -> Ints:
    """Dense int64 codes of the keys, equal keys equal codes; -1 for null."""
    encoded: Any = pc.dictionary_encode(keys)
    codes: Ints = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes


class LookupJoinOperator(IntervalJoinOperator):
    """Runs one LookupPlan over rounds of both topics (see the module doc); side 0 probes."""

    def __init__(
        self,
        plan: LookupPlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        super().__init__(plan, idle_timeout_ms, slots=slots)
        self.lookup = plan

    def process_round(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int] = ()) -> StepResult:
        fresh, late_rows = self._intake(batches, now_ms, pending)
        for side, (rows, ms) in zip(self._sides, fresh, strict=True):
            side.add(rows, ms)
        return StepResult(self._emit(self._marks.current(now_ms)), late_rows, 0, self.stats())

    def advance(self, now_ms: int) -> StepResult:
        return StepResult(self._emit(self._marks.current(now_ms)), self._late_schema.empty_table(), 0, self.stats())

    def flush(self) -> StepResult:
        """End of input: every version is in, so every waiting probe row is looked up."""
        output = self._emit(FLUSH_WATERMARK)
        self._sides[1] = type(self._sides[1])(self._sides[1].schema)
        return StepResult(output, self._late_schema.empty_table(), 0, self.stats())

    def _emit(self, watermark: int | None) -> pa.Table:
        if watermark is None:
            return self._empty_output
        probe, build = self._sides
        output = self._empty_output
        due = probe.ms <= watermark
        if due.any():
            rows, ms = probe.table.filter(pa.array(due)), probe.ms[due]
            probe.table, probe.ms = probe.table.filter(pa.array(~due)), probe.ms[~due]
            output = self._look_up(rows, ms)
        if build.table.num_rows:
            keep = latest_until(build.table.column(self.lookup.build_key).combine_chunks(), build.ms, watermark)
            if not keep.all():
                build.table, build.ms = build.table.filter(pa.array(keep)), build.ms[keep]
        self._rows_out += output.num_rows
        return output

    def _look_up(self, rows: pa.Table, ms: Ints) -> pa.Table:
        build = self._sides[1]
        probe_at, build_at = as_of(
            rows.column(self.lookup.probe_key).combine_chunks(),
            ms,
            build.table.column(self.lookup.build_key).combine_chunks(),
            build.ms,
        )
        if not len(probe_at):
            return self._empty_output
        numbers = pa.array(np.arange(len(probe_at), dtype=np.int64))
        first = rows.take(probe_at).append_column(ROW_COLUMN, numbers)
        second = build.table.take(build_at).append_column(ROW_COLUMN, numbers)
        return self._run(first, second)

    def _fingerprint(self) -> str:
        shape: list[Any] = [self.plan.kind, self.plan.query_sql, self.lookup.probe_key, self.lookup.build_key]
        shape += [[side.topic, list(side.columns), side.event_time] for side in self.plan.sides]
        return fingerprint(shape)
