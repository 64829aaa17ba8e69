"""`streamhouse bench auth`: what API keys cost (issue 15).

1. Authentication per request, in this process on a SQLite store: cold (a key never seen: one
   store read + scrypt), after the cache TTL (store read only; the verified secret's digest is
   reused) and warm (memory only) — wall and CPU µs per request (process CPU, all threads: scrypt
   runs on a worker thread).
2. Batched produce over gRPC through the SDK against a temporary agent with `--auth api-key` and
   one without, same records, batch size and requests in flight, rounds taking turns (the first
   mover alternates); rate, and the agent's CPU seconds per million records (from /proc), median
   of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from streamhouse.auth import Authenticator
from streamhouse.auth.admin import AuthAdmin
from streamhouse.bench import kafka_sasl
from streamhouse.bench.client import produce
from streamhouse.client.client import connect
from streamhouse.storage.metadata import open_metadata_store

console = Console(stderr=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold", type=int, default=50, help="cold authentications (default 50)")
    parser.add_argument("--warm", type=int, default=100_000, help="warm authentications (default 100,000)")
    parser.add_argument("--records", type=int, default=500_000, help="records per produce run (default 500,000)")
    parser.add_argument("--record-size", type=int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--batch-size", type=int, default=1_000, help="records per request (default 1,000)")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent requests (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="produce runs per setting, taking turns (default 3)")
    parser.add_argument("--dir", help="working directory (default: a temp dir)")
    parser.add_argument(
        "--kafka-logins", type=int, default=300, help="Kafka SASL logins per row (0: skip; bench/kafka_sasl.py)"
    )


async def _latency(url: str, cold: int, warm: int) -> dict[str, tuple[float, float]]:
    store = await open_metadata_store(url)
    try:
        admin = AuthAdmin(store)
        await admin.create_org("bench")
        tokens = [(await admin.create_key("bench", "b")).token.split(".") for _ in range(cold)]
        out: dict[str, tuple[float, float]] = {}
        auth = Authenticator(store)
        wall, cpu = time.perf_counter(), time.process_time()
        for key_id, secret in tokens:  # each key once: a store read and scrypt each
            await auth.authenticate("bench", key_id, secret)
        out["cold (store read + scrypt)"] = _per(wall, cpu, cold)
        expired = Authenticator(store, cache_ttl_s=0.0)
        await expired.authenticate("bench", *tokens[0])
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(cold * 20):  # past the TTL: the row again, the digest reused
            await expired.authenticate("bench", *tokens[0])
        out["past the TTL (store read)"] = _per(wall, cpu, cold * 20)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(warm):
            await auth.authenticate("bench", *tokens[0])
        out["warm (memory)"] = _per(wall, cpu, warm)
        return out
    finally:
        await store.close()


def _per(wall: float, cpu: float, n: int) -> tuple[float, float]:
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _produce_run(workdir: Path, auth: bool, args: argparse.Namespace, round_no: int) -> tuple[float, float]:
    from streamhouse.devservices.agent import start_agent

    data = workdir / f"agent-{'on' if auth else 'off'}-{round_no}"
    flags = ["--data-dir", str(data), "--fsync", "interval"]
    key = None
    if auth:
        flags += ["--auth", "api-key"]

        async def make_key() -> str:
            store = await open_metadata_store(f"sqlite:///{data / 'metadata.db'}")
            try:
                await AuthAdmin(store).create_org("bench")
                return (await AuthAdmin(store).create_key("bench", "b", admin=True)).token  # ACLs: all rights
            finally:
                await store.close()

        key = asyncio.run(make_key())
    with start_agent(flags, log_path=workdir / "agent.log") as agent, connect(agent.address, api_key=key) as client:
        client.create_topic("bench", partitions=1)
        ns = argparse.Namespace(
            records=args.records,
            record_size=args.record_size,
            batch_size=args.batch_size,
            partitions=1,
            throughput=0,
            in_flight=args.in_flight,
            acks="leader",
        )
        before = _cpu_s(agent.pid)
        result = produce(client, "bench", ns, label=f"auth {'on' if auth else 'off'}")
        agent_cpu = _cpu_s(agent.pid) - before
    return result["rate"], agent_cpu / args.records * 1e6


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-auth-"))
    try:
        latency = asyncio.run(_latency(f"sqlite:///{workdir / 'latency.db'}", args.cold, args.warm))
        table = Table(title="authentication per request (SQLite store, this process)")
        table.add_column("path")
        table.add_column("wall µs", justify="right")
        table.add_column("CPU µs", justify="right")
        for path, (wall, cpu) in latency.items():
            table.add_row(path, f"{wall:,.1f}", f"{cpu:,.1f}")
        Console().print(table)
        if args.kafka_logins > 0:  # a new Kafka connection's login: PLAIN vs SCRAM (bench/kafka_sasl.py)
            kafka_sasl.report(workdir / "kafka", args.kafka_logins, min(40, args.kafka_logins))
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for i in range(args.rounds):
            for auth in (False, True) if i % 2 == 0 else (True, False):
                runs[auth].append(_produce_run(workdir, auth, args, i))
        produce_table = Table(
            title=f"gRPC produce, {args.records:,} × {args.record_size} B, batches of {args.batch_size:,}, "
            f"{args.in_flight} in flight, acks=leader (median of {args.rounds}; {os.cpu_count()} CPUs)"
        )
        for column in ("auth", "records/s", "agent CPU s per M records", "every run (records/s)"):
            produce_table.add_column(column, justify="right")
        for auth in (False, True):
            rates = [r for r, _ in runs[auth]]
            cpus = [c for _, c in runs[auth]]
            produce_table.add_row(
                "on" if auth else "off",
                f"{statistics.median(rates):,.0f}",
                f"{statistics.median(cpus):,.2f}",
                ", ".join(f"{r:,.0f}" for r in rates),
            )
        Console().print(produce_table)
        off, on = (statistics.median(r for r, _ in runs[a]) for a in (False, True))
        console.print(f"auth on costs {(1 - on / off) * 100:+.1f} % of produce throughput (goal ≤ 15 %)")
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
