"""The continuous window-join operator (docs/DESIGN.md §8, issue 17): micro-batches of two topics
in, the join of each window's rows of both sides out when the window closes.

    op = JoinOperator(plan_continuous(sql, schema_of, watermark_of), idle_timeout_ms, slots=slots)
    step = op.process_round({slot: rows, ...}, now_ms, pending)   # one job round, both topics
    step = op.advance(now_ms); step = op.flush()
    blob = op.snapshot(); other.restore(blob)

- Slots: the job reads (side, partition) pairs; `slots[i]` is the pair of slot i, and rounds,
  idleness and watermarks are per slot. The job's watermark is the minimum over the slots
  that are not idle (sql.streaming.watermarks, fed each slot's largest event time minus its
  own topic's declared delay), so a window closes only once both topics passed its end.
- State: per side, the rows of open windows (sql.streaming.state, the same chunks the
  single-topic operator keeps), dropped once their last window closed. Nothing else: the
  join itself is computed only when windows close.
- Closing: when the watermark reaches window_end − 1, each side's rows of the closing windows
  are annotated with window_start / window_end / window_time (a HOP row once per window) and
  `plan.query_sql` runs once in DataFusion over both sides' tables — the joins, aggregates and
  projections over whole windows, never a Python loop per row. A window's output is thus
  what the ad-hoc query returns for the window's rows.
- Lateness, per side, is the single-topic operator's rule: a row is judged against the larger
  of the job's watermark before the round and its own slot's watermark just before it; late
  when its first window ends by then (reported), dropped when its last one does. Late rows
  come back with a `source_topic` column naming their topic, in one schema for both sides
  (`late_schema`), so one dead-letter topic takes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.sql.streaming.assign import Aligned, event_ms, window_columns
from streamhouse.sql.streaming.join_plan import JoinPlan, JoinSide
from streamhouse.sql.streaming.operator import FLUSH_WATERMARK, OperatorStats, StepResult
from streamhouse.sql.streaming.plan import JobPlan
from streamhouse.sql.streaming.rounds import Round
from streamhouse.sql.streaming.state import WindowState
from streamhouse.sql.streaming.two_sided import SOURCE_COLUMN, TwoSidedOperator, fingerprint, late_schema

__all__ = ["SOURCE_COLUMN", "JoinOperator", "late_schema"]


def _side_plan(side: JoinSide, plan: JoinPlan) -> JobPlan:
    """A side as the single-topic state (sql.streaming.state) knows a job: its columns and window."""
    return JobPlan(
        sql=plan.sql,
        topic=side.topic,
        topic_schema=side.topic_schema,
        columns=side.columns,
        window=side.window,
        event_time=side.event_time,
        delay_ms=side.delay_ms,
        query_sql=plan.query_sql,
        reads_raw=False,
        output_schema=plan.output_schema,
    )


class JoinOperator(TwoSidedOperator):
    """Runs one JoinPlan over rounds of both topics (see the module doc)."""

    _MAGIC = b"SHJOINO1"
    _WHAT = "join operator"

    def __init__(
        self,
        plan: JoinPlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        # Each slot's watermark is handed in already minus its topic's delay: the delays differ.
        super().__init__(plan, idle_timeout_ms, slots)
        self.plan = plan
        self._side_plans = tuple(_side_plan(side, plan) for side in plan.sides)
        self._states = [WindowState(p, None) for p in self._side_plans]
        self._aligned = Aligned.of(plan.window)
        self._fired_wm: int | None = None
        self._windows_fired = 0

    @property
    def state_rows(self) -> int:
        """Rows held for open windows, both sides."""
        return sum(state.rows for state in self._states)

    @property
    def state_bytes(self) -> int:
        """Arrow bytes of the rows held for open windows, both sides."""
        return sum(chunk.table.nbytes for state in self._states for chunk in state.chunks)

    def side_state_rows(self) -> tuple[int, ...]:
        return tuple(state.rows for state in self._states)

    @property
    def open_windows(self) -> int:
        panes = [c.panes for state in self._states for c in state.chunks if c.panes is not None]
        return self._aligned.count_windows(np.concatenate(panes), self._bound()) if panes else 0

    def stats(self) -> OperatorStats:
        return OperatorStats(
            rows_in=self._rows_in,
            rows_out=self._rows_out,
            late_rows=self._late_rows,
            windows_fired=self._windows_fired,
            watermark=self.watermark,
            open_windows=self.open_windows,
            state_rows=self.state_rows,
        )

    # -- steps --------------------------------------------------------------------------------
    def process_round(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int] = ()) -> StepResult:
        """One round: each slot's next rows in offset order, and the slots known to hold
        unread records (`pending`). Every row of both sides is judged before the watermark
        moves; then the watermark advances and closing windows are joined, once."""
        self._rows_in += sum(rows.num_rows for rows in batches.values())
        bound = self._bound()
        late_pieces = []
        for index, side in enumerate(self.plan.sides):
            mine = {s: rows for s, rows in batches.items() if self.slots[s][0] == index}
            if not mine:
                continue
            conformed = {s: self._conform(rows, index) for s, rows in mine.items()}
            schema = self._side_plans[index].input_schema
            round_ = Round.of(mine, conformed, schema, side.event_time, side.window.time_type)
            panes = self._aligned.pane(round_.ms)
            own = round_.own_bounds(self._marks.partition_watermark, side.delay_ms)
            late, keep = self._states[index].classify(round_.rows, panes, bound, own)
            if late.any():
                late_pieces.append(self._late_rows_of(round_.source_rows(late, side.topic_schema.empty_table()), index))
            batch = round_.rows
            if not keep.all():
                batch, panes = batch.filter(pa.array(keep)), panes[keep]
            if batch.num_rows:
                self._states[index].add(batch, panes)
            for slot, top in round_.tops().items():
                mark = None if top is None else top - side.delay_ms
                self._marks.observe(slot, mark, now_ms, had_data=mine[slot].num_rows > 0)
        for slot in pending:
            self._marks.observe(slot, None, now_ms, had_data=True)
        late_rows = pa.concat_tables(late_pieces) if late_pieces else self._late_schema.empty_table()
        self._late_rows += late_rows.num_rows
        return self._step(self._marks.current(now_ms), late_rows)

    def advance(self, now_ms: int) -> StepResult:
        return self._step(self._marks.current(now_ms), None)

    def flush(self) -> StepResult:
        """End of input: close every open window."""
        return self._step(FLUSH_WATERMARK, None)

    def _bound(self) -> int | None:
        return None if self._fired_wm is None else self._fired_wm + 1

    def _step(self, watermark: int | None, late: pa.Table | None) -> StepResult:
        output, fired = self._empty_output, 0
        if watermark is not None and (self._fired_wm is None or watermark > self._fired_wm):
            old = self._bound()
            self._fired_wm = watermark
            output, fired = self._fire(old, watermark + 1)
        self._rows_out += output.num_rows
        self._windows_fired += fired
        return StepResult(output, self._late_schema.empty_table() if late is None else late, fired, self.stats())

    # -- closing windows ----------------------------------------------------------------------
    def _fire(self, old: int | None, new: int) -> tuple[pa.Table, int]:
        """Join the windows whose end is in (old, new]: each side's rows of them, annotated,
        and the query over both in one DataFusion run. Rows no open window needs are dropped."""
        tables, ends = [], []
        for index, state in enumerate(self._states):
            side = self.plan.sides[index]
            due = state.take_due(old, new)
            if due is None or not len(due.rows):
                tables.append(side.windowed_schema.empty_table())
                continue
            windowed = due.table.take(due.rows)
            names = ("window_start", "window_end", "window_time")
            for name, column in zip(names, window_columns(due.starts, due.ends, side.window.time_type), strict=True):
                windowed = windowed.append_column(name, column)
            tables.append(windowed)
            ends.append(due.ends)
        if not ends:
            return self._empty_output, 0
        fired = len(np.unique(np.concatenate(ends)))
        return self._run(tables), fired

    def _run(self, tables: list[pa.Table]) -> pa.Table:
        return self._run_query({side.table: table for side, table in zip(self.plan.sides, tables, strict=True)})

    # -- snapshot -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        shape: list[Any] = [self.plan.query_sql]
        for side in self.plan.sides:
            spec = side.window
            shape += [side.topic, list(side.columns), spec.kind, spec.time_column, spec.size_ms, spec.step_ms]
        return fingerprint(shape)

    def snapshot(self) -> bytes:
        """The shared frame (sql.streaming.two_sided) with what fired, the counters and both
        sides' rows of open windows."""
        counters = [self._rows_in, self._rows_out, self._late_rows, self._windows_fired]
        tables = [(state.table()[0], state.schema) for state in self._states]
        return self._frame({"fired_watermark": self._fired_wm, "counters": counters}, tables)

    def restore(self, data: bytes) -> None:
        """Replace this operator's state with a snapshot of an operator of the same job."""
        header, tables = self._unframe(data)
        fired = header["fired_watermark"]
        self._fired_wm = None if fired is None else int(fired)
        self._rows_in, self._rows_out, self._late_rows, self._windows_fired = (int(v) for v in header["counters"])
        for index, (state, table) in enumerate(zip(self._states, tables, strict=True)):
            if not table.schema.equals(state.schema):
                raise ValueError("the snapshot's state does not have this job's columns")
            state.clear()
            if table.num_rows:
                side = self.plan.sides[index]
                ms, _ = event_ms(table.column(side.event_time), side.window.time_type)
                state.add(table, self._aligned.pane(ms))
