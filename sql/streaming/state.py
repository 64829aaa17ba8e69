"""The window operator's state (docs/DESIGN.md §8): the rows of open windows, nothing else.

Rows are kept in chunks, each with its rows' pane starts (aligned windows: TUMBLE / HOP /
CUMULATE, every window of a row follows from its pane) or event times (SESSION), so firing
finds the due rows without looking at the others: a chunk whose first window end is past the
watermark holds nothing due. An aligned row is dropped once its last window fired, a session's
rows when it fires. On the partial-aggregate path (sql.streaming.partials) the state is one
row of partials per (pane, keys) instead of rows, kept as a single chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.sql.streaming.assign import Aligned, Bools, Ints, key_ids, sessions
from streamhouse.sql.streaming.partials import PANE, PartialSpec
from streamhouse.sql.streaming.plan import JobPlan

__all__ = ["Chunk", "Firing", "WindowState"]

# Chunks kept before they are merged into one: bounds the per-chunk work of each step.
_MAX_CHUNKS = 64


@dataclass
class Chunk:
    """Rows of open windows: `times` is each row's pane start (aligned windows) or its event
    time in ms (sessions); `first_end` / `last_end` bound the rows' window ends (aligned)."""

    table: pa.Table
    times: Ints
    first_end: int = 0
    last_end: int = 0
    panes: Ints | None = None  # distinct panes (aligned), for counting open windows


@dataclass(frozen=True)
class Firing:
    """The windows a watermark step fires: `table`'s rows `rows`, each in the window
    [starts, ends) (a row in several windows appears once per window); `fired` windows."""

    table: pa.Table
    rows: Ints
    starts: Ints
    ends: Ints
    fired: int


