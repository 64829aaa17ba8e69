"""The agent's API, transport-free: topics, produce, fetch with long-poll, offsets, consumer
groups, SQL, jobs and readiness. It implements the front-end contract (engine/api/contract.py,
FrontEnd) that every face calls (gRPC, the embedded SDK, Kafka), so they cannot drift apart."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from streamhouse.agent import job_statements, partition_states, produce_checks, topic_admin
from streamhouse.agent.config import AgentConfig
from streamhouse.agent.fetch import Fetcher
from streamhouse.agent.offsets import Read, first_at_or_after, max_timestamp
from streamhouse.agent.partitions import PartitionManager
from streamhouse.agent.reports import StorageReports
from streamhouse.agent.routing import Router
from streamhouse.agent.sql_source import AgentTopics
from streamhouse.api.contract import FrontEnd, Leadership, TimestampOffset
from streamhouse.api.types import (
    Acks,
    GroupDescription,
    GroupOffset,
    JobDescription,
    ProduceResult,
)
from streamhouse.api.types import TopicDescription as Description
from streamhouse.auth.quota_usage import UsageReport, is_show_usage
from streamhouse.auth.sql_admin import SqlAdmin
from streamhouse.registry.produce_check import SchemaIdCheck
from streamhouse.sql.engine import JobControl, SqlEngine
from streamhouse.storage.errors import (
    InvalidInputError,
    NotFoundError,
    NotLeaderError,
    ObjectNotFoundError,
    PartitionNotFoundError,
    StreamHouseError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.metadata.txn_reads import shared_reads
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.partition.writer import PartitionWriter

if TYPE_CHECKING:  # prometheus_client stays out of the embedded engine's import (no metrics there)
    from streamhouse.agent.metrics import AgentMetrics

log = logging.getLogger(__name__)
ACKS: tuple[Acks, ...] = ("leader", "durable", "none")
_TOPIC_TTL_S = 2.0


class AgentService:
    def __init__(self, manager: PartitionManager, metrics: AgentMetrics | None = None) -> None:
        self.manager = manager
        self.metadata = manager.metadata
        self.config: AgentConfig = manager.config
        self.metrics = metrics
        self._topics: dict[str, tuple[TopicInfo, float]] = {}
        self._router = Router()
        self._schema_ids = SchemaIdCheck(manager.metadata)  # topics with registry-framed values
        self._fetcher = Fetcher(manager, self.topic, metrics)
        self.fetch = self._fetcher.fetch  # long-poll fetch up to the durable end (engine/agent/fetch.py)
        self._sql: SqlEngine | None = None  # built on first use, after the node has wired the jobs
        self.sql_topics = AgentTopics(self, manager)
        # This agent's jobs: built and wired by its node (engine/node/), which also starts and
        # stops them; without them SQL refuses job statements.
        self.jobs: JobControl | None = None
        # Background services' persistent faults (the node adds the merger's), for readiness.
        self.background_faults: list[Callable[[], list[str]]] = []
        self.usage_report: UsageReport | None = None  # SHOW USAGE with the agent's quotas (agent_server)
        manager.on_append = self._fetcher.wake
        reports = StorageReports(metrics)
        manager.on_segment = lambda segment: self._committed(reports, segment)
        manager.flush_health.on_change = reports.flush_changed
        manager.watch_recovery(reports.wal_recovered)
        manager.reader.segments.on_corrupt = reports.segment_corrupt

    async def close(self, *, flush: bool = True) -> None:
        """Flush (or not) and release the partitions; the node stops the jobs before this."""
        await self.manager.close(flush=flush)

    # -- topics ---------------------------------------------------------------------------------
    async def topic(self, name: str, partition: int | None = None) -> TopicInfo:
        cached = self._topics.get(name)
        fresh = cached is not None and time.monotonic() - cached[1] < _TOPIC_TTL_S
        # A partition past the cached count may have been added since (ALTER TOPIC on another
        # agent): look again before calling it out of range.
        if cached is not None and fresh and (partition is None or partition < cached[0].partitions):
            return cached[0]
        info = await self.metadata.get_topic(name)
        self._topics[name] = (info, time.monotonic())
        return info

    async def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None, value_schema: str | None = None
    ) -> TopicInfo:
        value_schema = await self._schema_ids.resolve(value_schema, name, config)  # Avro topics: the subject's columns
        info = await self.metadata.create_topic(name, partitions, dict(config or {}), value_schema or None)
        self._topics[name] = (info, time.monotonic())
        return info

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Iterable[str] | None = None,
        add_partitions: int | None = None,
    ) -> TopicInfo:
        """ALTER TOPIC (engine/agent/topic_admin.py); this agent sees the result at once, others
        within their topic cache's TTL."""
        info = await topic_admin.alter_topic(self.metadata, name, set_config, reset, add_partitions)
        self._topics[name] = (info, time.monotonic())
        return info

    async def list_topics(self) -> list[TopicInfo]:
        return await self.metadata.list_topics()

    async def describe_topic(self, name: str) -> Description:
        info = await self.metadata.get_topic(name)
        self._topics[name] = (info, time.monotonic())
        return Description(info, await partition_states.states(self.metadata, info, self.manager.acked_end))

    async def delete_topic(self, name: str) -> None:
        info = await self.metadata.get_topic(name)
        segments = await self.metadata.delete_topic(name)
        self._topics.pop(name, None)
        await self.manager.forget_topic(info)  # its partitions here stop flushing (and retrying)
        # Metadata no longer references these objects; a failed delete only leaves garbage.
        for segment in segments:
            with contextlib.suppress(StreamHouseError, OSError):
                await self.manager.store.delete(segment.object_key)

    async def partition_leaders(self, topic: str) -> tuple[Leadership, ...]:
        return await partition_states.leaders(self.metadata, await self.topic(topic))

    # -- produce --------------------------------------------------------------------------------
    async def produce(
        self,
        topic: str,
        partition: int,
        batch: pa.RecordBatch,
        acks: Acks = "leader",
        payload: bytes | None = None,
        appended: Callable[[], None] | None = None,
        append_time_ms: int | None = None,
    ) -> list[ProduceResult]:
        """Append one batch. partition -1 lets the agent choose: Kafka's murmur2 on keys,
        round robin for records without one. Every target partition is checked (and its lease
        taken) before anything is written, so a rejected request writes nothing."""
        started = time.perf_counter()
        outcome = "ok"
        # Metric labels only name topics that exist: request garbage must not grow the registry.
        label = "<unknown>"
        try:
            info = await self.topic(topic, partition)
            label = topic
            if acks not in ACKS:
                raise InvalidInputError(f"acks must be one of {', '.join(ACKS)}, not {acks!r}")
            admitted = await produce_checks.admit(
                info, batch, self._schema_ids, self.config, self.manager.wal, append_time_ms
            )
            if admitted.info is not info:  # schema evolution grew the columns: seen here at once
                info = admitted.info
                self._topics[topic] = (info, time.monotonic())
            batch, decoded = admitted.batch, admitted.decoded
            if admitted.restamped:
                payload = None  # the request's bytes no longer hold these records
            parts = self._router.route(info, partition, batch)
            for p in parts:
                # NotLeaderError before anything is written; the writer follows grown columns.
                (await self.manager.writer(info, p)).follow_value_schema(info)
            if len(parts) != 1:
                payload = decoded = None  # the decoded rows follow the request's order, not the split's
            results = [
                ProduceResult(topic, p, await self.manager.append(info, p, part, acks, payload, decoded), part.num_rows)
                for p, part in parts.items()
            ]
            if appended is not None:
                appended()  # the request's place in each partition is fixed from here on
            for r in results:
                await self.manager.acknowledge(topic, r.partition, r.base_offset + r.record_count, acks)
            return results
        except StreamHouseError as exc:
            outcome = type(exc).__name__
            if self.metrics is not None and outcome == "BackpressureError":
                self.metrics.backpressure(topic)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe_produce(
                    label,
                    acks if acks in ACKS else "<unknown>",
                    outcome,
                    batch.num_rows,
                    batch.nbytes,
                    time.perf_counter() - started,
                )

    async def append_control(self, topic: str, partition: int, batch: pa.RecordBatch) -> int:
        """A Kafka transaction marker (storage/records/control.py), appended by this partition's
        leader as it is: no produce checks (a marker is no value of the topic), acks=leader.
        Another agent's partition gets it through that leader's produce (acks=durable), as a
        WAL take-over hands records over (engine/agent/forward.py)."""
        info = await self.topic(topic, partition)
        try:
            base = await self.manager.append(info, partition, batch, "leader")
        except NotLeaderError as exc:
            if not exc.leader:
                raise
            return await self.manager.takeover.forward(exc.leader, topic, partition, batch)
        await self.manager.acknowledge(topic, partition, base + batch.num_rows, "leader")
        return base

    def _committed(self, reports: StorageReports, segment: SegmentInfo) -> None:
        """A segment is committed: the durable end moved, so waiting fetches may read on."""
        reports.segment_committed(segment)
        self._fetcher.wake(segment.topic, segment.partition)

    # -- offsets --------------------------------------------------------------------------------
    async def _partition(self, topic: str, partition: int) -> None:
        info = await self.topic(topic, partition)
        if not 0 <= partition < info.partitions:
            raise PartitionNotFoundError(topic, partition, info.partitions)

    async def earliest_offset(self, topic: str, partition: int) -> int:
        """The log start: retention moves it past removed segments (engine/agent/retention.py)."""
        await self._partition(topic, partition)
        return (await self.manager.reader.lists.fresh(topic, partition)).log_start

    async def end_offset(self, topic: str, partition: int) -> int:
        await self._partition(topic, partition)
        return await self.manager.end_offset(topic, partition)

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> TimestampOffset:
        await self._partition(topic, partition)
        segments = await self.metadata.list_segments(topic, partition)
        end = await self.manager.end_offset(topic, partition)
        return await first_at_or_after(segments, end, timestamp_ms, self._scan_reader(topic, partition))

    async def max_timestamp_offset(self, topic: str, partition: int) -> TimestampOffset:
        await self._partition(topic, partition)
        segments = await self.metadata.list_segments(topic, partition)
        end = await self.manager.end_offset(topic, partition)
        return await max_timestamp(segments, end, self._scan_reader(topic, partition))

    def _scan_reader(self, topic: str, partition: int) -> Read:
        async def read(start: int, count: int) -> pa.Table:
            return (await self.fetch(topic, partition, start, max_records=count)).records

        return read

    # -- idempotent producers (docs/DESIGN.md §10) ----------------------------------------------
    async def producer_state(self, topic: str, partition: int, producer_id: int) -> ProducerState | None:
        return (await self._led(topic, partition)).producers.get(producer_id)

    async def _led(self, topic: str, partition: int) -> PartitionWriter:
        info = await self.topic(topic, partition)
        if not 0 <= partition < info.partitions:
            raise PartitionNotFoundError(topic, partition, info.partitions)
        return await self.manager.writer(info, partition)

    async def unanswered(self, topic: str, partition: int, producer_id: int) -> tuple[ProducerBatch, ...]:
        return (await self._led(topic, partition)).unanswered.of(producer_id)

    async def keep_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        await (await self._led(topic, partition)).unanswered.keep(batches)

    async def drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        await (await self._led(topic, partition)).unanswered.drop(batches)

    async def new_producer_id(self) -> int:
        return await self.metadata.allocate_producer_id()

    # -- consumer groups ------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        info = await self.topic(topic, max(offsets, default=None))
        for p, off in offsets.items():
            if not 0 <= p < info.partitions:
                raise PartitionNotFoundError(topic, p, info.partitions)
            if off < 0:
                raise InvalidInputError(f"{group}: offset for {topic}/{p} must be >= 0, not {off}")
        await self.metadata.commit_offsets(group, topic, offsets)

    async def fetch_offsets(self, group: str, topic: str) -> list[GroupOffset]:
        info = await self.topic(topic)
        committed = await self.metadata.fetch_offsets(group, topic)
        return [await self._group_offset(topic, p, committed.get((topic, p), -1)) for p in range(info.partitions)]

    async def _group_offset(self, topic: str, partition: int, committed: int) -> GroupOffset:
        end = await self.manager.acked_end(topic, partition)  # lag counts what waits for its round too
        return GroupOffset(topic, partition, committed, end, end - max(committed, 0))

    async def committed_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        return await self.metadata.fetch_offsets(group, topic)

    async def list_groups(self) -> list[str]:
        return await self.metadata.list_groups()

    async def delete_group(self, group: str) -> None:
        await self.metadata.delete_group(group)

    async def describe_group(self, group: str) -> GroupDescription:
        committed = await self.metadata.fetch_offsets(group)
        if not committed:
            # NOT_FOUND by the proto's conventions: a group exists once it has committed offsets.
            raise NotFoundError(f"consumer group {group!r} does not exist (no committed offsets)")
        offsets = []
        for (topic, p), off in sorted(committed.items()):
            try:
                offsets.append(await self._group_offset(topic, p, off))
            except TopicNotFoundError:
                continue  # offsets of a deleted topic
        return GroupDescription(group, tuple(offsets))

    # -- SQL ------------------------------------------------------------------------------------
    async def sql(self, query: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        """One SQL statement (query, topic DDL, SHOW/DESCRIBE/EXPLAIN) → an Arrow table, under
        the agent's query limits as lowered by the session's `settings` (SET values)."""
        if self._sql is None:
            self._sql = SqlEngine(
                self.sql_topics,
                self.jobs,
                limits=self.config.query_limits,
                spill_dir=self.config.data_path / "spill",
                admin=SqlAdmin(self.metadata),  # CREATE ORG, CREATE API KEY, GRANT … (admins only)
                committed=shared_reads(self.metadata),  # queries read committed (Kafka transactions)
            )
        if is_show_usage(query):  # per-org usage and quotas (engine/auth/quota_usage.py)
            return await (self.usage_report or UsageReport.of_store(self.metadata)).table()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            result = await self._sql.execute(query, settings)
        except BaseException as exc:  # counted by class (cancelled included), then re-raised
            error = exc
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe_sql(error, time.perf_counter() - started)
        self._topics.clear()  # DDL may have changed what exists
        return result

    # -- jobs, as the SQL statements (engine/agent/job_statements.py) -------------------------------
    async def list_jobs(self) -> list[JobDescription]:
        return job_statements.descriptions(await self.sql(job_statements.SHOW_JOBS))

    async def describe_job(self, name: str) -> JobDescription:
        return job_statements.one(await self.sql(job_statements.SHOW_JOBS), name)

    async def create_job(
        self, name: str, select: str, *, into: str | None = None, options: Mapping[str, str] | None = None
    ) -> JobDescription:
        await self.sql(job_statements.create(name, select, into, options))
        return await self.describe_job(into if into is not None else name)

    async def drop_job(self, name: str, *, drop_topic: bool = True) -> None:
        await self.sql(job_statements.drop(name, drop_topic=drop_topic))

    # -- health ---------------------------------------------------------------------------------
    async def ready(self) -> tuple[bool, str]:
        """Ready = the metadata store and the object store both answer, and no partition's
        flushes keep failing for another reason (its acks=durable producers would hang)."""
        faults = self.manager.flush_health.faults()
        background = [line for check in self.background_faults for line in check()]
        if faults or background:
            lines = [state.describe(key) for key, state in sorted(faults.items())]
            return False, "; ".join(lines + background)
        try:
            await self.metadata.now_ms()
        except Exception as exc:
            return False, f"metadata store unreachable: {exc}"
        try:
            await self.manager.store.head("_streamhouse/readiness-probe")
        except ObjectNotFoundError:
            pass
        except Exception as exc:
            return False, f"object store unreachable: {exc}"
        return True, "ok"

    def gauges(self) -> tuple[int, int]:
        """(led partitions, buffered bytes), for the metrics endpoint."""
        led = self.manager.led_writers()
        return len(led), sum(w.buffered_bytes for w in led)


def _front_end(service: AgentService) -> FrontEnd:
    """Never called: mypy checks here that AgentService keeps the front-end contract
    (engine/api/contract.py), signature by signature."""
    return service
