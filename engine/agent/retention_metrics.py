"""Prometheus series of retention (engine/agent/retention.py), registered in the agent's own
registry (engine/agent/metrics.py AgentMetrics.registry) beside the rest of /metrics."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamhouse.agent.retention import Retention, RetentionOutcome


class RetentionMetrics:
    """Per topic (and per partition for the log start), like the agent's other series."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.segments = Counter(
            "streamhouse_retention_segments_removed_total",
            "Segments removed by retention (their objects are deleted after the grace).",
            ("topic",),
            registry=r,
        )
        self.bytes = Counter(
            "streamhouse_retention_bytes_removed_total", "Segment bytes removed by retention.", ("topic",), registry=r
        )
        self.log_start = Gauge(
            "streamhouse_log_start_offset",
            "First offset a partition still keeps, as this agent's retention last listed it "
            "(topics with a retention limit).",
            ("topic", "partition"),
            registry=r,
        )
        self.failures = Counter(
            "streamhouse_retention_failures_total",
            "Failed retention attempts per topic (retried with backoff).",
            ("topic",),
            registry=r,
        )
        self.failing = Gauge(
            "streamhouse_retention_failing", "Topics (and rounds) whose last retention attempt failed.", registry=r
        )

    def observe(self, outcome: RetentionOutcome) -> None:
        self.segments.labels(outcome.topic).inc(outcome.segments)
        self.bytes.labels(outcome.topic).inc(outcome.removed_bytes)

    def state(self, topic: str, failed: bool, failing: int) -> None:
        """FailureTracker.on_change: count a failed attempt, set how many keys fail."""
        if failed:
            self.failures.labels(topic or "(all)").inc()
        self.failing.set(failing)

    def wire(self, retention: Retention, deleted: Callable[[int], None]) -> None:
        """Hook this agent's retention service to these series (`deleted`: the deferred
        deletions counter shared with the merger)."""
        retention.on_removed = self.observe
        retention.on_log_start = lambda topic, partition, start: self.log_start.labels(topic, str(partition)).set(start)
        retention.on_deleted = deleted
        retention.health.on_change = self.state
