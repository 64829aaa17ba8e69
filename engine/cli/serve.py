"""`streamhouse serve`: run one agent. Flags override STREAMHOUSE_* variables, which
override the embedded defaults (./streamhouse-data: SQLite, local objects, WAL)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from streamhouse.agent.config import AgentConfig
from streamhouse.auth.exposure import check_exposure
from streamhouse.storage.errors import InvalidInputError

KAFKA_PORT = 9092  # Kafka's own default: clients and tools find it without configuration

# flag -> AgentConfig field
_FLAGS = {
    "data_dir": "data_dir",
    "metadata": "metadata_url",
    "object_store": "object_store_url",
    "s3_endpoint": "s3_endpoint",
    "wal_dir": "wal_dir",
    "fsync": "fsync",
    "host": "host",
    "port": "grpc_port",
    "http_port": "http_port",
    "advertised_address": "advertised_address",
    "agent_id": "agent_id",
    "lease_ttl_ms": "lease_ttl_ms",
    "renew_interval_ms": "renew_interval_ms",
    "max_record_bytes": "max_record_bytes",
    "durable_flush_ms": "durable_flush_ms",
    "roll_bytes": "roll_bytes",
    "roll_age_ms": "roll_age_ms",
    "query_timeout": "query_timeout_s",
    "query_memory": "query_memory",
    "retention_ms": "retention_ms",
    "retention_bytes": "retention_bytes",
    "retention_check_interval_ms": "retention_check_interval_ms",
    "snapshot_interval_ms": "snapshot_interval_ms",
    "iceberg_interval_ms": "iceberg_interval_ms",
    "iceberg_snapshot_retention_ms": "iceberg_snapshot_retention_ms",
    "auth": "auth",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "tls_client_ca": "tls_client_ca",
    "tls_ca": "tls_ca",
    "quota_produce_bytes_per_s": "quota_produce_bytes_per_s",
    "quota_fetch_bytes_per_s": "quota_fetch_bytes_per_s",
    "quota_requests_per_s": "quota_requests_per_s",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "serve",
        help="run an agent (gRPC + HTTP health/metrics)",
        description="Run an agent. Every flag can also be set as STREAMHOUSE_<FIELD> "
        "(e.g. STREAMHOUSE_METADATA_URL, STREAMHOUSE_OBJECT_STORE_URL, STREAMHOUSE_GRPC_PORT).",
    )
    p.add_argument("--data-dir", help="embedded default root (default ./streamhouse-data)")
    p.add_argument("--metadata", help="sqlite:///path or postgresql://user@host/db (default: SQLite in data dir)")
    p.add_argument("--object-store", help="s3://bucket/prefix or file:///path (default: data dir/objects)")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL for S3-compatible servers")
    p.add_argument("--wal-dir", help="WAL directory (default: data dir/wal)")
    p.add_argument(
        "--fsync", choices=["always", "interval", "never"], help="WAL fsync: every write, on an interval, or never"
    )
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gRPC port (default 50051; 0 = any free port)")
    p.add_argument("--http-port", type=int, help="health, metrics and OpenAPI port (default 8080; 0 = any; -1 = off)")
    p.add_argument("--advertised-address", help="host:port clients are redirected to (default host:port)")
    p.add_argument("--agent-id", help="lease holder id (default: stored in the WAL directory)")
    p.add_argument("--lease-ttl-ms", type=int, help="partition leases expire after this long without renewal")
    p.add_argument("--renew-interval-ms", type=int, help="how often held leases are renewed")
    p.add_argument("--max-record-bytes", type=int, help="largest key + value accepted (default 1 MiB)")
    p.add_argument("--durable-flush-ms", type=int, help="least ms between durable rolls (default 0: back to back)")
    p.add_argument("--roll-bytes", type=int, help="start a new segment past this many buffered bytes")
    p.add_argument("--roll-age-ms", type=int, help="start a new segment after this long")
    p.add_argument(
        "--query-timeout",
        type=int,
        help="time limit of every SQL statement in seconds, 0 = none (default 300); sessions may SET a shorter one",
    )
    p.add_argument(
        "--query-memory",
        help="memory cap of every SQL statement, e.g. 2GB or 25%% of RAM (default 25%%); sessions may SET less",
    )
    p.add_argument(
        "--snapshot-interval-ms",
        type=int,
        help="at most one metadata snapshot (for `streamhouse recover`) per this many ms after commits; 0 = off",
    )
    p.add_argument(
        "--recover",
        action="store_true",
        help="first rebuild the EMPTY metadata database from the object store's snapshot and segments "
        "(as `streamhouse recover`; a non-empty database is refused)",
    )
    p.add_argument(
        "--retention-ms",
        type=int,
        help="default retention.ms of topics that set none: older segments go (-1 = keep forever, the default)",
    )
    p.add_argument(
        "--retention-bytes",
        type=int,
        help="default retention.bytes per partition of topics that set none (-1 = no limit, the default)",
    )
    p.add_argument(
        "--retention-check-interval-ms", type=int, help="how often retention runs (default 300000; 0 = never)"
    )
    p.add_argument(
        "--iceberg-interval-ms",
        type=int,
        help="publish topics with iceberg.enabled=true as Iceberg tables this often (needs the iceberg extra; "
        "default 0 = off)",
    )
    p.add_argument(
        "--iceberg-snapshot-retention-ms",
        type=int,
        help="Iceberg snapshots older than this expire (default 3600000); their segment objects stay until then",
    )
    tls = p.add_argument_group("TLS (on every port: gRPC, HTTP, Kafka)")
    tls.add_argument("--tls-cert", metavar="PEM", help="certificate chain (PEM); with --tls-key turns TLS on")
    tls.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert (PEM, unencrypted)")
    tls.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        help="mutual TLS: clients must present a certificate this CA signed (Kafka clients too)",
    )
    tls.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="CA this agent trusts when it connects to other agents (default: --tls-client-ca, else the system's)",
    )
    p.add_argument(
        "--auth",
        choices=["none", "api-key"],
        help="api-key: every gRPC call and HTTP route but /health/live needs an API key "
        "(`streamhouse auth create-key`); default none",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback --host without authentication (refused otherwise; env STREAMHOUSE_INSECURE=1)",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    p.add_argument(
        "--kafka-port",
        type=int,
        help=f"Kafka protocol port on the --host address, as gRPC (default {KAFKA_PORT}; 0 = off)",
    )
    p.add_argument(
        "--kafka-advertised",
        help="host:port given to Kafka clients (default: the --advertised-address host, else --host, on --kafka-port)",
    )
    for kind, unit in (("produce-bytes", "10MB"), ("fetch-bytes", "10MB"), ("requests", "100")):
        p.add_argument(f"--quota-{kind}-per-s", help=f"default rate quota per org on this agent (e.g. {unit}); none")
    p.add_argument(
        "--kafka-max-reauth-ms",
        type=int,
        default=0,
        help="with --auth: a Kafka login's session ends after this long unless the client re-authenticates "
        "(Kafka's connections.max.reauth.ms; a revoked key's connections end within it); default 0 = at key expiry",
    )


def run(args: argparse.Namespace) -> int:
    from streamhouse.server.agent_server import serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig.from_env(**{field: getattr(args, flag) for flag, field in _FLAGS.items()})
    kafka_port = args.kafka_port if args.kafka_port is not None else _kafka_port_from_env()
    if not 0 <= kafka_port <= 65535:
        raise InvalidInputError(f"--kafka-port must be 0 (off) or a port up to 65535, not {kafka_port}")
    advertised = args.kafka_advertised or os.environ.get("STREAMHOUSE_KAFKA_ADVERTISED") or None
    if args.kafka_max_reauth_ms < 0:
        raise InvalidInputError(f"--kafka-max-reauth-ms must be >= 0, not {args.kafka_max_reauth_ms}")
    insecure = args.insecure or os.environ.get("STREAMHOUSE_INSECURE", "") in ("1", "true", "yes")
    # The safe default (engine/auth/exposure.py): refused before anything starts.
    for warning in check_exposure(config.host, config.auth, kafka_port=kafka_port, insecure=insecure):
        logging.getLogger(__name__).warning("%s", warning)
    if args.recover:
        from streamhouse.agent.recovery import recover_urls

        url, objects = config.resolved_metadata_url, config.resolved_object_store_url
        result = asyncio.run(recover_urls(url, objects, s3_endpoint=config.s3_endpoint or None))
        for line in result.lines():
            logging.getLogger(__name__).warning("recover: %s", line)
    asyncio.run(
        serve(config, kafka_port=kafka_port, kafka_advertised=advertised, kafka_max_reauth_ms=args.kafka_max_reauth_ms)
    )
    return 0


def _kafka_port_from_env() -> int:
    # Not an AgentConfig field (the listener sits beside the agent, not inside it), but set
    # the same way as every other flag.
    raw = os.environ.get("STREAMHOUSE_KAFKA_PORT")
    if raw is None:
        return KAFKA_PORT
    try:
        return int(raw)
    except ValueError:
        raise InvalidInputError(f"STREAMHOUSE_KAFKA_PORT must be an integer, not {raw!r}") from None
