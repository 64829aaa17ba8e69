"""The agent's Prometheus metrics, kept in a registry of their own and rendered by /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from streamhouse.agent.job_metrics import JobCollector

# Produce latency spans an in-memory ack (~0.1 ms) up to a durable ack waiting on a
# grouped S3 flush (seconds); anything slower lands in +Inf and is an incident anyway.
PRODUCE_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
)
# SQL spans a point lookup answered from one row group (~ms) to scans of many segments (minutes).
SQL_LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AgentMetrics:
    """Counters, histograms and gauges of one agent.

    Each instance owns its CollectorRegistry rather than using the process-global one, so
    several agents (e.g. in one test process) never collide on metric names.

    Cardinality: topic names are user-controlled, so `topic` is the only open-ended label and
    every series is per topic at most (never per partition, key or client). `acks` and
    `outcome` come from small fixed sets chosen by the agent, never from request text.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.produce_requests = Counter(
            "streamhouse_produce_requests_total",
            "Produce requests by topic, ack mode and outcome ('ok' or an error kind).",
            ("topic", "acks", "outcome"),
            registry=r,
        )
        self.produce_records = Counter(
            "streamhouse_produce_records_total", "Records accepted by produce.", ("topic",), registry=r
        )
        self.produce_bytes = Counter(
            "streamhouse_produce_bytes_total", "Record bytes accepted by produce.", ("topic",), registry=r
        )
        self.produce_latency = Histogram(
            "streamhouse_produce_latency_seconds",
            "Produce latency until the ack, by ack mode.",
            ("acks",),
            buckets=PRODUCE_LATENCY_BUCKETS,
            registry=r,
        )
        self.fetch_requests = Counter("streamhouse_fetch_requests_total", "Fetch requests.", ("topic",), registry=r)
        self.fetch_records = Counter(
            "streamhouse_fetch_records_total", "Records returned by fetch.", ("topic",), registry=r
        )
        self.fetch_bytes = Counter(
            "streamhouse_fetch_bytes_total", "Record bytes returned by fetch.", ("topic",), registry=r
        )
        self.segments_committed = Counter(
            "streamhouse_segments_committed_total", "Segments uploaded and committed.", ("topic",), registry=r
        )
        self.segment_bytes = Counter(
            "streamhouse_segment_bytes_total", "Bytes of committed segments.", ("topic",), registry=r
        )
        self.led_partitions = Gauge("streamhouse_led_partitions", "Partitions this agent currently leads.", registry=r)
        self.buffered_bytes = Gauge(
            "streamhouse_buffered_bytes", "Record bytes buffered in memory, not yet in a segment.", registry=r
        )
        self.wal_bytes = Gauge("streamhouse_wal_bytes", "Bytes held in the local write-ahead log.", registry=r)
        self.lease_lost_count = Counter(
            "streamhouse_lease_lost_total", "Partition leases lost (expired or fenced).", registry=r
        )
        self.backpressure_count = Counter(
            "streamhouse_backpressure_total", "Produce requests refused for backpressure.", ("topic",), registry=r
        )
        self.flush_failures = Counter(
            "streamhouse_flush_failures_total",
            "Failed segment flush attempts (retried with backoff).",
            ("topic",),
            registry=r,
        )
        self.flush_failing = Gauge(
            "streamhouse_flush_failing_partitions", "Led partitions whose last flush attempt failed.", registry=r
        )
        self.sql_queries = Counter(
            "streamhouse_sql_queries_total",
            "SQL statements by outcome: 'ok', 'error' or 'cancelled'.",
            ("outcome",),
            registry=r,
        )
        self.sql_errors = Counter(
            "streamhouse_sql_errors_total", "Failed SQL statements by error class.", ("error",), registry=r
        )
        self.sql_latency = Histogram(
            "streamhouse_sql_latency_seconds",
            "SQL statement time until its whole result was built, by outcome.",
            ("outcome",),
            buckets=SQL_LATENCY_BUCKETS,
            registry=r,
        )
        self.wal_recovered = Counter(
            "streamhouse_wal_recovered_records_total",
            "Acknowledged WAL records of a leadership that was taken over, appended again at the partition's end.",
            ("topic",),
            registry=r,
        )
        self.wal_dropped = Counter(
            "streamhouse_wal_dropped_records_total",
            "WAL records discarded at start because their topic or partition no longer exists.",
            ("topic",),
            registry=r,
        )
        self.corrupt_segments = Counter(
            "streamhouse_corrupt_segments_total",
            "Distinct segment objects found damaged (checksum or decoding failure) on read.",
            ("topic",),
            registry=r,
        )
        # Small-segment merging (engine/agent/merger.py).
        self.merges = Counter(
            "streamhouse_merges_total", "Segment runs merged into one and swapped in.", ("topic",), registry=r
        )
        self.merged_segments = Counter(
            "streamhouse_merged_segments_total", "Segments replaced by merged ones.", ("topic",), registry=r
        )
        self.merged_bytes = Counter(
            "streamhouse_merge_bytes_total",
            "Bytes read and written by merges: 'read' or 'written'.",
            ("topic", "direction"),
            registry=r,
        )
        self.merge_failures = Counter(
            "streamhouse_merge_failures_total", "Failed merge attempts (retried with backoff).", ("topic",), registry=r
        )
        self.merge_failing = Gauge(
            "streamhouse_merge_failing_partitions", "Partitions whose last merge attempt failed.", registry=r
        )
        self.deferred_deleted = Counter(
            "streamhouse_deferred_deletions_total",
            "Replaced segment objects deleted after their grace period.",
            registry=r,
        )
        # The orphan reconciler (engine/agent/reconciler.py): on the agent holding its lease.
        self.orphans_deleted = Counter(
            "streamhouse_orphan_objects_deleted_total",
            "Segment objects no metadata referenced, deleted after the orphan grace.",
            ("topic",),
            registry=r,
        )
        self.missing_segment_objects = Gauge(
            "streamhouse_missing_segment_objects",
            "Segment rows whose object is missing from the object store (last reconcile).",
            ("topic",),
            registry=r,
        )
        self.reconcile_failures = Counter(
            "streamhouse_reconcile_failures_total", "Failed orphan reconciler walks (retried with backoff).", registry=r
        )
        # Per-job series come from the job manager's status at scrape time (see job_metrics).
        self.jobs = JobCollector()
        r.register(self.jobs)

    def observe_produce(self, topic: str, acks: str, outcome: str, records: int, nbytes: int, seconds: float) -> None:
        """Count one produce request; records and bytes only count when it succeeded."""
        self.produce_requests.labels(topic, acks, outcome).inc()
        self.produce_latency.labels(acks).observe(seconds)
        if outcome == "ok":
            self.produce_records.labels(topic).inc(records)
            self.produce_bytes.labels(topic).inc(nbytes)

    def observe_fetch(self, topic: str, records: int, nbytes: int) -> None:
        """Count one fetch request and what it returned."""
        self.fetch_requests.labels(topic).inc()
        self.fetch_records.labels(topic).inc(records)
        self.fetch_bytes.labels(topic).inc(nbytes)

    def observe_segment(self, topic: str, nbytes: int) -> None:
        """Count one committed segment of `nbytes`."""
        self.segments_committed.labels(topic).inc()
        self.segment_bytes.labels(topic).inc(nbytes)

    def observe_sql(self, error: BaseException | None, seconds: float) -> None:
        """Count one SQL statement; `error` is what it raised (None when it succeeded).

        Error labels are exception class names: a fixed set from the code, never request text."""
        if error is None:
            outcome = "ok"
        elif isinstance(error, asyncio.CancelledError):
            outcome = "cancelled"
        else:
            outcome = "error"
            self.sql_errors.labels(type(error).__name__).inc()
        self.sql_queries.labels(outcome).inc()
        self.sql_latency.labels(outcome).observe(seconds)

    def corrupt_segment(self, topic: str) -> None:
        """Count one segment object newly found damaged."""
        self.corrupt_segments.labels(topic).inc()

    def wal_recovery(self, topic: str, recovered: int, dropped: int) -> None:
        """Count WAL records of a taken-over leadership appended again, and records dropped."""
        if recovered:
            self.wal_recovered.labels(topic).inc(recovered)
        if dropped:
            self.wal_dropped.labels(topic).inc(dropped)

    def lease_lost(self) -> None:
        """Count one lost partition lease."""
        self.lease_lost_count.inc()

    def backpressure(self, topic: str) -> None:
        """Count one produce refused because buffers were full."""
        self.backpressure_count.labels(topic).inc()

    def flush_state(self, topic: str, failed: bool, failing: int) -> None:
        """Count a failed flush attempt (failed=True) and set how many partitions are failing."""
        if failed:
            self.flush_failures.labels(topic).inc()
        self.flush_failing.set(failing)

    def observe_merge(self, topic: str, segments: int, read_bytes: int, written_bytes: int) -> None:
        """Count one merge swapped in: how many segments it replaced and the bytes it moved."""
        self.merges.labels(topic).inc()
        self.merged_segments.labels(topic).inc(segments)
        self.merged_bytes.labels(topic, "read").inc(read_bytes)
        self.merged_bytes.labels(topic, "written").inc(written_bytes)

    def merge_state(self, topic: str, failed: bool, failing: int) -> None:
        """Count a failed merge attempt (failed=True) and set how many partitions are failing."""
        if failed:
            self.merge_failures.labels(topic).inc()
        self.merge_failing.set(failing)

    def objects_deleted(self, count: int) -> None:
        self.deferred_deleted.inc(count)

    def orphans_deleted_in(self, topic: str, count: int) -> None:
        self.orphans_deleted.labels(topic).inc(count)

    def missing_objects(self, topic: str, count: int) -> None:
        self.missing_segment_objects.labels(topic).set(count)

    def set_gauges(self, led_partitions: int, buffered_bytes: int, wal_bytes: int) -> None:
        """Refresh the point-in-time gauges; called by the agent just before rendering."""
        self.led_partitions.set(led_partitions)
        self.buffered_bytes.set(buffered_bytes)
        self.wal_bytes.set(wal_bytes)

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, with its content type."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE_LATEST


class _WithoutCreated(Collector):
    """A registry's families without their `*_created` samples.

    prometheus_client adds a `_created` series (creation time) to every counter and histogram;
    the text format then doubles each one. Its switch (disable_created_metrics) is global to the
    process and would change the metrics of an application embedding the agent, so the agent
    filters its own registry at render time instead."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family
