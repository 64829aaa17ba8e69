"""Failing background work, tracked per key (a partition's flushes, a partition's merges, the
merger's listing and deletions): exponential backoff, one log line per change of state (not per
attempt), and what readiness and the metrics report. One discipline for every background task:
a task that keeps failing never spins, never hides (health names it) and says so once.

A storage outage heals by itself and the stores' own probes already report it, so it is retried
sooner and kept out of readiness; anything else (a conflicting object, a bug) waits longer
between attempts and makes the agent not ready until it succeeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from streamhouse.storage.errors import StorageUnavailableError

K = TypeVar("K", bound=Hashable)


def is_outage(exc: BaseException) -> bool:
    """Whether work failed because a store could not be reached (it heals by itself)."""
    return isinstance(exc, StorageUnavailableError | OSError | TimeoutError | ConnectionError)


@dataclass(frozen=True)
class Failure:
    """The current failing state of one key's work."""

    label: str  # what is failing, for people: "flush of t/0", "segment merging of t/0"
    error: str
    outage: bool
    failures: int  # consecutive failed attempts
    since: float  # wall-clock seconds of the first failure
    retry_at: float  # monotonic seconds before which no attempt is made

    def describe(self, key: object = None) -> str:
        kind = "store unreachable" if self.outage else "failing"
        started = time.strftime("%H:%M:%SZ", time.gmtime(self.since))
        return f"{self.label} {kind} since {started} ({self.failures} attempts): {self.error}"


@dataclass(frozen=True)
class Backoff:
    first_retry_s: float
    outage_cap_s: float
    fault_cap_s: float

    def delay(self, failures: int, outage: bool) -> float:
        return float(min(self.first_retry_s * 2 ** (failures - 1), self.outage_cap_s if outage else self.fault_cap_s))


class FailureTracker(Generic[K]):
    def __init__(
        self, backoff: Backoff, label: Callable[[K], str], topic: Callable[[K], str], log: logging.Logger
    ) -> None:
        self.backoff = backoff
        self._label = label
        self._topic = topic
        self._log = log
        self._failing: dict[K, Failure] = {}
        # For the metrics (this module stays metrics-free): after every attempt that failed
        # (True) or recovered a failing key (False), with how many keys now fail; the topic
        # ("" for agent-wide keys).
        self.on_change: Callable[[str, bool, int], None] = lambda topic, failed, failing: None

    def wait_s(self, key: K) -> float:
        """Seconds until the key's work may be tried again (0: now)."""
        state = self._failing.get(key)
        return 0.0 if state is None else max(0.0, state.retry_at - time.monotonic())

    def failed(self, key: K, exc: BaseException) -> Failure:
        """Record a failed attempt: back off, and log only if the failing state changed."""
        before = self._failing.get(key)
        outage = is_outage(exc)
        error = f"{type(exc).__name__}: {exc}"
        failures = 1 if before is None else before.failures + 1
        delay = self.backoff.delay(failures, outage)
        state = Failure(
            label=self._label(key),
            error=error,
            outage=outage,
            failures=failures,
            since=time.time() if before is None else before.since,
            retry_at=time.monotonic() + delay,
        )
        self._failing[key] = state
        if before is None or before.error != error:
            cap = self.backoff.outage_cap_s if outage else self.backoff.fault_cap_s
            level = logging.WARNING if outage else logging.ERROR
            self._log.log(level, "%s; retrying with backoff up to %gs", state.describe(), cap)
        else:
            self._log.debug("%s; next attempt in %.1fs", state.describe(), delay)
        self.on_change(self._topic(key), True, len(self._failing))
        return state

    def succeeded(self, key: K) -> None:
        before = self._failing.pop(key, None)
        if before is not None:
            self._log.warning("%s recovered after %d failed attempts", before.label, before.failures)
            self.on_change(self._topic(key), False, len(self._failing))

    def forget(self, key: K) -> None:
        """Nothing to do for the key any more (partition no longer led, topic deleted, shutdown)."""
        if self._failing.pop(key, None) is not None:
            self.on_change(self._topic(key), False, len(self._failing))

    def failing_faults(self) -> dict[K, Failure]:
        """Keys failing for a reason other than a storage outage."""
        return {k: s for k, s in self._failing.items() if not s.outage}

    @property
    def failing_count(self) -> int:
        return len(self._failing)


class RoundLog:
    """The log of a periodic round that runs on its own schedule whatever happens (lease
    renewals, job placement): a store outage is said once when it starts, with no traceback,
    and once when a round succeeds again; anything else is logged with its traceback every
    round, as a bug should be."""

    def __init__(self, label: str, log: logging.Logger) -> None:
        self.label = label
        self._log = log
        self._outage_since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if not is_outage(exc):
            self._log.error("%s failed", self.label, exc_info=exc)
        elif self._outage_since is None:
            self._outage_since = time.monotonic()
            self._log.warning(
                "%s: store unreachable (%s: %s); retried every round", self.label, type(exc).__name__, exc
            )

    def succeeded(self) -> None:
        if self._outage_since is not None:
            self._log.warning("%s recovered after %.1fs", self.label, time.monotonic() - self._outage_since)
            self._outage_since = None
