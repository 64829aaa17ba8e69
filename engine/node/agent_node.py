"""One agent node: the agent service, its jobs and their wiring (docs/DESIGN.md §1, §8).

The agent (engine/agent/) serves topics, records, consumer groups and SQL; the jobs
(engine/jobs/) run continuous queries on it. Neither holds the other: this class builds the
partition manager (with the forwarder its caller passes: the network client sits above the
agent), the service on it, and the job manager on a JobHost, the narrow view of the agent that
jobs use; it hands the jobs to the service for SQL's job statements and starts and stops them
in order. The agent server (engine/server/agent_server.py) and the embedded SDK transport
(engine/client/embedded.py) both start their agent here, so the two cannot wire it apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamhouse.agent.background import BackgroundService
from streamhouse.agent.compactor import Compactor, CompactSettings
from streamhouse.agent.config import AgentConfig
from streamhouse.agent.forward import Forwarder
from streamhouse.agent.leases import Leases
from streamhouse.agent.merger import Merger, MergeSettings
from streamhouse.agent.partitions import PartitionManager
from streamhouse.agent.reconciler import Reconciler, ReconcileSettings
from streamhouse.agent.retention import Retention, RetentionSettings
from streamhouse.agent.service import AgentService
from streamhouse.agent.snapshotter import Snapshotter
from streamhouse.jobs.host import JobHost
from streamhouse.jobs.manager import JobManager
from streamhouse.storage.model import SegmentInfo

if TYPE_CHECKING:  # prometheus_client stays out of the embedded engine's import (no metrics there)
    from streamhouse.agent.metrics import AgentMetrics
    from streamhouse.iceberg.publisher import IcebergPublisher
    from streamhouse.iceberg.references import IcebergKeepCheck


class AgentNode:
    def __init__(
        self,
        service: AgentService,
        jobs: JobManager,
        merger: Merger | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.service = service
        self.jobs = jobs
        self.merger = merger  # small-segment merging (engine/agent/merger.py)
        self.reconciler = reconciler  # orphan reconciler (engine/agent/reconciler.py)
        self.retention: Retention | None = None  # retention (engine/agent/retention.py)
        self.snapshotter: Snapshotter | None = None  # metadata snapshots (engine/agent/snapshotter.py)
        self.compactor: Compactor | None = None  # log compaction (engine/agent/compactor.py)
        self.iceberg: IcebergPublisher | None = None  # topics as Iceberg tables (engine/iceberg/)
        self.iceberg_keep: IcebergKeepCheck | None = None  # the deleters' snapshot check, on every agent

    @classmethod
    async def start(cls, config: AgentConfig, *, forward: Forwarder, metrics: AgentMetrics | None = None) -> AgentNode:
        """Recover the WAL and start the partitions (held records of partitions another live
        agent leads go there through `forward`), then the job placement loop."""
        if config.iceberg_interval_ms > 0:  # refused before anything starts
            from streamhouse.iceberg.publisher import require_pyiceberg

            require_pyiceberg()
        manager = await PartitionManager.start(config, forward)
        service = AgentService(manager, metrics)
        jobs = JobManager(JobHost(service.sql_topics, manager.metadata, manager.store, manager.config))
        service.jobs = jobs  # CREATE / DROP / SHOW JOBS reach them through the agent's SQL
        jobs.start()
        node = cls(
            service, jobs, _start_merger(manager, service, metrics), _start_reconciler(manager, service, metrics)
        )
        node.snapshotter = _start_snapshotter(manager, service, node.merger, metrics)
        node.retention = _start_retention(manager, service, metrics)
        node.compactor = _start_compactor(manager, service, metrics)
        for owner, hook in ((node.retention, "on_removed"), (node.compactor, "on_compacted")):
            _snapshot_after(node.snapshotter, owner, hook)  # their swaps reach a snapshot too
        node.iceberg_keep = _keep_referenced(manager, (node.retention, node.merger))
        node.iceberg = _start_iceberg(manager, service)
        return node

    @property
    def config(self) -> AgentConfig:
        """The settings in force (the agent id is resolved from the WAL at start)."""
        return self.service.config

    async def close(self, *, flush: bool = True) -> None:
        """Jobs first (they write through the agent and hold leases), then the partitions:
        flushed into segments when `flush`, leases released."""
        if self.snapshotter is not None:
            await self.snapshotter.close()
        if self.iceberg is not None:
            await self.iceberg.close()
        if self.iceberg_keep is not None:
            self.iceberg_keep.close()
        if self.retention is not None:
            await self.retention.close()
        if self.compactor is not None:
            await self.compactor.close()
        if self.reconciler is not None:
            await self.reconciler.close()
        if self.merger is not None:
            await self.merger.close()
        await self.jobs.close()
        await self.service.close(flush=flush)


def _start_merger(manager: PartitionManager, service: AgentService, metrics: AgentMetrics | None) -> Merger:
    """The merger, wired to the agent's metrics and readiness, started (unless switched off)."""
    config = manager.config
    leases = Leases(manager.metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms)
    merger = Merger(
        manager.metadata, manager.store, leases, MergeSettings.from_config(config), lists=manager.reader.lists
    )
    service.background_faults.append(merger.health.faults)
    if metrics is not None:
        merger.on_merge = lambda o: metrics.observe_merge(o.topic, o.replaced, o.read_bytes, o.written_bytes)
        merger.health.on_change = metrics.merge_state
        merger.on_deleted = metrics.objects_deleted
    merger.start()
    return merger


