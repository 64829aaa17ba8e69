"""`streamhouse bench kafka`: StreamHouse's Kafka listener side by side with a real Apache
Kafka broker, on the same box, through the same client (confluent-kafka / librdkafka, 100-byte
values, no compression). For each broker and for acks=1 and acks=all: produce throughput,
consume throughput (the topic just produced, read from offset 0), and p50/p99 produce latency
at a paced 10 k rec/s. acks=all is StreamHouse's acks=durable (the records are in a committed
segment on the object store); acks=1 is acks=leader (in the leader's WAL).

Both brokers run for the whole bench and take turns: `--rounds` produce runs each per acks
level (who goes first alternates), so a change in the shared box's load between runs falls
on both, and the goals are counted per round as well as on the medians. Each produce run
also reports the broker process's CPU seconds per million records (/proc), which the load of
other processes moves far less than rec/s."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from streamhouse.devservices.ports import free_port
from streamhouse.storage.errors import StreamHouseError

console = Console(stderr=True)
OURS = {"1": "leader", "all": "durable"}  # Kafka acks → StreamHouse acks
WARMUP_RECORDS = 300_000
# Throughput runs let librdkafka build large batches (as kafka-producer-perf-test tuning
# would); the latency run keeps its defaults (linger.ms=5) so it measures what an
# application with an untuned client sees. The same settings go to both brokers.
THROUGHPUT_CONFIG: dict[str, Any] = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}


class KafkaBenchError(StreamHouseError):
    """A bench run could not complete: a delivery failed, or a consumer stopped short."""


@dataclass(frozen=True)
class Figures:
    broker: str
    acks: str
    produce_rate: float
    consume_rate: float
    p50_ms: float
    p99_ms: float
    # The broker process's CPU seconds (user + system, all its threads) per million records
    # produced: steadier than rec/s on a shared box, where neighbours' load moves the clock.
    produce_cpu_s_per_m: float | None = None
    produce_runs: tuple[float, ...] = ()  # rec/s of each produce run, in round order


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=1_000_000, help="records per produce run (default 1,000,000)")
    parser.add_argument("--record-size", type=int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--latency-rate", type=int, default=10_000, help="paced rate of the latency run (rec/s)")
    parser.add_argument("--latency-seconds", type=float, default=5.0, help="length of the latency run (default 5 s)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="produce runs per broker and acks, taking turns (default 3)"
    )
    parser.add_argument("--no-reference", action="store_true", help="StreamHouse only: do not start a Kafka broker")
    parser.add_argument(
        "--acks", default="both", choices=["1", "all", "both"], help="acks levels to measure (default both)"
    )
    parser.add_argument("--kafka-version", default=None, help="Apache Kafka broker version (default 4.4.0)")
    parser.add_argument(
        "--fsync", default="interval", choices=["always", "interval", "never"], help="our WAL fsync (default interval)"
    )
    parser.add_argument("--dir", help="working directory (default: a temp dir, removed after)")


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc), None where unknown."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _streamhouse(workdir: Path, fsync: str) -> Iterator[tuple[str, int]]:
    """A temporary agent with its Kafka listener on loopback; yields its bootstrap address
    and process id."""
    from streamhouse.devservices.agent import start_agent

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    flags = ["--data-dir", str(workdir / "agent"), "--fsync", fsync]
    flags += ["--kafka-port", str(port), "--kafka-advertised", f"127.0.0.1:{port}"]
    agent = start_agent(flags, log_path=workdir / "agent.log")
    try:
        yield f"127.0.0.1:{port}", agent.pid
    finally:
        agent.stop()


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    for future in admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=30).values():
        future.result(timeout=60)


def _value(size: int) -> bytes:
    # Random bytes: no codec is on, but random keeps any compression from flattering anyone.
    return np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()


def _producer(bootstrap: str, acks: str, errors: list[str], extra: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    # max.in.flight 5 is the Java client's default (librdkafka's is 1,000,000): a bounded
    # pipeline lets batches grow while earlier requests wait for their acknowledgement.
    config = {"bootstrap.servers": bootstrap, "acks": acks, "compression.type": "none",
              "enable.idempotence": False, "max.in.flight.requests.per.connection": 5,
              "message.timeout.ms": 120_000, "on_delivery": report, **extra}  # fmt: skip
    return Producer(config)


def produce_throughput(bootstrap: str, topic: str, acks: str, records: int, size: int) -> float:
    """records/s from the first send until every record is acknowledged."""
    errors: list[str] = []
    producer = _producer(bootstrap, acks, errors, {**THROUGHPUT_CONFIG, "delivery.report.only.error": True})
    value = _value(size)
    send = producer.produce
    producer.list_topics(topic, timeout=30)  # connected and the leader known before the clock starts
    started = time.perf_counter()
    # The client's own API is one call per record; this loop is the client under test, the
    # same for both brokers, not a StreamHouse hot path.
    for _ in range(records):
        try:
            send(topic, value, partition=0)
        except BufferError:  # the local queue is full: wait for acknowledgements, then retry
            producer.poll(0.05)
            send(topic, value, partition=0)
    left = producer.flush(180)
    elapsed = time.perf_counter() - started
    if left or errors:
        raise KafkaBenchError(f"produce to {topic} acks={acks}: {left} unacknowledged, errors {errors[:3]}")
    return records / elapsed


def consume_throughput(bootstrap: str, topic: str, records: int) -> float:
    """records/s reading the topic from offset 0 until `records` records have arrived."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "enable.partition.eof": False})  # fmt: skip
    got = 0
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        started = time.perf_counter()
        deadline = time.monotonic() + 300
        while got < records and time.monotonic() < deadline:
            batch = consumer.consume(10_000, 1.0)
            for msg in batch[-1:]:
                if msg.error() is not None:
                    raise KafkaBenchError(f"consume {topic}: {msg.error()}")
            got += len(batch)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    if got < records:
        raise KafkaBenchError(f"consume {topic}: {got:,} of {records:,} records within 300 s")
    return got / elapsed


