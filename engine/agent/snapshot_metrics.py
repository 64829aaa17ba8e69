"""Prometheus series of metadata snapshots (engine/agent/snapshotter.py), registered in the
agent's own registry (engine/agent/metrics.py AgentMetrics.registry) beside the rest of /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamhouse.agent.snapshotter import SnapshotOutcome, Snapshotter


class SnapshotMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.written = Counter(
            "streamhouse_metadata_snapshots_total", "Metadata snapshots this agent wrote.", registry=r
        )
        self.size = Gauge(
            "streamhouse_metadata_snapshot_bytes", "Size of the last metadata snapshot this agent wrote.", registry=r
        )
        self.taken = Gauge(
            "streamhouse_metadata_snapshot_timestamp_seconds",
            "When the last metadata snapshot this agent wrote was taken (database clock).",
            registry=r,
        )
        self.failures = Counter(
            "streamhouse_metadata_snapshot_failures_total",
            "Failed metadata snapshot rounds (retried with backoff).",
            registry=r,
        )
        self.failing = Gauge(
            "streamhouse_metadata_snapshot_failing", "1 while this agent's metadata snapshots keep failing.", registry=r
        )

    def observe(self, outcome: SnapshotOutcome) -> None:
        self.written.inc()
        self.size.set(outcome.size_bytes)
        self.taken.set(outcome.taken_ms / 1000)

    def state(self, topic: str, failed: bool, failing: int) -> None:
        """FailureTracker.on_change: count a failed round, set whether it keeps failing."""
        if failed:
            self.failures.inc()
        self.failing.set(1 if failing else 0)

    def wire(self, snapshotter: Snapshotter) -> None:
        snapshotter.on_snapshot = self.observe
        snapshotter.health.on_change = self.state


__all__ = ["SnapshotMetrics"]
