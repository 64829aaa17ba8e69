"""Failing merges and deletions of the segment merger (engine/agent/merger.py), with the flush
loop's discipline (engine/agent/failures.py). A merge that keeps failing costs only read speed
(the small segments stay readable), so it backs off further than a flush, but it never hides:
health names the partition until a merge succeeds."""

from __future__ import annotations

import logging

from streamhouse.agent.background import ROUND
from streamhouse.agent.failures import Backoff, FailureTracker

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
OUTAGE_CAP_S = 30.0
FAULT_CAP_S = 300.0


def subject(key: str) -> str:
    if key == ROUND:
        return "segment merger round"
    if key == "deletions":
        return "deletion of replaced segments"
    return "listing topics for merging" if key == "topics" else f"segment merging of {key}"


class MergeHealth(FailureTracker[str]):
    """Keyed by "<topic>/<partition>", "topics" (listing them) or "deletions"."""

    def __init__(self) -> None:
        super().__init__(
            Backoff(FIRST_RETRY_S, OUTAGE_CAP_S, FAULT_CAP_S),
            label=subject,
            topic=lambda key: key.rpartition("/")[0],
            log=log,
        )

    def faults(self) -> list[str]:
        """What keeps failing for a reason other than a storage outage (the stores' own probes
        report outages), one line each: readiness names them."""
        return [s.describe() for _, s in sorted(self.failing_faults().items())]
