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

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import datafusion
import numpy as np
import pyarrow as pa

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.catalog import partitioned
from streamhouse.sql.streaming.assign import Aligned, event_ms, window_columns
from streamhouse.sql.streaming.interval_plan import IntervalPlan
from streamhouse.sql.streaming.join_plan import JoinPlan, JoinSide
from streamhouse.sql.streaming.operator import FLUSH_WATERMARK, OperatorStats, StepResult
from streamhouse.sql.streaming.plan import JobPlan
from streamhouse.sql.streaming.rounds import Round
from streamhouse.sql.streaming.state import WindowState
from streamhouse.sql.streaming.watermarks import Watermarks

__all__ = ["SOURCE_COLUMN", "JoinOperator", "late_schema"]

SOURCE_COLUMN = "source_topic"  # the dead-letter column naming a late row's topic
_MAGIC = b"SHJOINO1"
_U32 = struct.Struct("<I")


def late_schema(plan: JoinPlan | IntervalPlan) -> pa.Schema:
    """The late rows' schema: `source_topic`, then every column of both topics (first side's
    type where both have one); a row has NULL in the columns its topic lacks."""
    fields = [pa.field(SOURCE_COLUMN, pa.string())]
    seen = {SOURCE_COLUMN}
    for side in plan.sides:
        for field in side.topic_schema:
            if field.name not in seen:
                seen.add(field.name)
                fields.append(field.with_nullable(True))
    return pa.schema(fields)


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


class JoinOperator:
    """Runs one JoinPlan over rounds of both topics (see the module doc)."""

    def __init__(
        self,
        plan: JoinPlan,
        idle_timeout_ms: int | None = None,
        *,
        slots: tuple[tuple[int, int], ...] = ((0, 0), (1, 0)),
    ) -> None:
        self.plan = plan
        self.idle_timeout_ms = idle_timeout_ms
        self.slots = slots
        # Each slot's watermark is handed in already minus its topic's delay: the delays differ.
        self._marks = Watermarks(0, idle_timeout_ms, range(len(slots)))
        self._side_plans = tuple(_side_plan(side, plan) for side in plan.sides)
        self._states = [WindowState(p, None) for p in self._side_plans]
        self._aligned = Aligned.of(plan.window)
        self._fired_wm: int | None = None
        self._rows_in = self._rows_out = self._late_rows = self._windows_fired = 0
        self._late_schema = late_schema(plan)
        self._ctx = datafusion.SessionContext()
        self._empty_output = plan.output_schema.empty_table()

    @property
    def output_schema(self) -> pa.Schema:
        return self.plan.output_schema

    @property
    def late_schema(self) -> pa.Schema:
        return self._late_schema

    @property
    def watermark(self) -> int | None:
        return self._marks.emitted

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
                late_pieces.append(self._late_rows_of(round_.source_rows(late, side.topic_schema.empty_table()), side))
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

    def idle_partitions(self, now_ms: int) -> list[int]:
        """The slots that stop holding the watermark back at `now_ms` unless they have data."""
        return self._marks.idle_partitions(now_ms)

    def quiet_ms(self, slot: int, now_ms: int) -> int | None:
        return self._marks.quiet_ms(slot, now_ms)

    def watermark_would_advance(self, now_ms: int) -> bool:
        return self._marks.would_advance(now_ms)

    def slot_watermarks(self) -> dict[int, int | None]:
        return self._marks.partition_watermarks()

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

    def _conform(self, rows: pa.Table, index: int) -> pa.Table:
        side = self._side_plans[index]
        missing = [name for name in side.columns if name not in rows.column_names]
        if missing:
            raise ValueError(f"micro-batch lacks column(s) {', '.join(missing)} of topic {side.topic!r}")
        batch = rows.select(list(side.columns))
        schema = side.input_schema
        return batch if batch.schema.equals(schema) else batch.cast(schema)

    def _late_rows_of(self, rows: pa.Table, side: JoinSide) -> pa.Table:
        columns: list[Any] = []
        for field in self._late_schema:
            if field.name == SOURCE_COLUMN:
                columns.append(pa.array([side.topic] * rows.num_rows, pa.string()))
            elif field.name in rows.column_names:
                columns.append(rows.column(field.name).cast(field.type))
            else:
                columns.append(pa.nulls(rows.num_rows, field.type))
        return pa.Table.from_arrays(columns, schema=self._late_schema)

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
        names = []
        try:
            for side, table in zip(self.plan.sides, tables, strict=True):
                self._ctx.register_record_batches(side.table, partitioned(table))
                names.append(side.table)
            result = self._ctx.sql(self.plan.query_sql).to_arrow_table()
        except Exception as error:  # DataFusion raises plain Exceptions (e.g. a failed cast)
            raise SqlError(f"continuous query failed: {error}") from error
        finally:
            for name in names:
                self._ctx.deregister_table(name)
        schema = self.plan.output_schema
        return result if result.schema.equals(schema) else result.cast(schema)

    # -- snapshot -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        shape: list[Any] = [self.plan.query_sql]
        for side in self.plan.sides:
            spec = side.window
            shape += [side.topic, list(side.columns), spec.kind, spec.time_column, spec.size_ms, spec.step_ms]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:32]

    def snapshot(self) -> bytes:
        """magic | u32 header length | JSON header | side 0 rows (Arrow IPC) | side 1 rows: the
        watermarks per slot, what fired, the counters and both sides' rows of open windows."""
        bodies = [_ipc(state.table()[0], state.schema) for state in self._states]
        header = {
            "job": self._fingerprint(),
            "slots": [list(slot) for slot in self.slots],
            "fired_watermark": self._fired_wm,
            "watermarks": self._marks.to_state(),
            "counters": [self._rows_in, self._rows_out, self._late_rows, self._windows_fired],
            "sides": [len(body) for body in bodies],
        }
        text = json.dumps(header, separators=(",", ":")).encode()
        return _MAGIC + _U32.pack(len(text)) + text + b"".join(bodies)

    def restore(self, data: bytes) -> None:
        """Replace this operator's state with a snapshot of an operator of the same job."""
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _U32.size:
            raise ValueError("not a join operator snapshot")
        (length,) = _U32.unpack_from(data, len(_MAGIC))
        start = len(_MAGIC) + _U32.size
        try:
            header = json.loads(data[start : start + length])
            at = start + length
            tables = []
            for size in header["sides"]:
                tables.append(pa.ipc.open_stream(data[at : at + int(size)]).read_all())
                at += int(size)
        except (ValueError, KeyError, pa.ArrowInvalid) as error:
            raise ValueError(f"corrupt join operator snapshot: {error}") from None
        if header.get("job") != self._fingerprint():
            raise ValueError("the snapshot belongs to a different continuous query")
        if [tuple(slot) for slot in header["slots"]] != list(self.slots):
            raise ValueError("the snapshot was taken over other source partitions (a topic gained partitions?)")
        marks = Watermarks.from_state(header["watermarks"])
        marks.idle_timeout_ms = self.idle_timeout_ms
        self._marks = marks
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


def _ipc(table: pa.Table, schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
