"""`streamhouse bench tls`: what TLS and API keys cost on batched produce (issue 15; goal: auth + TLS
on costs at most 15 % against both off).

Four configurations of a real `streamhouse serve` child (SQLite metadata, local files, fsync
interval) take turns over `--rounds`, the first mover rotating each round so load from other
processes hits every configuration alike:

- plain: no TLS, no auth;
- tls: `--tls-cert/--tls-key` with a CA made at run time (devservices/tls_certs.py);
- api key: `--auth api-key`, an admin key (ACLs allow it everything);
- api key + tls: both.

Per agent, two paths, the same records (`--record-size` bytes each):

- gRPC: the SDK's `transport.produce`, batches of `--batch-size`, `--in-flight` requests
  outstanding over `--partitions` partitions, acks=leader;
- Kafka: confluent-kafka (librdkafka), linger 5 ms, batch.size 1 MB, acks=1 — PLAINTEXT, SSL,
  SASL_PLAINTEXT or SASL_SSL with SASL PLAIN (key id / secret).

Reported per path and configuration: median records/s over the rounds and the median CPU
seconds per million records of the agent (from /proc, all its threads) and of this process (the
client, all its threads, librdkafka's included). One progress line per run goes to stderr; the
table goes to stdout as plain aligned text, so it pipes and greps cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamhouse.bench.client import _payload_batch
from streamhouse.client.client import Client, connect
from streamhouse.devservices.ports import free_port
from streamhouse.storage.errors import StreamHouseError

CONFIGS = ("plain", "tls", "api key", "api key + tls")
PATHS = ("grpc", "kafka")
_EXTRA = "pip install 'streamhouse[test]'"


@dataclass(frozen=True)
class Run:
    rate: float  # records/s
    agent_cpu: float  # CPU s per million records
    client_cpu: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # A million: a run then lasts about a second, so /proc's 10 ms CPU ticks are ~1 % of the figure.
    parser.add_argument("--records", type=int, default=1_000_000, help="records per run and path (default 1,000,000)")
    parser.add_argument("--record-size", type=int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--batch-size", type=int, default=1_000, help="records per gRPC request (default 1,000)")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent gRPC requests (default 4)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the gRPC topic (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per configuration, taking turns (default 3)")
    parser.add_argument("--dir", help="working directory, kept (default: a temp dir, removed)")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _requirements() -> None:
    """Both are in the `test` extra, not the base install: say so in one line, not a traceback."""
    for module in ("cryptography", "confluent_kafka"):
        try:
            __import__(module)
        except ImportError as exc:
            raise StreamHouseError(f"`bench tls` needs the `{module}` package: {_EXTRA}") from exc


def _admin_key(data: Path) -> str:
    """An admin key (ACLs let it do everything) written to the agent's store before it starts."""
    from streamhouse.auth.admin import AuthAdmin
    from streamhouse.storage.metadata import open_metadata_store

    async def make() -> str:
        store = await open_metadata_store(f"sqlite:///{data / 'metadata.db'}")
        try:
            await AuthAdmin(store).create_org("bench")
            return (await AuthAdmin(store).create_key("bench", "bench", admin=True)).token
        finally:
            await store.close()

    data.mkdir(parents=True, exist_ok=True)
    return asyncio.run(make())


def _measure(pid: int, records: int, work: Callable[[], None]) -> Run:
    client0, agent0, wall0 = _self_cpu_s(), _cpu_s(pid), time.perf_counter()
    work()
    wall = time.perf_counter() - wall0
    per_m = 1e6 / records
    return Run(records / wall, (_cpu_s(pid) - agent0) * per_m, (_self_cpu_s() - client0) * per_m)


def _grpc_run(client: Client, args: argparse.Namespace, pid: int) -> Run:
    topic = f"grpc-{time.monotonic_ns()}"
    client.create_topic(topic, partitions=args.partitions)
    batch = _payload_batch(args.batch_size, args.record_size)
    requests = -(-args.records // args.batch_size)
    client.transport.produce(topic, 0, batch.slice(0, 1), "leader")  # connection and leases warm

    def send(i: int) -> None:
        last = (i + 1) * args.batch_size > args.records
        part = batch.slice(0, args.records - i * args.batch_size) if last else batch
        client.transport.produce(topic, i % args.partitions, part, "leader")

    def work() -> None:
        with ThreadPoolExecutor(args.in_flight) as pool:
            for future in [pool.submit(send, i) for i in range(requests)]:
                future.result()

    return _measure(pid, args.records, work)


def _kafka_run(client: Client, port: int, security: dict[str, str], args: argparse.Namespace, pid: int) -> Run:
    from confluent_kafka import Producer

    topic = f"kafka-{time.monotonic_ns()}"
    client.create_topic(topic, partitions=1)
    errors: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 5, "batch.size": 1_000_000, "acks": 1,
         "log_level": 3, "on_delivery": report, **security}
    )  # fmt: skip
    value = b"x" * args.record_size
    producer.produce(topic, value)  # the handshake and metadata before the clock starts
    if producer.flush(30) != 0 or errors:
        raise StreamHouseError(f"Kafka produce failed before the run: {errors[:1] or 'flush timed out'}")

    def work() -> None:
        for i in range(args.records):
            while True:
                try:
                    producer.produce(topic, value)
                    break
                except BufferError:  # the local queue is full: wait for deliveries
                    producer.poll(0.001)
            if i % 10_000 == 0:
                producer.poll(0)
        if producer.flush(120) != 0:
            raise StreamHouseError("Kafka produce: records still unacknowledged after 120 s")

    run = _measure(pid, args.records, work)
    if errors:
        raise StreamHouseError(f"Kafka produce: {len(errors)} records failed, e.g. {errors[0]}")
    return run