def produce_latency(bootstrap: str, topic: str, acks: str, rate: int, seconds: float, size: int) -> tuple[float, float]:
    """p50/p99 ms from produce() to acknowledgement (librdkafka's own Message.latency()),
    sending open-loop at `rate` rec/s: each millisecond sends what is due by then."""
    errors: list[str] = []
    latencies: list[float] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            latencies.append(msg.latency())

    producer = _producer(bootstrap, acks, errors, {"on_delivery": report})
    value = _value(size)
    producer.list_topics(topic, timeout=30)
    total = int(rate * seconds)
    sent = 0
    started = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        for _ in range(due - sent):
            producer.produce(topic, value, partition=0)
        sent = due
        producer.poll(0)
        time.sleep(0.001)
    if producer.flush(120) or errors:
        raise KafkaBenchError(f"latency run on {topic} acks={acks}: errors {errors[:3]}")
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    return float(p50), float(p99)


@dataclass(frozen=True)
class Broker:
    name: str
    bootstrap: str
    pid: int | None  # the broker's process, for its CPU time


def warm_up(broker: Broker, args: argparse.Namespace) -> None:
    """Untimed: a JVM's first requests run interpreted until the JIT compiles the broker's
    hot paths, so without it Kafka's first run would be measured cold."""
    warm = f"bench-warmup-{uuid.uuid4().hex[:6]}"
    _create_topic(broker.bootstrap, warm)
    console.print(f"{broker.name}: warm-up")
    produce_throughput(broker.bootstrap, warm, "1", min(args.records, WARMUP_RECORDS), args.record_size)
    consume_throughput(broker.bootstrap, warm, min(args.records, WARMUP_RECORDS))


def produce_rounds(
    brokers: list[Broker], acks: str, args: argparse.Namespace
) -> dict[str, list[tuple[float, float | None, str]]]:
    """`args.rounds` produce runs per broker on fresh topics, the brokers taking turns (and
    turns about who goes first), so a change in the shared box's load between runs falls on
    both alike. Per broker: (rec/s, CPU s per M records, topic) of each run."""
    runs: dict[str, list[tuple[float, float | None, str]]] = {b.name: [] for b in brokers}
    for round_ in range(args.rounds):
        for broker in brokers if round_ % 2 == 0 else brokers[::-1]:
            topic = f"bench-acks{acks}-{uuid.uuid4().hex[:6]}"
            _create_topic(broker.bootstrap, topic)
            console.print(f"{broker.name} acks={acks}: produce {args.records:,} records (run {round_ + 1})")
            before = process_cpu_s(broker.pid)
            rate = produce_throughput(broker.bootstrap, topic, acks, args.records, args.record_size)
            after = process_cpu_s(broker.pid)
            cpu = None if before is None or after is None else (after - before) * 1e6 / args.records
            runs[broker.name].append((rate, cpu, topic))
            console.print(f"  {rate:,.0f} rec/s" + ("" if cpu is None else f", {cpu:.3f} CPU s/M rec"))
    return runs


def bench_brokers(brokers: list[Broker], args: argparse.Namespace) -> list[Figures]:
    for broker in brokers:
        warm_up(broker, args)
    out = []
    for acks in ("1", "all") if args.acks == "both" else (args.acks,):
        runs = produce_rounds(brokers, acks, args)
        for broker in brokers:
            rates = [rate for rate, _, _ in runs[broker.name]]
            cpus = [cpu for _, cpu, _ in runs[broker.name] if cpu is not None]
            console.print(f"{broker.name} acks={acks}: consume")
            consumed = consume_throughput(broker.bootstrap, runs[broker.name][-1][2], args.records)
            console.print(f"{broker.name} acks={acks}: latency at {args.latency_rate:,} rec/s")
            latency_topic = f"bench-acks{acks}-{uuid.uuid4().hex[:6]}-latency"
            _create_topic(broker.bootstrap, latency_topic)
            p50, p99 = produce_latency(
                broker.bootstrap, latency_topic, acks, args.latency_rate, args.latency_seconds, args.record_size
            )
            cpu = float(np.median(cpus)) if cpus else None
            out.append(Figures(broker.name, acks, float(np.median(rates)), consumed, p50, p99, cpu, tuple(rates)))
    return out


