"""The wall clock in epoch milliseconds (a record's timestamp is ms, docs/DESIGN.md §2): the
one "now" that record timestamps, log-append times, job rounds and lease checks made in Python
use. The metadata store's own clock (`MetadataStore.now_ms`) is the database's and decides
lease expiry across agents; this one is the local process's. Durations and timeouts use
time.monotonic instead, which no wall-clock step can move.

A step of this process's clock can be simulated (the fault harness, `streamhouse chaos`, steps
one agent's clock while it runs): STREAMHOUSE_CLOCK_OFFSET_FILE names a file holding an offset
in ms (an integer; missing or unreadable = 0), read again at most every 200 ms."""

from __future__ import annotations

import os
import time

_OFFSET_FILE = os.environ.get("STREAMHOUSE_CLOCK_OFFSET_FILE") or None
_REREAD_S = 0.2
_offset_ms_value = 0
_offset_read_at = -1.0


def now_ms() -> int:
    """Epoch milliseconds now (wall clock, may step: never use it to measure a duration)."""
    ms = time.time_ns() // 1_000_000
    if _OFFSET_FILE is None:
        return ms
    return ms + _offset_ms(_OFFSET_FILE)


def _offset_ms(path: str) -> int:
    global _offset_ms_value, _offset_read_at
    at = time.monotonic()
    if at - _offset_read_at >= _REREAD_S:
        _offset_read_at = at
        try:
            with open(path, encoding="ascii") as f:
                _offset_ms_value = int(f.read().strip() or 0)
        except (OSError, ValueError):
            _offset_ms_value = 0
    return _offset_ms_value