def _one_agent(workdir: Path, config: str, round_no: int, certs: Any, args: argparse.Namespace) -> dict[str, Run]:
    from streamhouse.devservices.agent import start_agent

    tls, auth = "tls" in config, "api key" in config
    data = workdir / f"{config.replace(' ', '').replace('+', '-')}-{round_no}"
    port = free_port()
    flags = ["--data-dir", str(data), "--fsync", "interval", "--log-level", "WARNING"]
    flags += ["--kafka-port", str(port), "--kafka-advertised", f"127.0.0.1:{port}"]
    sdk: dict[str, Any] = {}
    kafka: dict[str, str] = {"security.protocol": "PLAINTEXT"}
    if tls:
        flags += ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
        sdk["tls_ca"] = str(certs.ca)
        kafka = {"security.protocol": "SSL", "ssl.ca.location": str(certs.ca)}
    if auth:
        flags += ["--auth", "api-key"]
        token = _admin_key(data)
        key_id, secret = token.split(".")
        sdk["api_key"] = token
        kafka = {**kafka, "security.protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                 "sasl.username": key_id, "sasl.password": secret}  # fmt: skip
    with start_agent(flags, log_path=workdir / "agents.log") as agent, connect(agent.address, **sdk) as client:
        runs: dict[str, Run] = {}
        for path in PATHS:
            if path == "grpc":
                r = _grpc_run(client, args, agent.pid)
            else:
                r = _kafka_run(client, port, kafka, args, agent.pid)
            runs[path] = r
            print(
                f"round {round_no + 1}/{args.rounds} {config:13s} {path:5s} {r.rate:>11,.0f} records/s  "
                f"agent {r.agent_cpu:5.2f}  client {r.client_cpu:5.2f} CPU s/M",
                file=sys.stderr,
                flush=True,
            )
    return runs


def _table(results: dict[tuple[str, str], list[Run]], args: argparse.Namespace) -> list[str]:
    head = ("path", "config", "records/s", "vs plain", "agent CPU s/M", "client CPU s/M", "every run (records/s)")
    rows: list[tuple[str, ...]] = []
    for path in PATHS:
        base = statistics.median(r.rate for r in results[(path, "plain")])
        for config in CONFIGS:
            runs = results[(path, config)]
            rate = statistics.median(r.rate for r in runs)
            rows.append((
                path, config, f"{rate:,.0f}", "" if config == "plain" else f"{(rate / base - 1) * 100:+.1f} %",
                f"{statistics.median(r.agent_cpu for r in runs):.2f}",
                f"{statistics.median(r.client_cpu for r in runs):.2f}",
                ", ".join(f"{r.rate:,.0f}" for r in runs),
            ))  # fmt: skip
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    left = {0, 1, 6}

    def line(row: tuple[str, ...]) -> str:
        cells = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(cells).rstrip()

    title = (
        f"produce, {args.records:,} x {args.record_size} B per run; gRPC batches of {args.batch_size:,}, "
        f"{args.in_flight} in flight on {args.partitions} partitions, acks=leader; Kafka confluent-kafka acks=1; "
        f"median of {args.rounds} rounds; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    return [title, line(head), *(line(row) for row in rows)]


def run(args: argparse.Namespace) -> int:
    if args.records < 1 or args.rounds < 1 or args.batch_size < 1 or args.in_flight < 1 or args.partitions < 1:
        raise StreamHouseError("bench tls: --records, --rounds, --batch-size, --in-flight, --partitions must be ≥ 1")
    _requirements()
    from streamhouse.devservices.tls_certs import make_certs

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-tls-"))
    try:
        certs = make_certs(workdir / "certs")
        results: dict[tuple[str, str], list[Run]] = {(p, c): [] for p in PATHS for c in CONFIGS}
        for round_no in range(args.rounds):
            shift = round_no % len(CONFIGS)
            for config in CONFIGS[shift:] + CONFIGS[:shift]:
                for path, one in _one_agent(workdir, config, round_no, certs, args).items():
                    results[(path, config)].append(one)
        print("\n".join(_table(results, args)), flush=True)
        for path in PATHS:  # the goal: auth + TLS on costs at most 15 % against both off
            off, on = results[(path, "plain")], results[(path, "api key + tls")]
            rate = statistics.median(r.rate for r in on) / statistics.median(r.rate for r in off) - 1
            cpu_off = statistics.median(r.agent_cpu for r in off)
            # Tiny runs can last under one 10 ms CPU tick: no ratio then, rather than a division by zero.
            cpu = f"{(statistics.median(r.agent_cpu for r in on) / cpu_off - 1) * 100:+.1f} %" if cpu_off else "n/a"
            print(
                f"{path}: api key + tls vs plain: throughput {rate * 100:+.1f} %, agent CPU per record {cpu}"
                " (goal: cost ≤ 15 %)",
                file=sys.stderr,
            )
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
