"""Window assignment for the continuous window operator, vectorised over int64 epoch ms.

Aligned windows (TUMBLE, HOP, CUMULATE). With `step` the pane length (TUMBLE's size, HOP's
slide, CUMULATE's step) and F = floor(ts, step) (aligned to the epoch plus offset), the
windows holding ts end at F + m·step for m = 1 … m_max(ts), each end naming one window:
    TUMBLE    m_max = 1                  start = end − size
    HOP       m_max = size / slide       start = end − size
    CUMULATE  m_max = (ws + size − F) / step, ws = floor(ts, size)   start = ws
A window fires when the watermark wm reaches end − 1, i.e. end <= wm + 1 =: B ("bound"). So a
row is late for exactly the windows with end <= B when it arrives, it is late (reported) if
its first window F + step is, it can be dropped if its last one is, and the windows that
fire when the bound moves from B0 to B1 are those with B0 < end <= B1: per row the m in
[max(1, ⌊(B0 − F)/step⌋ + 1), min(m_max, ⌊(B1 − F)/step⌋)].

Sessions: per key, rows sorted by time; a row more than `gap` after the previous one starts
a new session; a session is [first, last + gap) (events exactly `gap` apart share one).
This module only computes; the operator owns the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.sql.windows.datafusion_sql import Timestamp, WindowSpec, window_type

__all__ = ["Aligned", "Bools", "Ints", "Sessions", "event_ms", "key_ids", "sessions", "window_columns"]

Ints: TypeAlias = npt.NDArray[np.int64]
Bools: TypeAlias = npt.NDArray[np.bool_]

_PER_MS = {"us": 1_000, "ns": 1_000_000}
_MS_TO_UNIT = {"ms": 1, "us": 1_000, "ns": 1_000_000}


def event_ms(column: pa.ChunkedArray[Any] | pa.Array[Any], time_type: Timestamp) -> tuple[Ints, Bools | None]:
    """Epoch milliseconds of a timestamp column (floored, also before 1970) and its validity
    mask (None when no value is NULL); NULL times read as 0 and must be masked out."""
    raw: Any = pc.cast(column, pa.int64())
    valid: Bools | None = None
    if raw.null_count:
        valid = np.asarray(pc.is_valid(raw).to_numpy(zero_copy_only=False), dtype=np.bool_)
        raw = pc.fill_null(raw, 0)
    values = np.asarray(raw.to_numpy(), dtype=np.int64)
    unit = str(time_type.unit)
    if unit == "s":
        values = values * 1000
    elif unit in _PER_MS:
        values = values // _PER_MS[unit]
    return values, valid


def floor_to(ms: Ints, length: int, offset: int) -> Ints:
    """Start of the [start, start + length) bucket holding each ms (numpy's % is non-negative)."""
    result: Ints = ms - (ms - offset) % length
    return result


def window_columns(starts: Ints, ends: Ints, time_type: Timestamp) -> list[pa.Array[Any]]:
    """window_start, window_end, window_time arrays typed as the ad-hoc rewrite types them."""
    target = window_type(time_type)
    scale = _MS_TO_UNIT[str(target.unit)]
    return [pa.array(values * scale, type=target) for values in (starts, ends, ends - 1)]


@dataclass(frozen=True)
class Aligned:
    """TUMBLE / HOP / CUMULATE window arithmetic (see the module doc)."""

    kind: str
    size: int
    step: int
    offset: int

    @classmethod
    def of(cls, spec: WindowSpec) -> Aligned:
        return cls(spec.kind, spec.size_ms, spec.step_ms, spec.offset_ms)

    def pane(self, ms: Ints) -> Ints:
        return floor_to(ms, self.step, self.offset)

    def first_end(self, pane: Ints) -> Ints:
        result: Ints = pane + self.step
        return result

    def last_end(self, pane: Ints) -> Ints:
        result: Ints = pane + self.m_max(pane) * self.step
        return result

    def m_max(self, pane: Ints) -> Ints:
        """How many windows a row in this pane is in (the row's time matters only through
        its pane: a CUMULATE cycle start is a multiple of the step, so floor(ts, size) =
        floor(pane, size))."""
        if self.kind == "CUMULATE":
            result: Ints = (floor_to(pane, self.size, self.offset) + self.size - pane) // self.step
            return result
        return np.full(len(pane), self.size // self.step, dtype=np.int64)

    def _ranges(self, pane: Ints, old_bound: int | None, new_bound: int | None) -> tuple[Ints, Ints]:
        """Per row, the first m and how many windows end in (old_bound, new_bound]."""
        m_max = self.m_max(pane)
        low: Ints = np.ones(len(pane), dtype=np.int64)
        if old_bound is not None:
            low = np.maximum(low, (old_bound - pane) // self.step + 1)
        high = m_max if new_bound is None else np.minimum(m_max, (new_bound - pane) // self.step)
        counts: Ints = np.maximum(high - low + 1, 0)
        return low, counts

    def firing(self, pane: Ints, old_bound: int | None, new_bound: int) -> tuple[Ints, Ints, Ints]:
        """The (row index, window start, window end) of every window of every row (given by
        its pane) whose end lies in (old_bound, new_bound]; old_bound None: no lower limit."""
        if self.size == self.step:  # one window per row: no expansion
            ends_all: Ints = pane + self.step
            due = ends_all <= new_bound
            if old_bound is not None:
                due &= ends_all > old_bound
            rows: Ints = np.flatnonzero(due)
            ends: Ints = ends_all[rows]
            return rows, ends - self.size, ends
        low, counts = self._ranges(pane, old_bound, new_bound)
        rows = np.repeat(np.arange(len(pane), dtype=np.int64), counts)
        # m for each output: the row's low plus its position within the row's run.
        firsts = np.cumsum(counts) - counts
        m = low[rows] + (np.arange(len(rows), dtype=np.int64) - firsts[rows])
        ends = pane[rows] + m * self.step
        if self.kind == "CUMULATE":
            starts: Ints = floor_to(pane[rows], self.size, self.offset)
        else:
            starts = ends - self.size
        return rows, starts, ends

    def count_windows(self, panes: Ints, old_bound: int | None, new_bound: int | None = None) -> int:
        """How many distinct windows rows of these panes are in whose end lies in
        (old_bound, new_bound] (None: unbounded). Every aligned window is named by its end."""
        if len(panes) == 0:
            return 0
        panes = np.unique(panes)
        low, counts = self._ranges(panes, old_bound, new_bound)
        rows = np.repeat(np.arange(len(panes), dtype=np.int64), counts)
        firsts = np.cumsum(counts) - counts
        ends = panes[rows] + (low[rows] + np.arange(len(rows), dtype=np.int64) - firsts[rows]) * self.step
        return len(np.unique(ends))


def key_ids(table: pa.Table, keys: tuple[str, ...]) -> Ints:
    """A dense int64 id per distinct key tuple (NULL is a value of its own, as in PARTITION BY)."""
    ids: Ints = np.zeros(table.num_rows, dtype=np.int64)
    if table.num_rows == 0:
        return ids
    for number, key in enumerate(keys):
        encoded: Any = pc.dictionary_encode(table.column(key).combine_chunks(), null_encoding="encode")
        codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        if number == 0:
            ids = codes  # dictionary indices are already dense
            continue
        _, dense = np.unique(ids * len(encoded.dictionary) + codes, return_inverse=True)
        ids = np.asarray(dense, dtype=np.int64).reshape(-1)
    return ids


@dataclass(frozen=True)
class Sessions:
    """Sessions of a set of rows: `of_row[i]` is row i's session; `start`, `end` per session."""

    of_row: Ints
    start: Ints
    end: Ints


def sessions(keys: Ints, ms: Ints, gap: int) -> Sessions:
    """Split rows into sessions per key (see the module doc)."""
    n = len(ms)
    if n == 0:
        empty: Ints = np.zeros(0, dtype=np.int64)
        return Sessions(empty, empty, empty)
    low, span = int(ms.min()), int(ms.max()) - int(ms.min()) + 1
    if (int(keys.max()) + 1) * span < 2**62:  # one int64 sort key: key, then time
        order = np.argsort(keys * span + (ms - low))
    else:
        order = np.lexsort((ms, keys))
    k, t = keys[order], ms[order]
    new = np.empty(n, dtype=np.bool_)
    new[0] = True
    new[1:] = (k[1:] != k[:-1]) | (t[1:] - t[:-1] > gap)
    heads = np.flatnonzero(new)
    tails = np.append(heads[1:], n) - 1
    of_row: Ints = np.empty(n, dtype=np.int64)
    of_row[order] = np.cumsum(new) - 1
    return Sessions(of_row, t[heads], t[tails] + gap)
