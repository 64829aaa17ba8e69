"""The wall clock in epoch milliseconds (a record's timestamp is ms, docs/DESIGN.md §2): the
one "now" that record timestamps, log-append times, job rounds and lease checks made in Python
use. The metadata store's own clock (`MetadataStore.now_ms`) is the database's and decides
lease expiry across agents; this one is the local process's. Durations and timeouts use
time.monotonic instead, which no wall-clock step can move."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Epoch milliseconds now (wall clock, may step: never use it to measure a duration)."""
    return time.time_ns() // 1_000_000
