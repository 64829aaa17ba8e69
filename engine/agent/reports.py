"""What the agent tells its operator about storage events it does not handle itself: WAL
recovery counts, partitions whose flushes keep failing, committed segments and damaged ones
(engine/agent/metrics.py; no metrics in the embedded engine). The partition manager calls these
back (AgentService wires them); the reader of a damaged segment still gets the error."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.model import SegmentInfo, SegmentRef

if TYPE_CHECKING:  # prometheus_client stays out of the embedded engine's import (no metrics there)
    from streamhouse.agent.metrics import AgentMetrics

log = logging.getLogger("streamhouse.agent.service")  # the name operators' log filters know


class StorageReports:
    def __init__(self, metrics: AgentMetrics | None) -> None:
        self.metrics = metrics
        self._corrupt_keys: set[str] = set()  # segments already reported: once each, not per read

    def wal_recovered(self, topic: str, recovered: int, dropped: int) -> None:
        if self.metrics is not None:
            self.metrics.wal_recovery(topic, recovered, dropped)

    def flush_changed(self, topic: str, failed: bool, failing: int) -> None:
        if self.metrics is not None:
            self.metrics.flush_state(topic, failed, failing)

    def segment_committed(self, segment: SegmentInfo) -> None:
        if self.metrics is not None:
            self.metrics.observe_segment(segment.topic, segment.size_bytes)

    def segment_corrupt(self, ref: SegmentRef, error: CorruptDataError) -> None:
        # Storage raises the error to the reader (fetch, SQL or a job); this is the operator's
        # side: one log line and one count per damaged object, however often it is read.
        if ref.object_key in self._corrupt_keys:
            return
        self._corrupt_keys.add(ref.object_key)
        topic, partition = key_partition(ref.object_key)
        log.error("corrupt segment topic=%s partition=%s key=%s: %s", topic, partition, ref.object_key, error)
        if self.metrics is not None:
            self.metrics.corrupt_segment(topic)


def key_partition(object_key: str) -> tuple[str, str]:
    """(topic, partition) of a segment key `topics/{topic}/{partition:05d}/{file}`
    (storage/partition/writer.py segment_key); ("<unknown>", "?") for any other key."""
    parts = object_key.split("/")
    if len(parts) < 4 or parts[0] != "topics":
        return "<unknown>", "?"
    return "/".join(parts[1:-2]), parts[-2].lstrip("0") or "0"