def _start_reconciler(manager: PartitionManager, service: AgentService, metrics: AgentMetrics | None) -> Reconciler:
    """The orphan reconciler, wired to the agent's metrics and readiness, started (unless off)."""
    config = manager.config
    leases = Leases(manager.metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms)
    reconciler = Reconciler(manager.metadata, manager.store, leases, ReconcileSettings.from_config(config))
    service.background_faults.append(reconciler.faults)
    if metrics is not None:
        reconciler.on_deleted = metrics.orphans_deleted_in
        reconciler.on_missing = metrics.missing_objects
        reconciler.on_failed = metrics.reconcile_failures.inc
    reconciler.start()
    return reconciler


def _start_retention(manager: PartitionManager, service: AgentService, metrics: AgentMetrics | None) -> Retention:
    """Retention, wired to the agent's metrics and readiness, started (unless switched off)."""
    config = manager.config
    leases = Leases(manager.metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms)
    retention = Retention(
        manager.metadata, manager.store, leases, RetentionSettings.from_config(config), lists=manager.reader.lists
    )
    service.background_faults.append(retention.faults)
    if metrics is not None:
        from streamhouse.agent.retention_metrics import RetentionMetrics  # prometheus_client: agents only

        RetentionMetrics(metrics.registry).wire(retention, metrics.objects_deleted)
    retention.start()
    return retention


def _start_compactor(manager: PartitionManager, service: AgentService, metrics: AgentMetrics | None) -> Compactor:
    """Log compaction, wired to the agent's metrics and readiness, started (unless switched off)."""
    config = manager.config
    leases = Leases(manager.metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms)
    compactor = Compactor(
        manager.metadata, manager.store, leases, CompactSettings.from_config(config), lists=manager.reader.lists
    )
    service.background_faults.append(compactor.faults)
    if metrics is not None:
        from streamhouse.agent.compaction_metrics import CompactionMetrics  # prometheus_client: agents only

        series = CompactionMetrics(metrics.registry)
        compactor.on_compacted = series.observe
        compactor.health.on_change = series.state
    compactor.start()
    return compactor


def _keep_referenced(manager: PartitionManager, deleters: tuple[BackgroundService | None, ...]) -> IcebergKeepCheck:
    """On every agent, publisher or not (another agent may publish): the deferred deleters of
    retention and the merger keep objects a live Iceberg snapshot references."""
    from streamhouse.iceberg.references import IcebergKeepCheck  # no pyiceberg import until a topic is published
    from streamhouse.iceberg.tables import CatalogSettings

    config = manager.config
    settings = CatalogSettings(config.resolved_metadata_url, config.resolved_object_store_url, config.s3_endpoint)
    keep = IcebergKeepCheck(manager.metadata, settings)
    for deleter in deleters:
        if deleter is not None:
            deleter.keep = keep.referenced
    return keep


def _start_iceberg(manager: PartitionManager, service: AgentService) -> IcebergPublisher | None:
    """With --iceberg-interval-ms: the Iceberg publisher, started."""
    config = manager.config
    if config.iceberg_interval_ms <= 0:
        return None
    from streamhouse.iceberg.publisher import IcebergPublisher, PublishSettings

    settings = PublishSettings.from_config(config)
    leases = Leases(manager.metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms)
    publisher = IcebergPublisher(manager.metadata, manager.store, leases, settings)
    service.background_faults.append(publisher.faults)
    publisher.start()
    return publisher


def _start_snapshotter(
    manager: PartitionManager, service: AgentService, merger: Merger | None, metrics: AgentMetrics | None
) -> Snapshotter:
    """Metadata snapshots after this agent's segment commits and merges, in readiness and the
    metrics, started (unless switched off)."""
    snapshotter = Snapshotter.from_config(manager.metadata, manager.store, manager.config)
    service.background_faults.append(snapshotter.faults)
    if metrics is not None:
        from streamhouse.agent.snapshot_metrics import SnapshotMetrics  # prometheus_client: agents only

        SnapshotMetrics(metrics.registry).wire(snapshotter)
    committed = manager.on_segment

    def on_segment(segment: SegmentInfo) -> None:
        committed(segment)
        snapshotter.changed()

    manager.on_segment = on_segment
    _snapshot_after(snapshotter, merger, "on_merge")
    snapshotter.start()
    return snapshotter


def _snapshot_after(snapshotter: Snapshotter | None, owner: object, hook: str) -> None:
    """After `owner.<hook>(outcome)` (a background service's report of a swap it committed),
    tell the snapshotter that the metadata changed."""
    if snapshotter is None or owner is None:
        return
    before = getattr(owner, hook)

    def after(outcome: object) -> None:
        before(outcome)
        snapshotter.changed()

    setattr(owner, hook, after)