def _report(figures: list[Figures], args: argparse.Namespace, version: str | None) -> None:
    title = (f"Kafka protocol, {args.records:,} records of {args.record_size} B, confluent-kafka client; "
             f"produce: median of {args.rounds} run(s) per broker, brokers taking turns")  # fmt: skip
    table = Table(title=title)
    for column in ("broker", "acks", "produce rec/s", "produce MB/s", "consume rec/s",
                   f"p50 ms @{args.latency_rate:,}/s", f"p99 ms @{args.latency_rate:,}/s", "produce runs, M rec/s",
                   "CPU s/M rec"):  # fmt: skip
        table.add_column(column, justify="right")
    for f in figures:
        acks = f"{f.acks} (= {OURS[f.acks]})" if f.broker == "StreamHouse" else f.acks
        mb_s = f.produce_rate * args.record_size / 1e6
        runs = " ".join(f"{r / 1e6:.2f}" for r in f.produce_runs)
        cpu = "-" if f.produce_cpu_s_per_m is None else f"{f.produce_cpu_s_per_m:.2f}"
        table.add_row(f.broker, acks, f"{f.produce_rate:,.0f}", f"{mb_s:.1f}", f"{f.consume_rate:,.0f}",
                      f"{f.p50_ms:.2f}", f"{f.p99_ms:.2f}", runs, cpu)  # fmt: skip
    Console(width=160).print(table)
    print("acks=all is StreamHouse acks=durable (in a committed segment); acks=1 is acks=leader (in the leader's WAL)")
    print("CPU s/M rec: the broker process's CPU seconds (all threads, user + system) per million records produced")
    ours = {f.acks: f for f in figures if f.broker == "StreamHouse"}
    theirs = {f.acks: f for f in figures if f.broker != "StreamHouse"}
    for acks, f in ours.items():
        n_runs = len(f.produce_runs)
        over_1m = sum(r >= 1e6 for r in f.produce_runs)
        goal = f"acks={acks}: produce {f.produce_rate / 1e6:.2f} M rec/s median "
        goal += f"(goal >= 1 M: {_met(f.produce_rate >= 1e6)}; {over_1m} of {n_runs} runs)"
        if acks in theirs:
            k = theirs[acks]
            paired = sum(a >= b for a, b in zip(f.produce_runs, k.produce_runs, strict=True))
            goal += f", {f.produce_rate / k.produce_rate:.2f}x Kafka's produce "
            goal += f"({_met(f.produce_rate >= k.produce_rate)}; at least Kafka's in {paired} of {n_runs} rounds)"
            goal += (
                f", {f.consume_rate / k.consume_rate:.2f}x Kafka's consume ({_met(f.consume_rate >= k.consume_rate)})"
            )
        print(goal)
    load = os.getloadavg()
    where = f"Apache Kafka {version} (KRaft, one node) and " if version else ""
    print(f"{where}a temporary StreamHouse agent (fsync={args.fsync}) on loopback; {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def start_brokers(stack: ExitStack, workdir: Path, args: argparse.Namespace) -> tuple[list[Broker], str | None]:
    """A temporary StreamHouse agent and, unless --no-reference, a real Kafka broker, both
    stopped by `stack`; returns them and the Kafka version (None without one)."""
    bootstrap, pid = stack.enter_context(_streamhouse(workdir / "streamhouse", args.fsync))
    brokers = [Broker("StreamHouse", bootstrap, pid)]
    if args.no_reference:
        return brokers, None
    from streamhouse.devservices.kafka_broker import KAFKA_VERSION, start_kafka_broker

    version: str = args.kafka_version or KAFKA_VERSION
    console.print(f"starting Apache Kafka {version} (jars from Maven Central on first use)")
    broker = start_kafka_broker(workdir / "kafka", version=version)
    stack.callback(broker.stop)
    brokers.append(Broker(f"Kafka {version}", broker.bootstrap, broker.proc.pid))
    return brokers, version


def run(args: argparse.Namespace) -> int:
    if args.records <= 0 or args.record_size <= 0 or args.latency_rate <= 0 or args.latency_seconds <= 0:
        raise KafkaBenchError("--records, --record-size, --latency-rate and --latency-seconds must be positive")
    if args.rounds <= 0:
        raise KafkaBenchError("--rounds must be positive")
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-kafka-"))
    with ExitStack() as stack:
        if not args.dir:
            stack.callback(shutil.rmtree, workdir, True)
        # Both brokers run for the whole bench so their produce runs can take turns; each one
        # idles while the other is measured.
        brokers, version = start_brokers(stack, workdir, args)
        figures = bench_brokers(brokers, args)
    _report(figures, args, version)
    return 0
