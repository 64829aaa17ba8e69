"""Event-time watermarks of a continuous query (docs/DESIGN.md §8), Flink's rules:

- a source partition's watermark is the largest event time it has shown minus the topic's
  declared delay (`WATERMARK FOR ts AS ts - INTERVAL …`); before its first row it is −∞;
- the job's watermark is the minimum over the partitions that are not idle; a partition that
  had no data for `idle_timeout_ms` (of the caller's clock, `now_ms`) stops holding it back, and
  when every partition is idle the job's watermark is the largest partition watermark;
- "had data" means rows were read from it, or the caller saw records in its log it has not
  read yet (`had_data=True`): idleness means nothing to read, never "not read lately", so the
  idle rule cannot move the watermark past rows already in a partition's log;
- a partition with data is active again at once: the caller observes every partition of a
  round before asking for the watermark, so a waking partition holds it back from then on;
- when data comes back after every partition was idle (the whole topic was quiet), every
  partition's idle clock restarts: the others get a full `idle_timeout_ms` to show theirs. A
  burst reaches partitions one after another (a producer splits its batch by partition), so
  without this the first partition to wake would carry the watermark past the rows the others
  were about to receive;
- the job's watermark never goes back: a partition that wakes up with older rows lowers the
  minimum, but what was already emitted stays (its rows may then be late).

Pure bookkeeping on a handful of integers per partition: the operator hands in each batch's
largest event time, never the rows. `None` stands for −∞ throughout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Watermarks"]


@dataclass
class _Partition:
    watermark: int | None = None  # largest event time − delay; None: no row yet
    last_rows_ms: int | None = None  # caller's clock when it last had data (or when first seen)


class Watermarks:
    """Per-partition watermarks and idleness, combined into the job's watermark.

    `idle_timeout_ms=None` turns idleness off: a silent partition holds the watermark back
    forever, as in Flink without `table.exec.source.idle-timeout`. Partitions named in
    `partitions` hold it back from the start (their idle clocks start at the first `now_ms`
    seen); others join when first observed.
    """

    def __init__(self, delay_ms: int, idle_timeout_ms: int | None, partitions: Iterable[int] = ()) -> None:
        if delay_ms < 0:
            raise ValueError(f"a watermark delay cannot be negative, got {delay_ms}")
        if idle_timeout_ms is not None and idle_timeout_ms <= 0:
            raise ValueError(f"idle_timeout_ms must be positive or None, got {idle_timeout_ms}")
        self.delay_ms = delay_ms
        self.idle_timeout_ms = idle_timeout_ms
        self._partitions: dict[int, _Partition] = {p: _Partition() for p in partitions}
        self._emitted: int | None = None

    def observe(self, partition: int, max_event_ms: int | None, now_ms: int, *, had_data: bool | None = None) -> None:
        """A fetch from `partition` at `now_ms` whose largest event time is `max_event_ms`
        (None: no row with a time). `had_data` (default: a time was seen) restarts the
        partition's idle clock: pass True for rows without a time and for records known to be
        in its log but not read yet; without data the clock keeps running."""
        self._start_clocks(now_ms)
        if had_data is None:
            had_data = max_event_ms is not None
        if had_data and self._partitions and all(self._idle(s, now_ms) for s in self._partitions.values()):
            for other in self._partitions.values():  # the topic wakes: everyone gets a fresh timeout
                other.last_rows_ms = now_ms
        state = self._partitions.setdefault(partition, _Partition(last_rows_ms=now_ms))
        if had_data:
            state.last_rows_ms = now_ms
        if max_event_ms is None:
            return
        candidate = max_event_ms - self.delay_ms
        if state.watermark is None or candidate > state.watermark:
            state.watermark = candidate

    def current(self, now_ms: int) -> int | None:
        """The job's watermark at `now_ms` (None: −∞). Monotonic: what it returns is emitted."""
        self._start_clocks(now_ms)
        combined = self._combine(now_ms)
        if combined is not None and (self._emitted is None or combined > self._emitted):
            self._emitted = combined
        return self._emitted

    @property
    def emitted(self) -> int | None:
        """The last watermark `current` returned (None: −∞), without looking at the clock."""
        return self._emitted

    def partition_watermark(self, partition: int) -> int | None:
        """`partition`'s own watermark (None: −∞, no row with a time yet)."""
        state = self._partitions.get(partition)
        return None if state is None else state.watermark

    def partition_watermarks(self) -> dict[int, int | None]:
        return {p: s.watermark for p, s in sorted(self._partitions.items())}

    def quiet_ms(self, partition: int, now_ms: int) -> int | None:
        """How long `partition` has had no data at `now_ms` (None: its clock has not started)."""
        state = self._partitions.get(partition)
        return None if state is None or state.last_rows_ms is None else now_ms - state.last_rows_ms

    def would_advance(self, now_ms: int) -> bool:
        """Whether `current(now_ms)` would move the watermark (without moving it)."""
        combined = self._combine(now_ms)
        return combined is not None and (self._emitted is None or combined > self._emitted)

    def idle_partitions(self, now_ms: int) -> list[int]:
        return sorted(p for p, s in self._partitions.items() if self._idle(s, now_ms))

    def _start_clocks(self, now_ms: int) -> None:
        for state in self._partitions.values():
            if state.last_rows_ms is None:
                state.last_rows_ms = now_ms

    def _idle(self, state: _Partition, now_ms: int) -> bool:
        if self.idle_timeout_ms is None or state.last_rows_ms is None:
            return False
        return now_ms - state.last_rows_ms >= self.idle_timeout_ms

    def _combine(self, now_ms: int) -> int | None:
        if not self._partitions:
            return None
        active = [s.watermark for s in self._partitions.values() if not self._idle(s, now_ms)]
        if active:
            return None if any(w is None for w in active) else min(w for w in active if w is not None)
        known = [s.watermark for s in self._partitions.values() if s.watermark is not None]
        return max(known) if known else None

    # -- snapshot ---------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-ready state; `from_state` rebuilds an equal object."""
        return {
            "delay_ms": self.delay_ms,
            "idle_timeout_ms": self.idle_timeout_ms,
            "emitted": self._emitted,
            "partitions": {str(p): [s.watermark, s.last_rows_ms] for p, s in sorted(self._partitions.items())},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Watermarks:
        try:
            timeout = state["idle_timeout_ms"]
            marks = cls(int(state["delay_ms"]), None if timeout is None else int(timeout))
            emitted = state["emitted"]
            marks._emitted = None if emitted is None else int(emitted)
            for key, (watermark, last) in state["partitions"].items():
                marks._partitions[int(key)] = _Partition(
                    None if watermark is None else int(watermark), None if last is None else int(last)
                )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"bad watermark state: {error!r}") from None
        return marks
