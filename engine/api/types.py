"""Values the agent's API returns. The gRPC server, the embedded and remote SDK transports
and the CLI all speak in these, so an embedded and a remote client answer identically."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from streamhouse.api import html
from streamhouse.storage.model import TopicInfo
from streamhouse.wording import plural

# leader: after the leader's WAL write; durable: after the segment is committed; none: on receipt.
Acks = Literal["leader", "durable", "none"]


@dataclass(frozen=True)
class PartitionState:
    partition: int
    durable_end_offset: int  # end of the last committed segment: the high watermark, where reads end
    end_offset: int  # last acknowledged offset + 1 (the leader's view when known)
    leader: str  # "host:port" of the lease holder, "" if none is live
    leader_epoch: int
    segments: int
    log_start: int = 0  # first offset still kept (retention moves it; reads below it are refused)
    size_bytes: int = 0  # bytes of the committed segments
    last_compacted_ms: int | None = None  # when compaction last finished a pass (epoch ms); None: never


@dataclass(frozen=True)
class TopicDescription:
    info: TopicInfo
    partitions: tuple[PartitionState, ...] = ()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def end_offsets(self) -> dict[int, int]:
        return {p.partition: p.end_offset for p in self.partitions}

    @property
    def durable_end_offsets(self) -> dict[int, int]:
        """The high watermarks: where a reader positioned "at the end" starts (records past it
        are served once committed, and a takeover may give those offsets to other records)."""
        return {p.partition: p.durable_end_offset for p in self.partitions}

    def _repr_html_(self) -> str:
        total = sum(p.end_offset - p.log_start for p in self.partitions)
        partitions = html.grid(
            [*_PARTITION_HEADERS],
            [
                (
                    p.partition,
                    p.log_start,
                    p.end_offset,
                    p.durable_end_offset,
                    p.segments,
                    p.size_bytes,
                    _when(p.last_compacted_ms),
                    p.leader or "(none)",
                    p.leader_epoch,
                )
                for p in self.partitions
            ],
        )
        return html.topic_info(self.info, plural(total, "record")) + partitions


_PARTITION_HEADERS = (
    "partition", "log start", "end offset", "durable end", "segments", "bytes", "last compaction", "leader", "epoch",
)  # fmt: skip


def _when(ms: int | None) -> str:
    """An epoch-ms time as ISO 8601 UTC (seconds), "never" for None."""
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@dataclass(frozen=True)
class ProduceResult:
    """Where one produced batch (or its share of one partition) landed."""

    topic: str
    partition: int
    base_offset: int  # -1 when acks=none: the offset is not known at acknowledgement
    record_count: int


@dataclass(frozen=True)
class FetchResult:
    topic: str
    partition: int
    records: pa.Table  # RECORD_SCHEMA rows starting at the requested offset
    next_offset: int
    end_offset: int  # one past the last acknowledged record (the leader's view where it answers)
    log_start: int = 0  # where the partition's log began as this read saw it (retention moves it)
    # The high watermark: one past the last record in a committed segment, where what a fetch
    # serves ends (records past it wait for their durable round). Kafka's high_watermark; not
    # carried over gRPC (None there: end_offset is all the SDK needs to know what is to come).
    high_watermark: int | None = None

    @property
    def readable_end(self) -> int:
        """The high watermark when known, else the end offset."""
        return self.end_offset if self.high_watermark is None else self.high_watermark


@dataclass(frozen=True)
class GroupOffset:
    topic: str
    partition: int
    committed_offset: int  # next offset the group will consume; -1 if never committed
    end_offset: int
    lag: int


@dataclass(frozen=True)
class GroupDescription:
    group: str
    offsets: tuple[GroupOffset, ...] = field(default_factory=tuple)

    @property
    def total_lag(self) -> int:
        return sum(o.lag for o in self.offsets)

    def _repr_html_(self) -> str:
        rows = [(o.topic, o.partition, o.committed_offset, o.end_offset, o.lag) for o in self.offsets]
        return html.title("consumer group", self.group, f"lag {self.total_lag:,}") + html.grid(
            ["topic", "partition", "committed", "end offset", "lag"], rows
        )


@dataclass(frozen=True)
class JobDescription:
    """One continuous query as SHOW JOBS reports it."""

    name: str
    output_topic: str
    state: str  # "running here", "running" (on another agent) or "waiting" (for a lease)
    source_lag: int  # source records not yet covered by a checkpoint
    watermark: str | None  # ISO time, None before the first event
    rows_in: int
    rows_out: int
    late_rows: int
    checkpoints: int
    last_checkpoint: str | None
    sql: str
    options: Mapping[str, str] = field(default_factory=dict)
    retention_skipped: int = 0  # source offsets retention removed before the job read them

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobDescription:
        """From one row of SHOW JOBS (options are JSON there)."""
        import json

        return cls(
            name=row["job"],
            output_topic=row["output_topic"],
            state=row["state"],
            source_lag=int(row["source_lag"]),
            watermark=row["watermark"],
            rows_in=int(row["rows_in"]),
            rows_out=int(row["rows_out"]),
            late_rows=int(row["late_rows"]),
            checkpoints=int(row["checkpoints"]),
            last_checkpoint=row["last_checkpoint"],
            sql=row["sql"],
            options=json.loads(row["options"] or "{}"),
            retention_skipped=int(row.get("retention_skipped") or 0),
        )

    @property
    def caught_up(self) -> bool:
        """Everything produced to the source so far is read and checkpointed."""
        return self.checkpoints > 0 and self.source_lag == 0

    def _repr_html_(self) -> str:
        pairs: list[tuple[str, object]] = [
            ("output topic", self.output_topic),
            ("state", self.state),
            ("source lag", f"{self.source_lag:,}"),
            ("watermark", self.watermark or "(none yet)"),
            ("rows in / out", f"{self.rows_in:,} / {self.rows_out:,}"),
            ("late rows", f"{self.late_rows:,}"),
            ("skipped by retention", f"{self.retention_skipped:,}"),
            ("checkpoints", f"{self.checkpoints:,} (last {self.last_checkpoint or 'never'})"),
            ("options", ", ".join(f"{k}={v}" for k, v in sorted(self.options.items())) or "(defaults)"),
        ]
        sql = f'<pre style="font-size:11px;white-space:pre-wrap">{html.text(self.sql)}</pre>'
        return html.title("job", self.name) + html.fields(pairs) + sql
