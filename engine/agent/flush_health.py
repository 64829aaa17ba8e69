"""Per-partition state of failing segment flushes: exponential backoff, one log line per
change of state (not per attempt), and what readiness reports. A flush that keeps failing
must never spin (it retried ~15 times a second before), never hide (health names the
partition) and never give up on acknowledged records (they stay buffered and in the WAL;
only deleting the topic ends the retries)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamhouse.storage.errors import StorageUnavailableError

log = logging.getLogger(__name__)

Key = tuple[str, int]

FIRST_RETRY_S = 0.5
# A storage outage heals by itself and the stores' own probes already report it, so it is
# retried sooner; anything else (a conflicting object, a bug) waits longer between attempts.
OUTAGE_CAP_S = 5.0
FAULT_CAP_S = 30.0


def is_outage(exc: BaseException) -> bool:
    """Whether a flush failed because a store could not be reached (it heals by itself)."""
    return isinstance(exc, StorageUnavailableError | OSError | TimeoutError | ConnectionError)


@dataclass(frozen=True)
class FlushFailure:
    """The current failing state of one partition's flushes."""

    error: str
    outage: bool
    failures: int  # consecutive failed attempts
    since: float  # wall-clock seconds of the first failure
    retry_at: float  # monotonic seconds before which no flush is attempted

    def describe(self, key: Key) -> str:
        kind = "store unreachable" if self.outage else "failing"
        started = time.strftime("%H:%M:%SZ", time.gmtime(self.since))
        return f"flush of {key[0]}/{key[1]} {kind} since {started} ({self.failures} attempts): {self.error}"


class FlushHealth:
    def __init__(self) -> None:
        self._failing: dict[Key, FlushFailure] = {}
        # For the metrics (this module stays metrics-free): after every attempt that failed
        # (True) or recovered a failing partition (False), with how many partitions now fail.
        self.on_change: Callable[[str, bool, int], None] = lambda topic, failed, failing: None

    def wait_s(self, key: Key) -> float:
        """Seconds until the partition may be flushed again (0: now)."""
        state = self._failing.get(key)
        return 0.0 if state is None else max(0.0, state.retry_at - time.monotonic())

    def failed(self, key: Key, exc: BaseException) -> FlushFailure:
        """Record a failed attempt: back off, and log only if the failing state changed."""
        before = self._failing.get(key)
        outage = is_outage(exc)
        error = f"{type(exc).__name__}: {exc}"
        failures = 1 if before is None else before.failures + 1
        delay = min(FIRST_RETRY_S * 2 ** (failures - 1), OUTAGE_CAP_S if outage else FAULT_CAP_S)
        state = FlushFailure(
            error=error,
            outage=outage,
            failures=failures,
            since=time.time() if before is None else before.since,
            retry_at=time.monotonic() + delay,
        )
        self._failing[key] = state
        if before is None or before.error != error:
            level = logging.WARNING if outage else logging.ERROR
            log.log(level, "%s; retrying with backoff up to %gs", state.describe(key), delay if outage else FAULT_CAP_S)
        else:
            log.debug("%s; next attempt in %.1fs", state.describe(key), delay)
        self.on_change(key[0], True, len(self._failing))
        return state

    def succeeded(self, key: Key) -> None:
        before = self._failing.pop(key, None)
        if before is not None:
            log.warning("flush of %s/%d recovered after %d failed attempts", key[0], key[1], before.failures)
            self.on_change(key[0], False, len(self._failing))

    def forget(self, key: Key) -> None:
        """The partition is no longer led (fenced, topic deleted, shutdown)."""
        if self._failing.pop(key, None) is not None:
            self.on_change(key[0], False, len(self._failing))

    def faults(self) -> dict[Key, FlushFailure]:
        """Partitions failing for a reason other than a storage outage: not ready."""
        return {k: s for k, s in self._failing.items() if not s.outage}

    @property
    def failing_count(self) -> int:
        return len(self._failing)