class WindowState:
    """The open windows of one operator (see the module doc)."""

    def __init__(self, plan: JobPlan, partials: PartialSpec | None) -> None:
        spec = plan.window
        self.spec = spec
        self.aligned = Aligned.of(spec) if spec is not None and spec.kind != "SESSION" else None
        self.partials = partials
        self._input_schema = plan.input_schema
        self.chunks: list[Chunk] = []
        self.sessions_open: int | None = None  # cached count of open sessions (None: unknown)

    @property
    def schema(self) -> pa.Schema:
        return self._input_schema if self.partials is None else self.partials.schema

    @property
    def rows(self) -> int:
        return sum(chunk.table.num_rows for chunk in self.chunks)

    def open_windows(self, bound: int | None) -> int:
        """Windows with rows whose end is past `bound` (the fired windows' bound)."""
        spec = self.spec
        if spec is None or not self.chunks:
            return 0
        if self.aligned is not None:
            panes = np.concatenate([c.panes for c in self.chunks if c.panes is not None])
            return self.aligned.count_windows(panes, bound)
        if self.sessions_open is None:
            table, ms = self.table()
            self.sessions_open = len(sessions(key_ids(table, spec.keys), ms, spec.size_ms).start)
        return self.sessions_open

    def clear(self) -> None:
        self.chunks = []
        self.sessions_open = None

    def add(self, batch: pa.Table, times: Ints) -> None:
        self.sessions_open = None
        if self.partials is not None:
            fresh = self.partials.aggregate(batch, times)
            if self.chunks:
                fresh = self.partials.merge([c.table for c in self.chunks] + [fresh])
            self.set_partials(fresh)
            return
        if self.aligned is None:
            self.chunks.append(Chunk(batch, times))
        else:
            self.chunks.append(self.chunk(batch, times))
        if len(self.chunks) > _MAX_CHUNKS:
            table, times = self.table()
            self.chunks = [self.chunk(table, times) if self.aligned else Chunk(table, times)]

    def set_partials(self, table: pa.Table) -> None:
        pane = np.asarray(table.column(PANE).to_numpy(), dtype=np.int64)
        self.chunks = [self.chunk(table, pane)] if table.num_rows else []

    def chunk(self, table: pa.Table, pane: Ints) -> Chunk:
        """An aligned chunk of `table`, whose rows are in panes `pane`."""
        assert self.aligned is not None
        panes = np.asarray(pc.unique(pa.array(pane)).to_numpy(), dtype=np.int64)
        last = self.aligned.last_end(panes)
        return Chunk(table, pane, int(panes.min()) + self.aligned.step, int(last.max()), panes)

    def table(self, chunks: list[Chunk] | None = None) -> tuple[pa.Table, Ints]:
        """The rows of `chunks` (default: all) as one table, with their times."""
        chunks = self.chunks if chunks is None else chunks
        if not chunks:
            return self.schema.empty_table(), np.zeros(0, dtype=np.int64)
        if len(chunks) == 1:
            return chunks[0].table, chunks[0].times
        return pa.concat_tables([c.table for c in chunks]), np.concatenate([c.times for c in chunks])

    def classify(self, batch: pa.Table, times: Ints, fired: int | None, own: Ints | None = None) -> tuple[Bools, Bools]:
        """(late, keep) masks over the round's rows; `times` are pane starts (aligned windows)
        or event times (sessions). An aligned row is judged against the larger of the fired
        windows' bound and `own` (its partition's watermark before it, + 1): late if its first
        window ends by then, dropped if its last one does. A session row against what fired
        (`fired`: the fired windows' bound, None: none fired)."""
        none = np.zeros(len(times), dtype=np.bool_)
        if len(times) == 0 or (fired is None and own is None):
            return none, ~none
        if self.aligned is not None:
            bound: Ints
            if own is None:
                bound = np.full(len(times), fired, dtype=np.int64)
            else:
                bound = own if fired is None else np.maximum(own, fired)
            return self.aligned.first_end(times) <= bound, self.aligned.last_end(times) > bound
        if fired is None:
            return none, ~none
        ms = times
        spec = self.spec
        assert spec is not None
        if not (ms + spec.size_ms <= fired).any():
            return none, ~none  # every row's own session is still open
        state, state_ms = self.table()
        both = pa.concat_tables([state.select(list(spec.keys)), batch.select(list(spec.keys))])
        found = sessions(key_ids(both, spec.keys), np.concatenate([state_ms, ms]), spec.size_ms)
        has_state = np.zeros(len(found.start), dtype=np.bool_)
        has_state[found.of_row[: len(state_ms)]] = True
        mine = found.of_row[len(state_ms) :]
        late = ~has_state[mine] & (found.end[mine] <= fired)
        return late, ~late

    def take_due(self, old: int | None, new: int) -> Firing | None:
        """The windows whose end is in (old, new], dropping the rows no open window needs
        afterwards; None when nothing fires."""
        spec = self.spec
        assert spec is not None
        if self.aligned is not None:
            due = [c for c in self.chunks if c.first_end <= new]
            if not due:
                return None
            table, pane = self.table(due)
            rows, starts, ends = self.aligned.firing(pane, old, new)
            keep = self.aligned.last_end(pane) > new
            self.chunks = [c for c in self.chunks if c.first_end > new]
            if keep.any():
                self.chunks.append(self.chunk(table.filter(pa.array(keep)), pane[keep]))
            fired = self.aligned.count_windows(np.concatenate([c.panes for c in due if c.panes is not None]), old, new)
            return Firing(table, rows, starts, ends, fired)
        table, ms = self.table()
        if not table.num_rows:
            return None
        found = sessions(key_ids(table, spec.keys), ms, spec.size_ms)
        due_sessions = found.end <= new
        due_rows = due_sessions[found.of_row]
        fired = int(due_sessions.sum())
        self.sessions_open = len(due_sessions) - fired
        if not fired:
            return None
        rows = np.flatnonzero(due_rows)
        starts, ends = found.start[found.of_row[rows]], found.end[found.of_row[rows]]
        self.chunks = [Chunk(table.filter(pa.array(~due_rows)), ms[~due_rows])] if not due_rows.all() else []
        return Firing(table, rows, starts, ends, fired)

    def open_near(self, dirty: Ints) -> tuple[pa.Table, Ints]:
        """The rows (and panes) that may belong to the aligned windows ending at `dirty`."""
        assert self.aligned is not None
        low, high = int(dirty.min()) - self.aligned.size, int(dirty.max())
        chunks = [c for c in self.chunks if c.panes is not None and c.last_end > low and int(c.panes.min()) < high]
        table, pane = self.table(chunks)
        near = (pane >= low) & (pane < high)
        if not near.all():
            table, pane = table.filter(pa.array(near)), pane[near]
        return table, pane
