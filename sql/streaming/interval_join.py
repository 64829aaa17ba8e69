"""The continuous interval-join operator (docs/DESIGN.md §8, issue 17): rows of two topics in, each
matching pair out once, as soon as its second row arrives; state bounded by the interval and
the watermark (sql.streaming.interval_plan).

Per round (slots, watermarks, idleness and lateness as in sql.streaming.join): the new rows of
each side that are not late are joined in two DataFusion runs of the user's query —
new side-0 rows against side 1's kept and new rows, then side 0's kept rows against the new
side-1 rows — so every pair is produced exactly once, whichever order its rows come in, and
never by a Python loop per row. Then the watermark moves and each side drops the rows no
later row can match: a side-0 row once time − low <= watermark, a side-1 row once
time + high <= watermark (a later row has a time past the watermark, or it is late).

A row is late when its time is at or before W(row) (the larger of the job's watermark before
the round and its own slot's watermark just before it): dropped, counted and returned with
`source_topic`. The output of rows that are never late equals the ad-hoc join of all rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.sql.streaming.assign import Ints, event_ms
from streamhouse.sql.streaming.interval_plan import IntervalPlan
from streamhouse.sql.streaming.operator import FLUSH_WATERMARK, OperatorStats, StepResult
from streamhouse.sql.streaming.plan import quoted_table
from streamhouse.sql.streaming.rounds import Round
from streamhouse.sql.streaming.two_sided import TwoSidedOperator, fingerprint

__all__ = ["IntervalJoinOperator"]


class _Side:
    """The kept rows of one side and their event times (ms)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.table = schema.empty_table()
        self.ms: Ints = np.zeros(0, dtype=np.int64)

    def add(self, table: pa.Table, ms: Ints) -> None:
        if table.num_rows:
            self.table = pa.concat_tables([self.table, table]).combine_chunks() if self.table.num_rows else table
            self.ms = np.concatenate([self.ms, ms])

    def drop_until(self, last_ms: int) -> None:
        """Drop the rows whose time is at or before `last_ms`."""
        keep = self.ms > last_ms
        if not keep.all():
            self.table, self.ms = self.table.filter(pa.array(keep)), self.ms[keep]


