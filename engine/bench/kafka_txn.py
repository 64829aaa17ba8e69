"""`streamhouse bench kafka-txn`: the cost of Kafka transactions (issue 18). For StreamHouse and,
in the same run, a real Apache Kafka broker (devservices/kafka_broker.py), through the same
client (confluent-kafka / librdkafka, 100-byte values, acks=all, idempotent): produce
throughput without transactions, then with transactions of 100 and of 10,000 records each
(begin, produce, commit, in a loop), and the broker process's CPU seconds per million records.

A transaction's commit waits for every record of it to be acknowledged (acks=all: for us, in a
committed segment) and then for EndTxn, so small transactions pay a commit round each; the
table reports the rate of each run and its ratio to the same broker's non-transactional one.
The brokers take turns per run, as in `bench kafka`, so the box's load falls on both."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streamhouse.bench.kafka import (
    THROUGHPUT_CONFIG,
    Broker,
    KafkaBenchError,
    _create_topic,
    _value,
    process_cpu_s,
    start_brokers,
)

console = Console(stderr=True)
SIZES = (0, 100, 10_000)  # records per transaction; 0: no transactions (idempotent, acks=all)


@dataclass(frozen=True)
class TxnFigures:
    broker: str
    per_txn: int
    rate: float  # records/s
    cpu_s_per_m: float | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=100_000, help="records per run (default 100,000)")
    parser.add_argument("--record-size", type=int, default=100, help="value bytes per record (default 100)")
    parser.add_argument("--no-reference", action="store_true", help="StreamHouse only: do not start a Kafka broker")
    parser.add_argument("--kafka-version", default=None, help="Apache Kafka broker version (default 4.4.0)")
    parser.add_argument(
        "--fsync", default="interval", choices=["always", "interval", "never"], help="our WAL fsync (default interval)"
    )
    parser.add_argument("--dir", help="working directory (default: a temp dir, removed after)")


def produce(bootstrap: str, topic: str, records: int, size: int, per_txn: int) -> float:
    """records/s for `records` records, in transactions of `per_txn` (0: none) until all are acknowledged
    (one more record goes first, untimed)."""
    from confluent_kafka import Producer

    errors: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    config: dict[str, Any] = {**THROUGHPUT_CONFIG, "bootstrap.servers": bootstrap, "acks": "all",
                              "enable.idempotence": True, "compression.type": "none",
                              "message.timeout.ms": 120_000, "on_delivery": report,
                              "delivery.report.only.error": True}  # fmt: skip
    if per_txn:
        config["transactional.id"] = f"bench-{uuid.uuid4().hex[:8]}"
        config["transaction.timeout.ms"] = 120_000  # librdkafka: at least message.timeout.ms
    producer = Producer(config)
    value = _value(size)
    producer.list_topics(topic, timeout=30)
    # Untimed: the producer id (and for transactions the coordinator) is fetched and the first
    # batch acknowledged before the clock starts, so each run measures its steady state.
    if per_txn:
        producer.init_transactions(60)
        producer.begin_transaction()
    producer.produce(topic, value, partition=0)
    if per_txn:
        producer.commit_transaction(60)
    producer.flush(60)
    started = time.perf_counter()
    sent = 0
    # One call per record is the client's own API, the same for both brokers.
    while sent < records:
        batch = min(per_txn or records, records - sent)
        if per_txn:
            producer.begin_transaction()
        for _ in range(batch):
            try:
                producer.produce(topic, value, partition=0)
            except BufferError:
                producer.poll(0.05)
                producer.produce(topic, value, partition=0)
        if per_txn:
            producer.commit_transaction(120)
        sent += batch
    left = producer.flush(180)
    elapsed = time.perf_counter() - started
    if left or errors:
        raise KafkaBenchError(f"produce to {topic} ({per_txn} per transaction): {left} left, errors {errors[:3]}")
    return records / elapsed


def bench(brokers: list[Broker], args: argparse.Namespace) -> list[TxnFigures]:
    out = []
    for i, per_txn in enumerate(SIZES):
        for broker in brokers if i % 2 == 0 else brokers[::-1]:
            topic = f"bench-txn{per_txn}-{uuid.uuid4().hex[:6]}"
            _create_topic(broker.bootstrap, topic)
            console.print(f"{broker.name}: {args.records:,} records, {per_txn or 'no'} per transaction")
            before = process_cpu_s(broker.pid)
            rate = produce(broker.bootstrap, topic, args.records, args.record_size, per_txn)
            after = process_cpu_s(broker.pid)
            cpu = None if before is None or after is None else (after - before) * 1e6 / args.records
            out.append(TxnFigures(broker.name, per_txn, rate, cpu))
    return out


def report(figures: list[TxnFigures], args: argparse.Namespace, version: str | None) -> None:
    table = Table(title=f"Kafka transactions, {args.records:,} records of {args.record_size} B per run, "
                        "confluent-kafka, acks=all, idempotent")  # fmt: skip
    for column in ("broker", "records per transaction", "produce rec/s", "vs no transactions", "CPU s/M rec"):
        table.add_column(column, justify="right")
    plain = {f.broker: f.rate for f in figures if f.per_txn == 0}
    for f in sorted(figures, key=lambda f: (f.broker, f.per_txn)):
        cpu = "-" if f.cpu_s_per_m is None else f"{f.cpu_s_per_m:.2f}"
        table.add_row(f.broker, f"{f.per_txn:,}" if f.per_txn else "none", f"{f.rate:,.0f}",
                      f"{f.rate / plain[f.broker]:.2f}x", cpu)  # fmt: skip
    Console(width=160).print(table)
    load = os.getloadavg()
    where = f"Apache Kafka {version} (KRaft, one node) and " if version else ""
    print(f"{where}a temporary StreamHouse agent (fsync={args.fsync}) on loopback; {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.records <= 0 or args.record_size <= 0:
        raise KafkaBenchError("--records and --record-size must be positive")
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-kafka-txn-"))
    with ExitStack() as stack:
        if not args.dir:
            stack.callback(shutil.rmtree, workdir, True)
        brokers, version = start_brokers(stack, workdir, args)
        figures = bench(brokers, args)
    report(figures, args, version)
    return 0
