"""`streamhouse bench produce|consume`: end-to-end figures through the SDK and gRPC, in the
spirit of kafka-producer-perf-test / kafka-consumer-perf-test. Without --bootstrap a
temporary agent is started on loopback (and, with --s3, a temporary SeaweedFS behind it)."""

from __future__ import annotations

import argparse
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

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamhouse.client.client import Client, connect
from streamhouse.storage.clock import now_ms
from streamhouse.storage.records.schema import RECORD_SCHEMA, null_headers

console = Console(stderr=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="agents to bench (default: start a temporary local agent)")
    parser.add_argument("--topic", help="topic (default: a new bench-… topic)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of the bench topic (default 1)")
    parser.add_argument("--records", type=int, default=1_000_000, help="records to send or read (default 1,000,000)")
    parser.add_argument("--record-size", type=int, default=100, help="value bytes per record")
    parser.add_argument("--batch-size", type=int, default=1_000, help="records per produce request")
    parser.add_argument(
        "--fsync", default="interval", choices=["always", "interval", "never"], help="WAL fsync (default interval)"
    )
    parser.add_argument("--s3", action="store_true", help="temporary agent on a temporary SeaweedFS (S3)")
    parser.add_argument("--dir", help="working directory for the temporary agent")


def add_produce_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument(
        "--acks", default="leader", choices=["leader", "durable", "none"], help="acknowledgement level (default leader)"
    )
    parser.add_argument("--throughput", type=int, default=0, help="records/s to aim for (0 = as fast as possible)")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent produce requests")


def add_consume_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--fetch-records", type=int, default=50_000, help="records per fetch")
    parser.add_argument("--in-flight", type=int, default=2, help="concurrent fetches")


@contextmanager
def _target(args: argparse.Namespace) -> Iterator[Client]:
    """A client on the user's agents, or on a temporary agent (and S3) torn down after."""
    if args.bootstrap:
        with connect(args.bootstrap) as client:
            yield client
        return
    from streamhouse.devservices.agent import start_agent

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        flags = ["--data-dir", str(workdir / "agent"), "--fsync", args.fsync]
        env: dict[str, str] = {}
        if args.s3:
            from streamhouse.devservices.seaweedfs import credentials_env, s3_client, start_seaweedfs

            (workdir / "s3").mkdir(parents=True, exist_ok=True)
            weed = start_seaweedfs(workdir / "s3")
            stack.callback(weed.stop)
            env = credentials_env(weed.server)
            s3 = s3_client(weed.server)
            s3.create_bucket(Bucket="bench")
            s3.close()
            flags += ["--object-store", "s3://bench/agent", "--s3-endpoint", weed.server.endpoint]
        agent = start_agent(flags, env=env, log_path=workdir / "agent.log")
        stack.callback(agent.stop)
        client = stack.enter_context(connect(agent.address))
        yield client


def _payload_batch(n: int, size: int) -> pa.RecordBatch:
    """n records of `size` random bytes each (random, so LZ4 cannot flatter the figures)."""
    data = np.random.default_rng(7).integers(0, 256, n * size, dtype=np.uint8).tobytes()
    offsets = pa.array(np.arange(0, (n + 1) * size, size, dtype=np.int32)).buffers()[1]
    values = pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(data)])
    zeros = pa.array(np.zeros(n, dtype=np.int64))
    # Producer-stamped, as the SDK does: the agent then logs the request bytes as they are.
    stamps = pa.array(np.full(n, now_ms(), dtype=np.int64))
    return pa.RecordBatch.from_arrays(
        [zeros, stamps, pa.nulls(n, pa.binary()), values, null_headers(n)], schema=RECORD_SCHEMA
    )


def _percentiles(latencies_s: list[float]) -> tuple[float, float, float]:
    if not latencies_s:
        return (0.0, 0.0, 0.0)
    p = np.percentile(np.asarray(latencies_s) * 1000, [50, 99, 99.9])
    return float(p[0]), float(p[1]), float(p[2])


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


