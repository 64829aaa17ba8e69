"""Agent settings: defaults are the embedded mode (everything under ./streamhouse-data);
every field can come from a STREAMHOUSE_<FIELD> environment variable."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from streamhouse.sql.query.limits import DEFAULT_MEMORY, DEFAULT_TIMEOUT_S, QueryLimits, agent_limits
from streamhouse.storage.errors import InvalidInputError


def _agent_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class AgentConfig:
    data_dir: str = "./streamhouse-data"
    metadata_url: str = ""  # default: sqlite under data_dir
    object_store_url: str = ""  # default: file:// under data_dir
    s3_endpoint: str = ""
    wal_dir: str = ""  # default: data_dir/wal
    fsync: str = "interval"
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    advertised_address: str = ""  # default: host:grpc_port
    # "" = the id kept in the WAL directory (created once): a restart on the same WAL is the
    # same lease holder and takes its partitions back at once instead of waiting out the TTL.
    agent_id: str = ""
    lease_ttl_ms: int = 30_000
    renew_interval_ms: int = 10_000
    roll_bytes: int = 64 << 20
    roll_age_ms: int = 10_000
    # acks=durable: 0 = natural group commit (a roll at once, the acks arriving meanwhile
    # share the next); N > 0 = at least N ms between a partition's durable rolls.
    durable_flush_ms: int = 0
    flush_check_ms: int = 100
    max_record_bytes: int = 1 << 20
    max_buffer_bytes: int = 512 << 20  # per partition; over it, produce gets backpressure
    max_wal_bytes: int = 4 << 30  # per agent; over it (segments not uploading), backpressure
    # Every SQL statement's time limit (0: none) and memory cap ('2GB', or a share of RAM):
    # the default and the most a session's SET statement_timeout / query_memory may ask for.
    query_timeout_s: int = DEFAULT_TIMEOUT_S
    query_memory: str = DEFAULT_MEMORY
    # Small-segment merging (engine/agent/merger.py, docs/DESIGN.md §4): every merge_interval_ms
    # (0: never) runs of >= merge_min_segments neighbouring segments, each under
    # merge_small_bytes, become one of up to merge_target_bytes; the replaced objects are
    # deleted merge_grace_ms after the swap (readers that listed them finish first).
    merge_interval_ms: int = 30_000
    merge_small_bytes: int = 8 << 20
    merge_target_bytes: int = 64 << 20
    merge_min_segments: int = 4
    merge_grace_ms: int = 600_000
    # The orphan reconciler (engine/agent/reconciler.py, docs/DESIGN.md §5): every
    # reconcile_interval_ms (0: never) one agent diffs the object store against the metadata;
    # unreferenced segment objects older than orphan_grace_ms (an upload in flight is younger)
    # are deleted, rows whose object is missing reported.
    reconcile_interval_ms: int = 600_000
    orphan_grace_ms: int = 3_600_000
    # Retention (engine/agent/retention.py, docs/DESIGN.md §4), the server defaults of a topic's
    # retention.ms / retention.bytes (Kafka's log.retention.ms / log.retention.bytes; -1: no
    # limit, the default, so an upgrade never deletes what was kept before): every
    # retention_check_interval_ms (0: never) whole segments past the limits are removed, their
    # objects deleted after the merge grace.
    retention_ms: int = -1
    retention_bytes: int = -1
    retention_check_interval_ms: int = 300_000
    # Metadata snapshots for disaster recovery (engine/agent/snapshotter.py): at most one per
    # snapshot_interval_ms (0: never) after segment commits, under _metadata/snapshots/.
    snapshot_interval_ms: int = 30_000
    # Topics as Iceberg tables (engine/iceberg/, issue 16): every iceberg_interval_ms (0: never,
    # the default) topics with iceberg.enabled=true get their new segments published; snapshots
    # older than iceberg_snapshot_retention_ms expire (their objects are kept until then).
    iceberg_interval_ms: int = 0
    iceberg_snapshot_retention_ms: int = 3_600_000
    # Who may ask (engine/auth/, issue 15): "none", or "api-key" (every gRPC call and HTTP route
    # but /health/live needs a key; `streamhouse auth create-key`). See cli/serve.py for
    # --insecure: without auth, only loopback addresses are served unless it is given.
    auth: str = "none"
    # TLS on every port (engine/api/tls.py): the certificate chain and key (PEM; both or
    # neither), the CA client certificates must chain to (mutual TLS; "" = none), and the CA
    # this agent trusts when it connects to other agents ("" = the client CA, else the system's).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tls_ca: str = ""
    # Rate quotas' server default per org (engine/auth/quota.py, issue 15): "10MB", "512KiB",
    # "100" per second; "" = unlimited. An org's stored row (`auth quota set`) overrides each.
    quota_produce_bytes_per_s: str = ""
    quota_fetch_bytes_per_s: str = ""
    quota_requests_per_s: str = ""

    def __post_init__(self) -> None:
        if self.fsync not in ("always", "interval", "never"):
            raise InvalidInputError(f"fsync must be always, interval or never, not {self.fsync!r}")
        if self.durable_flush_ms < 0:
            raise InvalidInputError(f"durable_flush_ms must be 0 or more, not {self.durable_flush_ms}")
        if self.renew_interval_ms >= self.lease_ttl_ms:
            raise InvalidInputError("renew_interval_ms must be shorter than lease_ttl_ms")
        check_merge_settings(self)
        if self.snapshot_interval_ms < 0:
            raise InvalidInputError(f"snapshot_interval_ms must be 0 or more, not {self.snapshot_interval_ms}")
        for name in ("iceberg_interval_ms", "iceberg_snapshot_retention_ms"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must be 0 or more, not {getattr(self, name)}")
        self.query_limits  # noqa: B018 - refuses a bad --query-timeout / --query-memory at start

    @property
    def query_limits(self) -> QueryLimits:
        return agent_limits(self.query_timeout_s, self.query_memory)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def resolved_metadata_url(self) -> str:
        return self.metadata_url or f"sqlite:///{self.data_path / 'metadata.db'}"

    @property
    def resolved_object_store_url(self) -> str:
        return self.object_store_url or f"file://{self.data_path / 'objects'}"

    @property
    def resolved_wal_dir(self) -> Path:
        return Path(self.wal_dir).resolve() if self.wal_dir else self.data_path / "wal"

    @property
    def address(self) -> str:
        return self.advertised_address or f"{self.host}:{self.grpc_port}"

    def with_agent_id(self) -> AgentConfig:
        """This config with agent_id resolved: the one stored next to the WAL, created on
        first start. The WAL's lock makes the holder unique to one live process."""
        if self.agent_id:
            return self
        path = self.resolved_wal_dir / "agent-id"
        try:
            agent_id = path.read_text().strip()
        except FileNotFoundError:
            agent_id = ""
        if not agent_id:
            agent_id = _agent_id()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(agent_id + "\n")
            tmp.replace(path)
        return dataclasses.replace(self, agent_id=agent_id)

    @property
    def holder(self) -> str:
        """Lease holder name: unique per agent process, carrying the address clients redirect to."""
        return f"{self.agent_id}@{self.address}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> AgentConfig:
        """Fields from STREAMHOUSE_* variables, then explicit overrides (CLI flags) on top."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"STREAMHOUSE_{f.name.upper()}")
            if raw is None:
                continue
            try:
                values[f.name] = int(raw) if hints[f.name] is int else raw
            except ValueError:
                raise InvalidInputError(f"STREAMHOUSE_{f.name.upper()} must be an integer, not {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# A reader holds a segment list at most this long beyond its statement's time limit: the
# segment-list cache TTL (1 s, storage/partition/reader.py) with room to spare.
MERGE_GRACE_MARGIN_MS = 5_000
MIN_ORPHAN_GRACE_MS = 60_000


def check_merge_settings(config: AgentConfig) -> None:
    """InvalidInputError unless the merge settings are usable."""
    for name in ("merge_interval_ms", "merge_grace_ms", "reconcile_interval_ms", "retention_check_interval_ms"):
        if getattr(config, name) < 0:
            raise InvalidInputError(f"{name} must be 0 or more, not {getattr(config, name)}")
    for name in ("retention_ms", "retention_bytes"):
        if getattr(config, name) < -1:
            raise InvalidInputError(f"{name} must be -1 (no limit) or 0 or more, not {getattr(config, name)}")
    if not 0 < config.merge_small_bytes <= config.merge_target_bytes:
        raise InvalidInputError(
            f"merge_small_bytes ({config.merge_small_bytes}) must be positive and at most "
            f"merge_target_bytes ({config.merge_target_bytes})"
        )
    if config.merge_min_segments < 2:
        raise InvalidInputError(f"merge_min_segments must be 2 or more, not {config.merge_min_segments}")
    if config.orphan_grace_ms < MIN_ORPHAN_GRACE_MS:
        # Shorter would race uploads in flight (an upload is committed after it lands).
        raise InvalidInputError(f"orphan_grace_ms must be at least {MIN_ORPHAN_GRACE_MS}, not {config.orphan_grace_ms}")


def merge_grace_ms(config: AgentConfig) -> int:
    """How long replaced objects are kept: merge_grace_ms, raised to outlast every reader that
    may have listed them — a SQL statement runs at most query_timeout_s (0: no limit; then the
    setting is the bound, and a longer statement fails on a deleted object with a clear error)."""
    return max(config.merge_grace_ms, config.query_timeout_s * 1000 + MERGE_GRACE_MARGIN_MS)


def leader_address(holder: str) -> str:
    """The address part of a lease holder name (see AgentConfig.holder)."""
    return holder.rpartition("@")[2] if "@" in holder else ""


def holder_agent_id(holder: str) -> str:
    """The agent id part of a lease holder name (see AgentConfig.holder)."""
    return holder.rpartition("@")[0] if "@" in holder else holder
