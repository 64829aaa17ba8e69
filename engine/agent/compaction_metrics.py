"""Prometheus series of log compaction (engine/agent/compactor.py), registered in the agent's
own registry (engine/agent/metrics.py AgentMetrics.registry) beside the rest of /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamhouse.agent.compactor import CompactionOutcome


class CompactionMetrics:
    """Per topic at most (the only open-ended label), like every agent series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.passes = Counter(
            "streamhouse_compactions_total",
            "Log compaction passes run (at least one run swapped in or not).",
            ("topic",),
            registry=r,
        )
        self.records = Counter(
            "streamhouse_compaction_records_total",
            "Records read ('in') and kept ('out') by compaction passes.",
            ("topic", "direction"),
            registry=r,
        )
        self.tombstones = Counter(
            "streamhouse_compaction_tombstones_dropped_total",
            "Tombstones dropped after delete.retention.ms.",
            ("topic",),
            registry=r,
        )
        self.bytes = Counter(
            "streamhouse_compaction_bytes_total",
            "Segment bytes read ('read') and written ('written') by compaction.",
            ("topic", "direction"),
            registry=r,
        )
        self.cpu = Counter(
            "streamhouse_compaction_cpu_seconds_total",
            "CPU seconds of compaction (decode, kernel, encode).",
            ("topic",),
            registry=r,
        )
        self.failures = Counter(
            "streamhouse_compaction_failures_total",
            "Failed compaction attempts (retried with backoff).",
            ("topic",),
            registry=r,
        )
        self.failing = Gauge(
            "streamhouse_compaction_failing_partitions",
            "Partitions whose last compaction attempt failed.",
            registry=r,
        )

    def observe(self, outcome: CompactionOutcome) -> None:
        t = outcome.topic
        self.passes.labels(t).inc()
        self.records.labels(t, "in").inc(outcome.counts.records_in)
        self.records.labels(t, "out").inc(outcome.counts.records_out)
        self.tombstones.labels(t).inc(outcome.counts.tombstones_dropped)
        self.bytes.labels(t, "read").inc(outcome.read_bytes)
        self.bytes.labels(t, "written").inc(outcome.written_bytes)
        self.cpu.labels(t).inc(outcome.cpu_s)

    def state(self, topic: str, failed: bool, failing: int) -> None:
        """FailureTracker.on_change: count a failed attempt, set how many partitions fail."""
        if failed and topic:
            self.failures.labels(topic).inc()
        self.failing.set(failing)
