"""A small, obviously correct model of the continuous window operator, for its tests.

One Python loop over events, straight from the rules (sql/streaming/operator.py's doc):
- the job watermark is the minimum over the given partitions of (max event time − delay),
  −∞ until every partition has had a row (no idleness here), and never goes back;
- a TUMBLE / HOP / CUMULATE event is judged against the larger of the watermark windows have
  already fired for and its own partition's watermark just before it (the largest time of the
  partition's earlier events − delay): late if its first window ends − 1 at or before it;
  dropped from every window when its last one does, else only from the windows that fired;
  a SESSION event is late when its session, among the open sessions and the batch's events,
  would already have fired;
- after each batch, windows (sessions) whose end − 1 <= the new watermark fire, once.
`flush` fires everything left. The result is what fired, as (start, end, key, ids), and the
ids of late events. Events are (id, ts or None, key); times are epoch ms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tests.window_reference import windows_of

Event = tuple[int, int | None, str]  # (id, ts, key)
Fired = tuple[int, int, str | None, tuple[int, ...]]  # (start, end, key or None, sorted ids)


@dataclass
class StreamModel:
    kind: str
    size: int  # window size, or the SESSION gap
    step: int = 0  # HOP slide / CUMULATE step
    offset: int = 0
    delay: int = 0
    partitions: tuple[int, ...] = (0,)
    keyed: bool = False  # SESSION PARTITION BY key; aligned windows group by key in the query
    fired: list[Fired] = field(default_factory=list)
    late: list[int] = field(default_factory=list)
    _max: dict[int, int] = field(default_factory=dict)
    _watermark: int | None = None
    _fired_wm: int | None = None
    _open: dict[tuple[int, int], list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    _session_rows: list[tuple[int, int, str]] = field(default_factory=list)  # (ts, id, key)

    def process(self, partition: int, events: list[Event]) -> None:
        timed = [(i, ts, k) for i, ts, k in events if ts is not None]
        if self.kind == "SESSION":
            self._add_session_rows(timed)
        else:
            for event_id, ts, key in timed:
                own = self._max[partition] - self.delay if partition in self._max else None
                bound = max((w for w in (own, self._fired_wm) if w is not None), default=None)
                mine = windows_of(self.kind, ts, size=self.size, step=self.step or self.size, offset=self.offset)
                passed = [bound is not None and window[1] - 1 <= bound for window in mine]
                for window in mine:
                    fired = self._fired_wm is not None and window[1] - 1 <= self._fired_wm
                    if not fired and not all(passed):
                        self._open[window].append((event_id, key))
                if any(passed):
                    self.late.append(event_id)
                self._max[partition] = max(self._max.get(partition, ts), ts)
        if timed:
            top = max(ts for _, ts, _ in timed)
            self._max[partition] = max(self._max.get(partition, top), top)
        if all(p in self._max for p in self.partitions):
            candidate = min(self._max[p] for p in self.partitions) - self.delay
            if self._watermark is None or candidate > self._watermark:
                self._watermark = candidate
        if self._watermark is not None:
            self._fire(self._watermark)

    def flush(self) -> None:
        self._fire(2**62)

    def _fire(self, watermark: int) -> None:
        if self._fired_wm is not None and watermark <= self._fired_wm:
            return
        self._fired_wm = watermark
        if self.kind == "SESSION":
            keep = []
            for start, end, key, rows in self._sessions(self._session_rows):
                if end - 1 <= watermark:
                    self.fired.append((start, end, key, tuple(sorted(i for _, i, _ in rows))))
                else:
                    keep.extend(rows)
            self._session_rows = keep
            return
        for window in sorted(self._open):
            if window[1] - 1 <= watermark:
                by_key: dict[str | None, list[int]] = defaultdict(list)
                for event_id, key in self._open.pop(window):
                    by_key[key if self.keyed else None].append(event_id)
                for key, ids in by_key.items():
                    self.fired.append((window[0], window[1], key, tuple(sorted(ids))))

    def _sessions(
        self, rows: list[tuple[int, int, str]]
    ) -> list[tuple[int, int, str | None, list[tuple[int, int, str]]]]:
        by_key: dict[str | None, list[tuple[int, int, str]]] = defaultdict(list)
        for row in rows:
            by_key[row[2] if self.keyed else None].append(row)
        found = []
        for key, key_rows in by_key.items():
            key_rows.sort()
            current: list[tuple[int, int, str]] = []
            for row in key_rows:
                if current and row[0] - current[-1][0] > self.size:
                    found.append((current[0][0], current[-1][0] + self.size, key, current))
                    current = []
                current.append(row)
            found.append((current[0][0], current[-1][0] + self.size, key, current))
        return found

    def _add_session_rows(self, timed: list[tuple[int, int, str]]) -> None:
        old = {row[1] for row in self._session_rows}
        rows = self._session_rows + [(ts, i, k) for i, ts, k in timed]
        kept = []
        for _, end, _, members in self._sessions(rows):
            only_new = all(i not in old for _, i, _ in members)
            if only_new and self._fired_wm is not None and end - 1 <= self._fired_wm:
                self.late.extend(i for _, i, _ in members)
            else:
                kept.extend(members)
        self._session_rows = kept
