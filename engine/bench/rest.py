"""`streamhouse bench rest`: REST produce (POST /v1/topics/{t}/records, batches of
--batch-size records, default 1,000) next to gRPC produce through the SDK (what `streamhouse
bench produce` measures), against the same agent in one run, with the same record count,
value size, acks and requests in flight. Two REST rows: BINARY values (base64, decoded as one
column) and JSON values (objects re-encoded compactly), both built column-wise by the agent
(engine/rest/records.py). Without --bootstrap a temporary local agent is started."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from rich.console import Console
from rich.table import Table

from streamhouse.bench.client import produce
from streamhouse.client.client import Client, connect
from streamhouse.storage.errors import StreamHouseError

console = Console(stderr=True)


class RestBenchError(StreamHouseError):
    """A REST produce request was refused: the figures would be meaningless."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="an agent's gRPC address (default: start a temporary local agent)")
    parser.add_argument("--http", help="that agent's HTTP base URL, e.g. http://host:8080 (with --bootstrap)")
    parser.add_argument("--records", type=int, default=500_000, help="records per run (default 500,000)")
    parser.add_argument("--record-size", type=int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--batch-size", type=int, default=1_000, help="records per request (default 1,000)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of each bench topic (default 1)")
    parser.add_argument("--acks", default="leader", choices=["leader", "durable", "none"], help="default leader")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent requests (default 4)")
    parser.add_argument("--fsync", default="interval", choices=["always", "interval", "never"], help="WAL fsync")
    parser.add_argument("--dir", help="working directory for the temporary agent")


@contextmanager
def _agent(args: argparse.Namespace) -> Iterator[tuple[Client, str]]:
    if args.bootstrap:
        if not args.http:
            raise RestBenchError("--bootstrap needs --http, the same agent's HTTP base URL")
        with connect(args.bootstrap) as client:
            yield client, args.http.rstrip("/")
        return
    from streamhouse.devservices.agent import start_agent

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-rest-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        agent = start_agent(
            ["--data-dir", str(workdir / "agent"), "--fsync", args.fsync], log_path=workdir / "agent.log"
        )
        stack.callback(agent.stop)
        client = stack.enter_context(connect(agent.address))
        yield client, f"http://127.0.0.1:{agent.http_port}"


def _bodies(kind: str, n: int, size: int) -> bytes:
    """One request body of n records of about `size` value bytes (random, as the gRPC bench's)."""
    rng = np.random.default_rng(7)
    if kind == "BINARY":
        raw = rng.integers(0, 256, n * size, dtype=np.uint8).tobytes()
        values: list[object] = [base64.b64encode(raw[i * size : (i + 1) * size]).decode() for i in range(n)]
    else:
        pad = max(size - 60, 1)
        letters = rng.integers(97, 123, n * pad, dtype=np.uint8).tobytes().decode()
        values = [
            {"id": i, "user": f"u{i % 977}", "amount": i * 0.25, "pad": letters[i * pad : (i + 1) * pad]}
            for i in range(n)
        ]
    return json.dumps({"value_type": kind, "values": values}).encode()


def rest_produce(base: str, topic: str, kind: str, args: argparse.Namespace) -> dict[str, float]:
    """args.records records over REST, args.in_flight keep-alive connections at once."""
    url = urlsplit(base)
    full = _bodies(kind, args.batch_size, args.record_size)
    tail_n = args.records % args.batch_size
    tail = _bodies(kind, tail_n, args.record_size) if tail_n else full
    requests = -(-args.records // args.batch_size)
    path = f"/v1/topics/{topic}/records?acks={args.acks}"
    local = threading.local()
    latencies: list[float] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=60)
        body = tail if i == requests - 1 and tail_n else full
        began = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        took = time.perf_counter() - began
        if response.status != 200:
            raise RestBenchError(f"REST produce answered {response.status}: {answer[:300]!r}")
        with lock:
            latencies.append(took)

    started = time.perf_counter()
    with ThreadPoolExecutor(max(args.in_flight, 1)) as pool:
        list(pool.map(send, range(requests)))
    elapsed = time.perf_counter() - started
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99]) if latencies else (0.0, 0.0)
    return {"records": args.records, "seconds": elapsed, "rate": args.records / elapsed, "p50_ms": p50, "p99_ms": p99}


def run(args: argparse.Namespace) -> int:
    rows: list[tuple[str, dict[str, float]]] = []
    with _agent(args) as (client, base):
        for label in ("gRPC (SDK, Arrow)", "REST BINARY (base64)", "REST JSON"):
            topic = f"bench-rest-{uuid.uuid4().hex[:8]}"
            client.create_topic(topic, args.partitions)
            console.print(f"{label} …")
            if label.startswith("gRPC"):
                grpc_args = argparse.Namespace(**{**vars(args), "throughput": 0})
                rows.append((label, produce(client, topic, grpc_args, label=label)))
            else:
                rows.append((label, rest_produce(base, topic, label.split()[1], args)))
            stored = sum(client.describe(topic).end_offsets.values())
            if stored != args.records:  # a figure for records that were not all stored means nothing
                raise RestBenchError(f"{label}: {stored:,} records stored of {args.records:,} acknowledged")
    table = Table(title=f"produce acks={args.acks}, batches of {args.batch_size:,}")
    for name in ("path", "records", "records/s", "p50 ms", "p99 ms"):
        table.add_column(name, justify="right")
    for label, f in rows:
        table.add_row(label, f"{int(f['records']):,}", f"{f['rate']:,.0f}", f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}")
    Console().print(table)
    print(
        f"bench rest: {args.records:,} records of {args.record_size} B per path, {args.in_flight} in flight, "
        f"fsync={args.fsync}, {'temporary local agent' if not args.bootstrap else args.bootstrap}, "
        f"{os.cpu_count()} CPUs"
    )
    return 0
