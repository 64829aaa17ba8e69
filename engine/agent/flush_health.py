"""Per-partition state of failing segment flushes (engine/agent/failures.py's discipline). A flush
that keeps failing must never spin (it retried ~15 times a second before), never hide (health
names the partition) and never give up on acknowledged records (they stay buffered and in the
WAL; only deleting the topic ends the retries)."""

from __future__ import annotations

import logging

from streamhouse.agent.failures import Backoff, Failure, FailureTracker, is_outage

__all__ = ["FAULT_CAP_S", "OUTAGE_CAP_S", "FlushHealth", "Key", "is_outage"]

log = logging.getLogger(__name__)

Key = tuple[str, int]

FIRST_RETRY_S = 0.5
OUTAGE_CAP_S = 5.0
FAULT_CAP_S = 30.0


class FlushHealth(FailureTracker[Key]):
    def __init__(self) -> None:
        super().__init__(
            Backoff(FIRST_RETRY_S, OUTAGE_CAP_S, FAULT_CAP_S),
            label=lambda key: f"flush of {key[0]}/{key[1]}",
            topic=lambda key: key[0],
            log=log,
        )

    def faults(self) -> dict[Key, Failure]:
        """Partitions failing for a reason other than a storage outage: not ready."""
        return self.failing_faults()
