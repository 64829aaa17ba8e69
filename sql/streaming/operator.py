"""The continuous window operator (docs/DESIGN.md §8): micro-batches of one source topic in, the rows
of windows that fired out, Flink's event-time semantics in between.

    op = WindowOperator(plan_job(sql, schema_of, watermark_of), idle_timeout_ms=30_000)
    step = op.process_round({p: rows, ...}, now_ms, pending)  # one job round: every partition
    step = op.process(partition, rows, now_ms)   # a round of one partition
    step = op.advance(now_ms)                    # fire what idleness / time released
    step = op.flush()                            # end of input: fire every open window
    blob = op.snapshot(); other.restore(blob)    # continue exactly where op stopped

- Rounds: a job reads the next rows of every partition, then hands them over together. All
  rows of a round are judged first; then every partition is observed (with rows, or with
  records still unread: `pending`, so not idle), and only then the watermark moves and
  windows fire, once. Firing between partitions let the first partition read carry the
  watermark past rows the round had read from the others (issue 10: a burst after an idle
  spell counted 3 of 4 rows late).
- Watermarks: see sql.streaming.watermarks (per-partition max event time − delay; min over non-idle
  partitions; never goes back).
- A window fires once, when the job's watermark reaches its end − 1 ms; its output is what
  the ad-hoc query returns for the window's rows (emit final). Windows firing in the same step
  are computed together by one run of `plan.query_sql` over their annotated rows
  (sql.streaming.emit). Snapshot bytes: sql.streaming.snapshot.
- Lateness of a TUMBLE / HOP / CUMULATE row is judged against W(row) = the larger of the
  job's watermark before the round and the row's own partition's watermark just before it
  (the largest event time of the partition's earlier rows, in offset order − delay). The
  row is late when its first window ends − 1 at or before W(row): returned in
  `StepResult.late` (the source rows, as given) and counted. It is dropped from the windows
  that already fired, and from all of them when its last window ends by W(row) too (TUMBLE:
  its one window); otherwise it still counts in the open ones. Because the job's watermark
  never passes a partition that is not idle, W(row) is then the partition's own watermark:
  lateness depends on each partition's row order only — the same for a live view and one
  created after the data, whatever the micro-batches or the order partitions are read in.
  A row in order within the declared delay (later than the largest earlier time − delay) is
  never late; after an idle spell, rows appended in that order across the topic neither.
  Only a partition that was idle can see the job's watermark run ahead of its own.
- A SESSION row is judged against the job's watermark before the round: late when the
  session it belongs to, among the open sessions and the round's rows, would already have
  fired (fired sessions are gone, as in Flink: a later row never merges into one).
- State (sql.streaming.state) is the rows of open windows, nothing else: an aligned row is dropped once its last
  window fired, a session's rows when it fires. Rows with a NULL time are in no window and
  are dropped on arrival (as the ad-hoc rewrite drops them).
A stateless plan runs its filter / projection on each batch and keeps nothing.

`emit="changes"` (the job option `'emit' = 'changes'`, aligned windows and stateless plans):
besides firing, after each process() every open window whose rows changed is computed and
its difference from what was last emitted for it is emitted (sql.streaming.changes: an `_op`
column first, '+I' / '-U' / '+U'); a firing window emits only its change since the last
update, and what was emitted for a window is kept (and snapshotted) until it fires. A
stateless plan emits its rows as '+I'. SESSION windows are refused in this mode.

Partial aggregates (sql.streaming.partials): in 'final' mode, a plain windowed aggregate
(one SELECT over one TUMBLE / HOP / CUMULATE call grouping by the window and topic columns,
selecting COUNT / SUM / MIN / MAX / AVG of columns; see `partials_for`) keeps one row of
partials per (pane, keys) instead of rows; `partials=False` forces the row-keeping path.
Lateness, watermarks, firing and the window counts are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming import snapshot
from streamhouse.sql.streaming.assign import Ints, event_ms
from streamhouse.sql.streaming.changes import EMIT_MODES, changes_schema, diff, group_keys, tag
from streamhouse.sql.streaming.emit import WindowQuery
from streamhouse.sql.streaming.partials import PartialSpec, partials_for
from streamhouse.sql.streaming.plan import JobPlan
from streamhouse.sql.streaming.rounds import Round, concat
from streamhouse.sql.streaming.state import WindowState
from streamhouse.sql.streaming.watermarks import Watermarks

__all__ = ["FLUSH_WATERMARK", "OperatorStats", "StepResult", "WindowOperator"]

# The watermark `flush` fires with: beyond every event time.
FLUSH_WATERMARK = 2**62
_NO_BOUND = FLUSH_WATERMARK + 1


@dataclass(frozen=True)
class OperatorStats:
    rows_in: int  # source rows given to process()
    rows_out: int  # output rows emitted
    late_rows: int  # source rows late for at least one window
    windows_fired: int
    watermark: int | None  # the job's watermark, epoch ms (None: no watermark yet)
    open_windows: int
    state_rows: int  # rows held for open windows (partial-aggregate rows on that path)


@dataclass(frozen=True)
class StepResult:
    output: pa.Table  # rows of the windows that fired (the SELECT's columns)
    late: pa.Table  # late source rows, as given to process()
    fired: int  # windows fired by this step
    stats: OperatorStats


class WindowOperator:
    """Runs one JobPlan over micro-batches (see the module doc).

    `idle_timeout_ms` (None: never idle) is how long a partition may go without rows before
    it stops holding the watermark back; `partitions` are the source partitions known from
    the start (each holds the watermark back until it has rows or goes idle).
    """

    def __init__(
        self,
        plan: JobPlan,
        idle_timeout_ms: int | None = None,
        *,
        partitions: tuple[int, ...] = (),
        emit: str = "final",
        partials: bool = True,
    ) -> None:
        if emit not in EMIT_MODES:
            raise ValueError(f"unknown emit mode {emit!r}; expected 'final' or 'changes'")
        if emit == "changes" and plan.window is not None and plan.window.kind == "SESSION":
            raise SqlError("'emit' = 'changes' is not supported for SESSION windows yet; use 'final'")
        self.plan = plan
        self.emit = emit
        self.changes = emit == "changes"
        self._keys = group_keys(plan) if self.changes else None
        self._emitted: dict[int, pa.Table] = {}  # changes: per open window (its end, ms), what was emitted
        self.idle_timeout_ms = idle_timeout_ms
        self._marks = Watermarks(plan.delay_ms, idle_timeout_ms, partitions)
        self._fired_wm: int | None = None  # windows with end − 1 <= this have fired
        self._rows_in = self._rows_out = self._late_rows = self._windows_fired = 0
        self._partials: PartialSpec | None = partials_for(plan) if partials and not self.changes else None
        self._windows = WindowState(plan, self._partials)
        self._aligned = self._windows.aligned
        self._query = WindowQuery(plan)
        self._empty_output = (changes_schema(plan.output_schema) if self.changes else plan.output_schema).empty_table()

    @property
    def output_schema(self) -> pa.Schema:
        """The schema of StepResult.output (`_op` first in changes mode)."""
        return self._empty_output.schema

    # -- counters -----------------------------------------------------------------------------
    @property
    def rows_in(self) -> int:
        return self._rows_in

    @property
    def rows_out(self) -> int:
        return self._rows_out

    @property
    def late_rows(self) -> int:
        return self._late_rows

    @property
    def windows_fired(self) -> int:
        return self._windows_fired

    @property
    def watermark(self) -> int | None:
        return self._marks.emitted

    @property
    def state_rows(self) -> int:
        return self._windows.rows

    @property
    def open_windows(self) -> int:
        return self._windows.open_windows(self._bound())

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
    def process(self, partition: int, rows: pa.Table, now_ms: int) -> StepResult:
        """One micro-batch of `partition` read at `now_ms`: a round of one partition."""
        return self.process_round({partition: rows}, now_ms)

    def process_round(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int] = ()) -> StepResult:
        """One round of a job at `now_ms` (the caller's clock, for idleness): each partition's
        next rows in offset order (each table carries at least `plan.columns`; late rows come
        back with all of its columns), and the partitions that showed no rows but are known to
        have records not read yet (`pending`). Every row is judged before any partition of the
        round moves the watermark; then each partition is observed (rows or pending: active),
        and only then the watermark advances and windows fire, once — so the partition read
        first cannot push the watermark past rows the round also read from the others."""
        self._rows_in += sum(rows.num_rows for rows in batches.values())
        spec = self.plan.window
        if spec is None:
            return self._round_stateless(batches, now_ms, pending)
        conformed = {p: self._conform(rows) for p, rows in batches.items()}
        round_ = Round.of(batches, conformed, self.plan.input_schema, spec.time_column, spec.time_type)
        batch, ms = round_.rows, round_.ms
        # Aligned rows are kept by pane start (all their windows follow from it), sessions by time.
        times = ms if self._aligned is None else self._aligned.pane(ms)
        own = None if self._aligned is None else round_.own_bounds(self._marks.partition_watermark, self.plan.delay_ms)
        late, keep = self._windows.classify(batch, times, self._bound(), own)
        late_rows = round_.source_rows(late, self.plan.input_schema.empty_table())
        self._late_rows += late_rows.num_rows
        if not keep.all():
            batch, times = batch.filter(pa.array(keep)), times[keep]
        if batch.num_rows:
            self._windows.add(batch, times)
        for partition, top in round_.tops().items():
            self._marks.observe(partition, top, now_ms, had_data=batches[partition].num_rows > 0)
        for partition in pending:
            self._marks.observe(partition, None, now_ms, had_data=True)
        step = self._step(self._marks.current(now_ms), late_rows)
        if not self.changes or not batch.num_rows:
            return step
        updates = self._update(times)
        if not updates.num_rows:
            return step
        self._rows_out += updates.num_rows
        output = pa.concat_tables([step.output, updates]) if step.output.num_rows else updates
        return StepResult(output, step.late, step.fired, self.stats())

    def advance(self, now_ms: int) -> StepResult:
        """Fire the windows the watermark at `now_ms` closes (idle partitions stop holding it)."""
        if self.plan.window is None:
            return self._nothing()
        return self._step(self._marks.current(now_ms), None)

    def flush(self) -> StepResult:
        """End of input: fire every open window, as a watermark beyond all data would. Rows
        given afterwards are late."""
        if self.plan.window is None:
            return self._nothing()
        return self._step(FLUSH_WATERMARK, None)

    def idle_partitions(self, now_ms: int) -> list[int]:
        """The partitions that stop holding the watermark back at `now_ms` unless they have data."""
        return self._marks.idle_partitions(now_ms)

    def quiet_ms(self, partition: int, now_ms: int) -> int | None:
        """How long `partition` has had no data (rows read or known unread) at `now_ms`."""
        return self._marks.quiet_ms(partition, now_ms)

    def watermark_would_advance(self, now_ms: int) -> bool:
        """Whether a round without rows at `now_ms` would move the watermark (idleness)."""
        return self._marks.would_advance(now_ms)

    def _nothing(self) -> StepResult:
        return StepResult(self._empty_output, self.plan.input_schema.empty_table(), 0, self.stats())

    def _step(self, watermark: int | None, late: pa.Table | None) -> StepResult:
        output, fired = self._empty_output, 0
        if watermark is not None and (self._fired_wm is None or watermark > self._fired_wm):
            old = self._bound()
            self._fired_wm = watermark
            output, fired = self._fire(old, watermark + 1)
        self._rows_out += output.num_rows
        self._windows_fired += fired
        if late is None:
            late = self.plan.input_schema.empty_table()
        return StepResult(output, late, fired, self.stats())

    def _bound(self) -> int | None:
        """Windows with end <= this bound have fired (None: none has)."""
        return None if self._fired_wm is None else self._fired_wm + 1

    # -- rows in --------------------------------------------------------------------------------
    def _conform(self, rows: pa.Table) -> pa.Table:
        missing = [name for name in self.plan.columns if name not in rows.column_names]
        if missing:
            raise ValueError(f"micro-batch lacks column(s) {', '.join(missing)} of topic {self.plan.topic!r}")
        batch = rows.select(list(self.plan.columns))
        schema = self.plan.input_schema
        return batch if batch.schema.equals(schema) else batch.cast(schema)

    def _round_stateless(self, batches: Mapping[int, pa.Table], now_ms: int, pending: Iterable[int]) -> StepResult:
        """A plan without windows runs on each row alone, so a round runs as one batch; the
        watermark is still kept (SHOW JOBS, and a view over this one's output)."""
        conformed = {p: self._conform(rows) for p, rows in batches.items()}
        for partition, batch in conformed.items():
            self._observe_stateless(partition, batch, now_ms)
        for partition in pending:
            self._marks.observe(partition, None, now_ms, had_data=True)
        self._marks.current(now_ms)
        batch = concat(list(conformed.values()), self.plan.input_schema)
        output = self._query.run(None, batch) if batch.num_rows else self._empty_output
        if self.changes and batch.num_rows:
            output = tag(output, "+I")
        self._rows_out += output.num_rows
        late = next(iter(batches.values())).slice(0, 0) if batches else self.plan.input_schema.empty_table()
        return StepResult(output, late, 0, self.stats())

    def _observe_stateless(self, partition: int, batch: pa.Table, now_ms: int) -> None:
        column = self.plan.event_time
        had_data = batch.num_rows > 0
        if column is None or column not in batch.column_names:
            self._marks.observe(partition, None, now_ms, had_data=had_data)
            return
        ms, valid = event_ms(batch.column(column), self.plan.input_schema.field(column).type)
        if valid is not None:
            ms = ms[valid]
        self._marks.observe(partition, int(ms.max()) if len(ms) else None, now_ms, had_data=had_data)

    # -- firing -------------------------------------------------------------------------------
    def _fire(self, old: int | None, new: int) -> tuple[pa.Table, int]:
        """Run the query over the windows whose end is in (old, new]; drop rows no open window
        needs. Returns the output and how many windows fired."""
        due = self._windows.take_due(old, new)
        if due is None or not len(due.rows):
            return self._empty_output, 0
        if self._partials is not None:
            return self._partials.finalize(due.table, due.rows, due.starts, due.ends), due.fired
        if self.changes:
            return self._changes(due.table, due.rows, due.starts, due.ends, final=True), due.fired
        return self._query.windows(due.table, due.rows, due.starts, due.ends), due.fired

    # -- emit changes ---------------------------------------------------------------------------
    def _update(self, panes: Ints) -> pa.Table:
        """The changelog of the open windows holding rows of these panes (just added)."""
        assert self._aligned is not None
        bound = self._bound()
        panes = np.unique(panes)
        _, _, dirty = self._aligned.firing(panes, bound, _NO_BOUND)
        if not len(dirty):
            return self._empty_output
        dirty = np.unique(dirty)
        table, pane = self._windows.open_near(dirty)
        rows, starts, ends = self._aligned.firing(pane, bound, _NO_BOUND)
        wanted = np.isin(ends, dirty)
        return self._changes(table, rows[wanted], starts[wanted], ends[wanted], final=False)

    def _changes(self, table: pa.Table, rows: Ints, starts: Ints, ends: Ints, *, final: bool) -> pa.Table:
        """Compute the windows given by (rows, starts, ends) and emit each one's difference from
        what was last emitted for it; firing (`final`) windows are then forgotten."""
        pieces = []
        for end, current in self._query.per_window(table, rows, starts, ends).items():
            old = self._emitted.pop(end, None) if final else self._emitted.get(end)
            change = diff(old, current, self._keys)
            if change.num_rows:
                pieces.append(change)
            if not final:
                self._emitted[end] = current
        if not pieces:
            return self._empty_output
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    # -- snapshot -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        return snapshot.fingerprint(self.plan, changes=self.changes, partials=self._partials is not None)

    def snapshot(self) -> bytes:
        """The operator's whole state (sql.streaming.snapshot): watermarks, idle clocks, what
        fired, counters, the open windows' rows and, changes mode, what they emitted."""
        header = {
            "job": self._fingerprint(),
            "fired_watermark": self._fired_wm,
            "watermarks": self._marks.to_state(),
            "counters": [self._rows_in, self._rows_out, self._late_rows, self._windows_fired],
        }
        table, _ = self._windows.table()
        emitted = snapshot.emitted_table(self.plan.output_schema, self._emitted) if self.changes else None
        return snapshot.encode(header, table, self._windows.schema, emitted)

    def restore(self, data: bytes) -> None:
        """Replace this operator's state with a snapshot of an operator of the same job."""
        found = snapshot.decode(data)
        header, table = found.header, found.state
        if header.get("job") != self._fingerprint():
            raise ValueError("the snapshot belongs to a different continuous query")
        if not table.schema.equals(self._windows.schema):
            raise ValueError("the snapshot's state does not have this job's columns")
        marks = Watermarks.from_state(header["watermarks"])
        marks.idle_timeout_ms = self.idle_timeout_ms
        self._marks = marks
        fired = header["fired_watermark"]
        self._fired_wm = None if fired is None else int(fired)
        self._rows_in, self._rows_out, self._late_rows, self._windows_fired = (int(v) for v in header["counters"])
        self._windows.clear()
        self._emitted = {} if found.emitted is None else snapshot.emitted_windows(found.emitted)
        spec = self.plan.window
        if self._partials is not None:
            self._windows.set_partials(table)
        elif spec is not None and table.num_rows:
            ms, _ = event_ms(table.column(spec.time_column), spec.time_type)
            self._windows.add(table, ms if self._aligned is None else self._aligned.pane(ms))
