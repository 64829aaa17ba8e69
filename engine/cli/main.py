"""The `streamhouse` command line. Each command group lives in its own module; this file
only wires argparse to them, and turns StreamHouseError into a one-line message."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from streamhouse.cli import auth, chaos, groups, jobs, records, recover, serve, sql, topics
from streamhouse.storage.errors import StreamHouseError

_RUN: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": serve.run,
    "topic": topics.run,
    "produce": records.run_produce,
    "consume": records.run_consume,
    "group": groups.run,
    "sql": sql.run,
    "job": jobs.run,
    "recover": recover.run,
    "auth": auth.run,
    "chaos": chaos.run,
}


def build_parser() -> argparse.ArgumentParser:
    from streamhouse import __version__

    parser = argparse.ArgumentParser(prog="streamhouse", description="Streaming SQL on S3 segment storage")
    parser.add_argument("--version", action="version", version=f"streamhouse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    topics.add_parser(commands)
    records.add_parsers(commands)
    groups.add_parser(commands)
    sql.add_parser(commands)
    jobs.add_parser(commands)
    recover.add_parser(commands)
    auth.add_parser(commands)
    chaos.add_parser(commands)
    _add_bench(commands)
    return parser


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from streamhouse.bench.client import add_consume_arguments, add_produce_arguments

    bench = commands.add_parser("bench", help="measure throughput and latency")
    kinds = bench.add_subparsers(dest="bench", required=True)
    storage = kinds.add_parser("storage", help="batch codec, segments, WAL and S3 range reads")
    storage.add_argument("--records", type=int, default=1_000_000, help="records per test (default 1,000,000)")
    storage.add_argument("--key-bytes", type=int, default=16, help="key size in bytes (default 16)")
    storage.add_argument("--dir", default=None, help="working directory (default: a temp dir)")
    storage.add_argument(
        "--s3-endpoint",
        default=None,
        help="S3 endpoint for the range-read test (default: start a temporary SeaweedFS if `weed` is on PATH)",
    )
    storage.add_argument("--s3-url", default=None, help="s3://bucket/prefix for the range-read test")
    storage.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["segment", "ipc", "wal", "s3"],
        help="leave out a test; repeatable",
    )
    add_produce_arguments(kinds.add_parser("produce", help="produce throughput and latency through the SDK"))
    add_consume_arguments(kinds.add_parser("consume", help="consume throughput through the SDK"))
    from streamhouse.bench.sql import add_nexmark_arguments, add_sql_arguments

    add_nexmark_arguments(kinds.add_parser("nexmark", help="fill person/auction/bid topics with Nexmark events"))
    add_sql_arguments(kinds.add_parser("sql", help="TUMBLE aggregation and point lookup (optionally vs DuckDB)"))
    from streamhouse.bench.jobs import add_arguments as add_jobs_arguments

    add_jobs_arguments(kinds.add_parser("jobs", help="continuous-query throughput, memory and latency"))
    from streamhouse.bench.kafka import add_arguments as add_kafka_arguments

    add_kafka_arguments(kinds.add_parser("kafka", help="Kafka protocol: StreamHouse beside a real Kafka broker"))
    from streamhouse.bench.kafka_txn import add_arguments as add_kafka_txn_arguments

    add_kafka_txn_arguments(kinds.add_parser("kafka-txn", help="Kafka transactions: their cost, beside a real broker"))
    from streamhouse.bench.rest import add_arguments as add_rest_arguments

    add_rest_arguments(kinds.add_parser("rest", help="REST produce in batches next to gRPC, on one agent"))
    from streamhouse.bench.compaction import add_arguments as add_compaction_arguments

    add_compaction_arguments(
        kinds.add_parser("compaction", help="log compaction (CPU per core, reads) and merging small segments")
    )
    from streamhouse.bench.registry import add_arguments as add_registry_arguments

    add_registry_arguments(kinds.add_parser("registry", help="Avro-serialised values → typed columns, next to JSON"))
    from streamhouse.bench.auth import add_arguments as add_auth_arguments

    add_auth_arguments(kinds.add_parser("auth", help="API keys: authentication per request, produce with auth on/off"))
    from streamhouse.bench.tls import add_arguments as add_tls_arguments

    add_tls_arguments(kinds.add_parser("tls", help="produce with TLS and API keys on/off: gRPC and Kafka"))


def _run_bench(args: argparse.Namespace) -> int:
    if args.bench == "storage":
        from streamhouse.bench.storage import run_storage_bench

        run_storage_bench(args)
        return 0
    if args.bench == "produce":
        from streamhouse.bench.client import run_produce

        return run_produce(args)
    if args.bench == "jobs":
        from streamhouse.bench.jobs import run as run_jobs

        return run_jobs(args)
    if args.bench == "rest":
        from streamhouse.bench.rest import run as run_rest

        return run_rest(args)
    if args.bench == "kafka":
        from streamhouse.bench.kafka import run as run_kafka

        return run_kafka(args)
    if args.bench == "kafka-txn":
        from streamhouse.bench.kafka_txn import run as run_kafka_txn

        return run_kafka_txn(args)
    if args.bench in ("nexmark", "sql"):
        from streamhouse.bench.sql import run_nexmark, run_sql

        return run_nexmark(args) if args.bench == "nexmark" else run_sql(args)
    if args.bench == "compaction":
        from streamhouse.bench.compaction import run as run_compaction

        return run_compaction(args)
    if args.bench == "registry":
        from streamhouse.bench.registry import run as run_registry

        return run_registry(args)
    if args.bench == "auth":
        from streamhouse.bench.auth import run as run_auth

        return run_auth(args)
    if args.bench == "tls":
        from streamhouse.bench.tls import run as run_tls

        return run_tls(args)
    if args.bench == "consume":
        from streamhouse.bench.client import run_consume

        return run_consume(args)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _run_bench(args)
        return _RUN[args.command](args)
    except StreamHouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours, and no traceback at exit.
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