def produce(client: Client, topic: str, args: argparse.Namespace, *, label: str = "produce") -> dict[str, float]:
    """Send args.records records in batches with args.in_flight requests outstanding (paced
    to args.throughput if set). Latency = one request, send to acknowledgement."""
    batch = _payload_batch(args.batch_size, args.record_size)
    requests = -(-args.records // args.batch_size)
    partitions = max(args.partitions, 1)
    latencies: list[float] = []
    lock = threading.Lock()
    interval = args.batch_size / args.throughput if args.throughput else 0.0

    def send(i: int) -> None:
        part = batch if (i + 1) * args.batch_size <= args.records else batch.slice(0, args.records % args.batch_size)
        began = time.perf_counter()
        client.transport.produce(topic, i % partitions, part, args.acks)
        took = time.perf_counter() - began
        with lock:
            latencies.append(took)

    in_flight = max(getattr(args, "in_flight", 1), 1)
    started = time.perf_counter()
    with _progress() as bar, ThreadPoolExecutor(in_flight) as pool:
        task = bar.add_task(label, total=requests)
        pending = []
        for i in range(requests):
            if interval:
                # Open-loop pacing: request i leaves at its slot, whatever the previous did.
                delay = started + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            pending.append(pool.submit(send, i))
            if len(pending) >= in_flight:
                pending.pop(0).result()
                bar.advance(task)
        for f in pending:
            f.result()
            bar.advance(task)
    elapsed = time.perf_counter() - started
    p50, p99, p999 = _percentiles(latencies)
    return {
        "records": args.records,
        "seconds": elapsed,
        "rate": args.records / elapsed,
        "mb_s": args.records * args.record_size / elapsed / 1e6,
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
    }


def consume(client: Client, topic: str, args: argparse.Namespace) -> dict[str, float]:
    """Read every record of the topic from offset 0. The end offsets are known up front, so
    consecutive ranges are fetched `--in-flight` at a time (a consumer's fetch-ahead)."""
    description = client.describe(topic)
    total = sum(description.end_offsets.values())
    step = getattr(args, "fetch_records", 50_000)
    ranges = [(p, o) for p, end in description.end_offsets.items() for o in range(0, end, step)]
    got = nbytes = 0

    def fetch(part: tuple[int, int]) -> pa.Table:
        p, offset = part
        return client.transport.fetch(topic, p, offset, max_records=step, max_wait_ms=0).records

    started = time.perf_counter()
    with _progress() as bar, ThreadPoolExecutor(max(getattr(args, "in_flight", 2), 1)) as pool:
        task = bar.add_task("consume", total=total)
        for records in pool.map(fetch, ranges):
            got += records.num_rows
            nbytes += records.nbytes
            bar.advance(task, records.num_rows)
    elapsed = time.perf_counter() - started
    return {"records": got, "seconds": elapsed, "rate": got / elapsed, "mb_s": nbytes / elapsed / 1e6}


def _topic(client: Client, args: argparse.Namespace) -> str:
    topic = args.topic or f"bench-{uuid.uuid4().hex[:8]}"
    client.create_topic(topic, args.partitions, exist_ok=True)
    return topic


def _report(title: str, args: argparse.Namespace, figures: dict[str, float]) -> None:
    table = Table(title=title)
    for name in ("records", "records/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{int(figures['records']):,}",
        f"{figures['rate']:,.0f}",
        f"{figures['mb_s']:.1f}",
        *(f"{figures[k]:.2f}" if k in figures else "-" for k in ("p50_ms", "p99_ms", "p999_ms")),
    )
    Console().print(table)
    target = "temporary local agent" + (" on SeaweedFS" if args.s3 else "") if not args.bootstrap else args.bootstrap
    print(
        f"{title}: {args.records:,} records of {args.record_size} B, batches of {args.batch_size}, "
        f"fsync={args.fsync}, {target}, {os.cpu_count()} CPUs"
    )


def run_produce(args: argparse.Namespace) -> int:
    with _target(args) as client:
        figures = produce(client, _topic(client, args), args)
    _report(f"produce acks={args.acks}" + (f" at {args.throughput:,} rec/s" if args.throughput else ""), args, figures)
    return 0


def run_consume(args: argparse.Namespace) -> int:
    """Produce the data first (untimed for the consume figure), then read it all back."""
    with _target(args) as client:
        topic = args.topic
        if topic is None:
            fill = argparse.Namespace(**{**vars(args), "acks": "leader", "throughput": 0, "in_flight": 4})
            topic = _topic(client, args)
            produce(client, topic, fill, label="fill")
        figures = consume(client, topic, args)
    _report("consume", args, figures)
    return 0