class IntervalJoinOperator(TwoSidedOperator):
    """Runs one IntervalPlan over rounds of both topics (see the module doc)."""

    _MAGIC = b"SHIVJOI1"
    _WHAT = "interval join"

    def __init__(
        self,
        plan: IntervalPlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        super().__init__(plan, idle_timeout_ms, slots)
        self.plan = plan
        self._sides = [_Side(side.input_schema) for side in plan.sides]

    @property
    def state_rows(self) -> int:
        return sum(side.table.num_rows for side in self._sides)

    @property
    def state_bytes(self) -> int:
        """Arrow bytes of the kept rows, both sides (for the bench)."""
        return sum(side.table.nbytes for side in self._sides)

    def side_state_rows(self) -> tuple[int, ...]:
        return tuple(side.table.num_rows for side in self._sides)

    def stats(self) -> OperatorStats:
        return OperatorStats(
            rows_in=self._rows_in,
            rows_out=self._rows_out,
            late_rows=self._late_rows,
            windows_fired=0,
            watermark=self.watermark,
            open_windows=0,
            state_rows=self.state_rows,
        )

    def process_round(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int] = ()) -> StepResult:
        fresh, late_rows = self._intake(batches, now_ms, pending)
        (new0, ms0), (new1, ms1) = fresh
        outputs = []
        if new0.num_rows and (self._sides[1].table.num_rows or new1.num_rows):
            kept1 = pa.concat_tables([self._sides[1].table, new1]) if self._sides[1].table.num_rows else new1
            outputs.append(self._run(new0, kept1))
        if new1.num_rows and self._sides[0].table.num_rows:
            outputs.append(self._run(self._sides[0].table, new1))
        self._sides[0].add(new0, ms0)
        self._sides[1].add(new1, ms1)
        self._prune(self._marks.current(now_ms))
        output = pa.concat_tables(outputs) if outputs else self._empty_output
        self._rows_out += output.num_rows
        return StepResult(output, late_rows, 0, self.stats())

    def _intake(
        self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int]
    ) -> tuple[list[tuple[pa.Table, Ints]], pa.Table]:
        """Each side's new rows that are not late (with their times), and the late rows of both
        (counted); the slots' watermarks observed."""
        self._rows_in += sum(rows.num_rows for rows in batches.values())
        emitted = self._marks.emitted
        job_bound = None if emitted is None else emitted + 1
        fresh: list[tuple[pa.Table, Ints]] = []
        late_pieces = []
        for index, side in enumerate(self.plan.sides):
            mine = {s: rows for s, rows in batches.items() if self.slots[s][0] == index}
            conformed = {s: self._conform(rows, index) for s, rows in mine.items()}
            round_ = Round.of(mine, conformed, side.input_schema, side.event_time, side.time_type)
            bounds = round_.own_bounds(self._marks.partition_watermark, side.delay_ms)
            if job_bound is not None:
                bounds = np.maximum(bounds, job_bound)
            late = round_.ms < bounds
            if late.any():
                late_pieces.append(self._late_rows_of(round_.source_rows(late, side.topic_schema.empty_table()), index))
            rows, ms = round_.rows, round_.ms
            if late.any():
                rows, ms = rows.filter(pa.array(~late)), ms[~late]
            fresh.append((rows, ms))
            for slot, top in round_.tops().items():
                mark = None if top is None else top - side.delay_ms
                self._marks.observe(slot, mark, now_ms, had_data=mine[slot].num_rows > 0)
        for slot in pending:
            self._marks.observe(slot, None, now_ms, had_data=True)
        late_rows = pa.concat_tables(late_pieces) if late_pieces else self._late_schema.empty_table()
        self._late_rows += late_rows.num_rows
        return fresh, late_rows

    def advance(self, now_ms: int) -> StepResult:
        self._prune(self._marks.current(now_ms))
        return StepResult(self._empty_output, self._late_schema.empty_table(), 0, self.stats())

    def flush(self) -> StepResult:
        """End of input: every pair was emitted when its second row came; drop the state."""
        self._prune(FLUSH_WATERMARK)
        return StepResult(self._empty_output, self._late_schema.empty_table(), 0, self.stats())

    def _prune(self, watermark: int | None) -> None:
        if watermark is None:
            return
        after0, after1 = self.plan.keep_ms()
        self._sides[0].drop_until(watermark - after0)
        self._sides[1].drop_until(watermark - after1)

    def _run(self, first: pa.Table, second: pa.Table) -> pa.Table:
        sides = self.plan.sides
        return self._run_query({quoted_table(sides[0].topic): first, quoted_table(sides[1].topic): second})

    # -- snapshot -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        shape: list[Any] = [self.plan.query_sql, self.plan.low_ms, self.plan.high_ms]
        shape += [[side.topic, list(side.columns), side.event_time] for side in self.plan.sides]
        return fingerprint(shape)

    def snapshot(self) -> bytes:
        """The shared frame (sql.streaming.two_sided) with the counters and both sides' kept rows."""
        counters = [self._rows_in, self._rows_out, self._late_rows]
        return self._frame({"counters": counters}, [(side.table, side.schema) for side in self._sides])

    def restore(self, data: bytes) -> None:
        header, tables = self._unframe(data)
        self._rows_in, self._rows_out, self._late_rows = (int(v) for v in header["counters"])
        self._restore_sides(tables)

    def _restore_sides(self, tables: list[pa.Table]) -> None:
        for index, table in enumerate(tables):
            side = self.plan.sides[index]
            if not table.schema.equals(side.input_schema):
                raise ValueError("the snapshot's state does not have this job's columns")
            self._sides[index] = _Side(side.input_schema)
            ms, _ = event_ms(table.column(side.event_time), side.time_type)
            self._sides[index].add(table, ms)
