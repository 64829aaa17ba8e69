"""Failing merges and deletions of the segment merger (engine/agent/merger.py): exponential
backoff per partition, one log line per change of state (not per attempt), and what readiness
and the metrics report — the flush loop's discipline (flush_health.py). A merge that keeps
failing costs only read speed (the small segments stay readable), so it backs off further than
a flush, but it never hides: health names the partition until a merge succeeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamhouse.agent.flush_health import is_outage

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
OUTAGE_CAP_S = 30.0
FAULT_CAP_S = 300.0


@dataclass(frozen=True)
class MergeFailure:
    error: str
    outage: bool
    failures: int  # consecutive failed attempts
    since: float  # wall-clock seconds of the first failure
    retry_at: float  # monotonic seconds before which no attempt is made

    def describe(self, key: str) -> str:
        kind = "store unreachable" if self.outage else "failing"
        started = time.strftime("%H:%M:%SZ", time.gmtime(self.since))
        return f"{subject(key)} {kind} since {started} ({self.failures} attempts): {self.error}"


class MergeHealth:
    """Keyed by "<topic>/<partition>", "topics" (listing them) or "deletions"."""

    def __init__(self) -> None:
        self._failing: dict[str, MergeFailure] = {}
        # For the metrics: after every failed attempt (True) or recovery (False), with how many
        # keys now fail; the topic ("" for the agent-wide keys).
        self.on_change: Callable[[str, bool, int], None] = lambda topic, failed, failing: None

    def wait_s(self, key: str) -> float:
        state = self._failing.get(key)
        return 0.0 if state is None else max(0.0, state.retry_at - time.monotonic())

    def failed(self, key: str, exc: BaseException) -> MergeFailure:
        before = self._failing.get(key)
        outage = is_outage(exc)
        error = f"{type(exc).__name__}: {exc}"
        failures = 1 if before is None else before.failures + 1
        delay = min(FIRST_RETRY_S * 2 ** (failures - 1), OUTAGE_CAP_S if outage else FAULT_CAP_S)
        state = MergeFailure(
            error=error,
            outage=outage,
            failures=failures,
            since=time.time() if before is None else before.since,
            retry_at=time.monotonic() + delay,
        )
        self._failing[key] = state
        if before is None or before.error != error:
            level = logging.WARNING if outage else logging.ERROR
            log.log(
                level,
                "%s; retrying with backoff up to %gs",
                state.describe(key),
                OUTAGE_CAP_S if outage else FAULT_CAP_S,
            )
        self.on_change(_topic(key), True, len(self._failing))
        return state

    def succeeded(self, key: str) -> None:
        before = self._failing.pop(key, None)
        if before is not None:
            log.warning(
                "%s recovered after %d failed attempts",
                subject(key),
                before.failures,
            )
            self.on_change(_topic(key), False, len(self._failing))

    def forget(self, key: str) -> None:
        if self._failing.pop(key, None) is not None:
            self.on_change(_topic(key), False, len(self._failing))

    def faults(self) -> list[str]:
        """What keeps failing for a reason other than a storage outage (the stores' own probes
        report outages), one line each: readiness names them."""
        return [s.describe(k) for k, s in sorted(self._failing.items()) if not s.outage]

    @property
    def failing_count(self) -> int:
        return len(self._failing)


def subject(key: str) -> str:
    if key == "deletions":
        return "deletion of replaced segments"
    return "listing topics for merging" if key == "topics" else f"segment merging of {key}"


def _topic(key: str) -> str:
    return key.rpartition("/")[0]
