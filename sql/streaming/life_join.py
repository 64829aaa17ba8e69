"""The continuous lifetime-join operator (docs/DESIGN.md §8, issue 17; sql.streaming.life_plan):
owner rows (Nexmark's auctions) close when the job watermark passes their end column; then the
user's query runs once in DataFusion over the closing owners and the kept rows of the other side
(bids), and its rows are final.

State: owner rows until they close; other-side rows while some open owner's life may hold them
— a row at time t goes once t is at or before the watermark (no later owner that is not late
starts at or before t) and before the start of every open owner. Slots, watermarks, idleness,
late rows and snapshots are the interval join's (sql.streaming.interval_join).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from streamhouse.sql.streaming.assign import event_ms
from streamhouse.sql.streaming.interval_join import IntervalJoinOperator
from streamhouse.sql.streaming.life_plan import LifePlan
from streamhouse.sql.streaming.operator import FLUSH_WATERMARK, StepResult
from streamhouse.sql.streaming.two_sided import fingerprint

__all__ = ["LifeJoinOperator"]


class LifeJoinOperator(IntervalJoinOperator):
    """Runs one LifePlan over rounds of both topics (see the module doc); side 0 owns."""

    def __init__(
        self,
        plan: LifePlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        super().__init__(plan, idle_timeout_ms, slots=slots)
        self.life = plan

    def process_round(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int] = ()) -> StepResult:
        fresh, late_rows = self._intake(batches, now_ms, pending)
        for side, (rows, ms) in zip(self._sides, fresh, strict=True):
            side.add(rows, ms)
        return StepResult(self._close(self._marks.current(now_ms)), late_rows, 0, self.stats())

    def advance(self, now_ms: int) -> StepResult:
        return StepResult(self._close(self._marks.current(now_ms)), self._late_schema.empty_table(), 0, self.stats())

    def flush(self) -> StepResult:
        """End of input: every owner closes."""
        return StepResult(self._close(FLUSH_WATERMARK), self._late_schema.empty_table(), 0, self.stats())

    def _close(self, watermark: int | None) -> pa.Table:
        if watermark is None:
            return self._empty_output
        owners, others = self._sides
        output = self._empty_output
        if owners.table.num_rows:
            end_type = self.plan.sides[0].topic_schema.field(self.life.end_column).type
            ends, _ = event_ms(owners.table.column(self.life.end_column), end_type)
            due = ends <= watermark
            if due.any():
                if others.table.num_rows:
                    output = self._run(owners.table.filter(pa.array(due)), others.table)
                owners.table, owners.ms = owners.table.filter(pa.array(~due)), owners.ms[~due]
        if others.table.num_rows:
            needed = others.ms > watermark
            if owners.table.num_rows:
                needed |= others.ms >= int(owners.ms.min())
            if not needed.all():
                others.table, others.ms = others.table.filter(pa.array(needed)), others.ms[needed]
        self._rows_out += output.num_rows
        return output

    def _fingerprint(self) -> str:
        shape: list[Any] = [self.plan.kind, self.plan.query_sql, self.life.end_column, self.life.owner_key]
        shape += [[side.topic, list(side.columns), side.event_time] for side in self.plan.sides]
        return fingerprint(shape)
