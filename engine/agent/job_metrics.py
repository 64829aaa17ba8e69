"""Per-job Prometheus series (source lag, watermark, rows in/out, late rows, checkpoint age),
taken from the job manager's SHOW JOBS status when /metrics is scraped.

Built at scrape time by a custom collector instead of gauges the job runner updates: the runner
stays free of metrics code, and a dropped or moved job vanishes from the output at once rather
than leaving a stale labelled series behind. It lives with the agent's metrics, not in jobs/:
it reads only SHOW JOBS' table, so the agent's registry needs nothing of the job runtime and the
jobs package stays above the agent (docs/DESIGN.md §1, the layers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# A scrape must answer even when the metadata store hangs: job series are then left out.
STATUS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class JobStatus:
    """One job as this agent reports it; times are Unix seconds, None when not known yet."""

    job: str
    source_lag: int
    watermark_s: float | None
    rows_in: int
    rows_out: int
    late_rows: int
    checkpoints: int
    last_checkpoint_s: float | None
    retention_skipped: int = 0


def statuses_from_show(table: pa.Table) -> list[JobStatus]:
    """The jobs running on this agent, from a SHOW JOBS table.

    Only "running here": every agent sees every job in metadata, and a job reported by all of
    them would be counted once per agent by any sum() over the cluster.
    """
    out = []
    for row in table.to_pylist():
        if row["state"] != "running here":
            continue
        out.append(
            JobStatus(
                job=str(row["job"]),
                source_lag=int(row["source_lag"] or 0),
                watermark_s=_seconds(row["watermark"]),
                rows_in=int(row["rows_in"] or 0),
                rows_out=int(row["rows_out"] or 0),
                late_rows=int(row["late_rows"] or 0),
                checkpoints=int(row["checkpoints"] or 0),
                last_checkpoint_s=_seconds(row["last_checkpoint"]),
                retention_skipped=int(row.get("retention_skipped") or 0),
            )
        )
    return out


def _seconds(iso: object) -> float | None:
    if iso is None or iso == "":
        return None
    return datetime.fromisoformat(str(iso)).timestamp()


class JobCollector(Collector):
    """Yields the job series from the latest `update()`; registered in the agent's registry."""

    def __init__(self) -> None:
        self._jobs: list[JobStatus] = []
        self._failed = False

    def update(self, jobs: list[JobStatus]) -> None:
        self._jobs = jobs

    async def refresh(self, show: Callable[[], Awaitable[pa.Table]]) -> None:
        """Re-read the job status; on failure report no job series (never stale ones) and log
        once per run of failures, not once per scrape."""
        try:
            table = await asyncio.wait_for(show(), STATUS_TIMEOUT_S)
        except Exception as exc:
            if not self._failed:
                log.warning("job status for /metrics unavailable, job series left out: %s", exc)
            self._failed = True
            self._jobs = []
            return
        if self._failed:
            log.info("job status for /metrics available again")
        self._failed = False
        self._jobs = statuses_from_show(table)

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        labels = ["job"]
        lag = GaugeMetricFamily(
            "streamhouse_job_source_lag_records",
            "Records in the job's source partitions after its last checkpointed offsets.",
            labels=labels,
        )
        watermark = GaugeMetricFamily(
            "streamhouse_job_watermark_seconds",
            "The job's event-time watermark as Unix seconds (absent until it has one).",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "streamhouse_job_checkpoint_age_seconds",
            "Seconds since the job's last committed checkpoint (absent before the first).",
            labels=labels,
        )
        rows_in = CounterMetricFamily(
            "streamhouse_job_rows_in", "Source rows the job has consumed, as checkpointed.", labels=labels
        )
        rows_out = CounterMetricFamily(
            "streamhouse_job_rows_out", "Result rows the job has written, as checkpointed.", labels=labels
        )
        late = CounterMetricFamily(
            "streamhouse_job_late_rows",
            "Rows that arrived after their window closed (sent to the dead-letter topic when set).",
            labels=labels,
        )
        checkpoints = CounterMetricFamily(
            "streamhouse_job_checkpoints", "Checkpoints the job has committed.", labels=labels
        )
        skipped = CounterMetricFamily(
            "streamhouse_job_retention_skipped_offsets",
            "Source offsets retention removed before the job read them (it went on from the log start).",
            labels=labels,
        )
        for j in self._jobs:
            lag.add_metric([j.job], j.source_lag)
            if j.watermark_s is not None:
                watermark.add_metric([j.job], j.watermark_s)
            if j.last_checkpoint_s is not None:
                age.add_metric([j.job], max(0.0, now - j.last_checkpoint_s))
            rows_in.add_metric([j.job], j.rows_in)
            rows_out.add_metric([j.job], j.rows_out)
            late.add_metric([j.job], j.late_rows)
            checkpoints.add_metric([j.job], j.checkpoints)
            skipped.add_metric([j.job], j.retention_skipped)
        yield from (lag, watermark, age, rows_in, rows_out, late, checkpoints, skipped)
