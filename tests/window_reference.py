"""A small, obviously correct model of Flink's window TVFs, for the window rewrite's tests.

Times are epoch milliseconds (ints); an event is (id, ts or None, key, value). Each function
says which windows an event is in, straight from the definitions, with no cleverness:
- TUMBLE / HOP: the windows [s, s + size) with s = offset + n·slide (slide = size for TUMBLE)
  and s <= ts < s + size.
- CUMULATE: start = offset + n·size with start <= ts < start + size; the windows
  [start, start + j·step) for j = 1 .. size/step whose end is after ts.
- SESSION: per key, events sorted by time; an event more than `gap` after the latest earlier
  one opens a new session; a session is [first ts, last ts + gap).
Events with a NULL time are in no window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

Event = tuple[int, int | None, str | None, int]  # (id, ts, key, value)
Window = tuple[int, int]  # [start, end) in ms
Assignment = tuple[int, int, int]  # (event id, start, end)

__all__ = ["Assignment", "Event", "Window", "assign", "grouped", "windows_of"]


def _aligned_start(ts: int, length: int, offset: int) -> int:
    """The largest offset + n·length that is <= ts (Python's // floors, also below zero)."""
    return (ts - offset) // length * length + offset


def windows_of(kind: str, ts: int, *, size: int, step: int = 0, offset: int = 0) -> list[Window]:
    """The TUMBLE / HOP / CUMULATE windows holding `ts` (step = HOP slide or CUMULATE step)."""
    if kind == "TUMBLE":
        start = _aligned_start(ts, size, offset)
        return [(start, start + size)]
    if kind == "HOP":
        found = []
        start = _aligned_start(ts, step, offset)
        while start + size > ts:
            found.append((start, start + size))
            start -= step
        return found
    if kind == "CUMULATE":
        start = _aligned_start(ts, size, offset)
        ends = [start + j * step for j in range(1, size // step + 1)]
        return [(start, end) for end in ends if end > ts]
    raise ValueError(kind)


def _sessions(events: Iterable[Event], gap: int, keyed: bool) -> list[Assignment]:
    by_key: dict[str | None, list[tuple[int, int]]] = defaultdict(list)
    for event_id, ts, key, _ in events:
        if ts is not None:
            by_key[key if keyed else None].append((ts, event_id))
    out: list[Assignment] = []
    for rows in by_key.values():
        rows.sort()
        session: list[tuple[int, int]] = []
        for ts, event_id in rows:
            if session and ts - session[-1][0] > gap:
                out.extend((i, session[0][0], session[-1][0] + gap) for _, i in session)
                session = []
            session.append((ts, event_id))
        out.extend((i, session[0][0], session[-1][0] + gap) for _, i in session)
    return out


def assign(
    kind: str, events: Iterable[Event], *, size: int, step: int = 0, offset: int = 0, keyed: bool = False
) -> list[Assignment]:
    """Every (event, window) pair the window function produces; `size` is the gap for SESSION."""
    if kind == "SESSION":
        return _sessions(events, size, keyed)
    return [
        (event_id, start, end)
        for event_id, ts, _, _ in events
        if ts is not None
        for start, end in windows_of(kind, ts, size=size, step=step, offset=offset)
    ]


def grouped(
    kind: str, events: list[Event], *, size: int, step: int = 0, offset: int = 0, keyed: bool = False
) -> dict[tuple[int, int, str | None], tuple[int, int]]:
    """COUNT(*) and SUM(value) per (window_start, window_end, key) — key None when not keyed."""
    by_id = {event[0]: event for event in events}
    totals: dict[tuple[int, int, str | None], tuple[int, int]] = {}
    for event_id, start, end in assign(kind, events, size=size, step=step, offset=offset, keyed=keyed):
        _, _, key, value = by_id[event_id]
        group = (start, end, key if keyed else None)
        count, total = totals.get(group, (0, 0))
        totals[group] = (count + 1, total + value)
    return totals
