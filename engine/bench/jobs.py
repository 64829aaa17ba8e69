"""`streamhouse bench jobs`: how fast continuous queries process events (the window operator
fed Nexmark bids in micro-batches, as a job runner feeds it) and their peak memory, plus the
end-to-end latency from producing the event that closes a window to its result being
readable in the view's topic (embedded engine, default settings)."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from streamhouse.datagen.nexmark_queries import QUERIES
from streamhouse.sql.query.catalog import SYSTEM_FIELDS

TUMBLE = (
    "SELECT window_start, window_end, auction, count(*) AS bids, sum(price) AS volume "
    "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
    "GROUP BY window_start, window_end, auction"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10_000_000, help="bids to process")
    parser.add_argument("--batch", type=int, default=50_000, help="rows per micro-batch")
    parser.add_argument("--latency-windows", type=int, default=20, help="windows timed end to end")


def _source(bids: pa.Table) -> pa.Table:
    """Bids as the job reads them: system columns first, as a topic's SQL table has them."""
    n = bids.num_rows
    system: list[Any] = [
        pa.array(np.zeros(n, dtype=np.int32)),
        pa.array(np.arange(n, dtype=np.int64)),
        pa.array(np.zeros(n, dtype=np.int64)).cast(pa.timestamp("ms")).cast(SYSTEM_FIELDS[2].type),
        pa.nulls(n, pa.binary()),
    ]
    return pa.Table.from_arrays(system + list(bids.columns), schema=pa.schema([*SYSTEM_FIELDS, *bids.schema]))


def _throughput(name: str, sql: str, source: pa.Table, batch: int) -> tuple[str, float, float]:
    from streamhouse.sql.streaming.operator import WindowOperator
    from streamhouse.sql.streaming.plan import plan_job

    plan = plan_job(sql, lambda _: source.schema, lambda _: ("date_time", 4_000))
    operator = WindowOperator(plan, None, partitions=(0,))
    started = time.perf_counter()
    out = 0
    for start in range(0, source.num_rows, batch):
        out += operator.process(0, source.slice(start, batch), 0).output.num_rows
    out += operator.flush().output.num_rows
    took = time.perf_counter() - started
    return name, source.num_rows / took, out


def _join_throughput(data: Any, batch: int, query: str) -> tuple[str, float, float, float, int, int]:
    """A Nexmark join as its job runs it: persons and auctions in rounds of about `batch` rows
    (both topics, cut at the same point of the stream). q8 is a window join (every window
    joined when the watermark passes its end); q3 a regular join under a state TTL of an hour
    (an event-time interval join: each match once, when its second row arrives). Returns (name,
    rows/s wall, rows/s CPU, rows out, peak state rows, peak state bytes)."""
    from streamhouse.sql.streaming.continuous import plan_continuous
    from streamhouse.sql.streaming.interval_join import IntervalJoinOperator
    from streamhouse.sql.streaming.interval_plan import IntervalPlan
    from streamhouse.sql.streaming.join import JoinOperator
    from streamhouse.sql.streaming.join_plan import JoinPlan

    tables = {"person": _source(data.person), "auction": _source(data.auction)}
    plan = plan_continuous(
        QUERIES[query], lambda name: tables[name].schema, lambda _: ("date_time", 4_000), state_ttl_ms=3_600_000
    )
    operator: JoinOperator | IntervalJoinOperator
    if isinstance(plan, JoinPlan):
        operator = JoinOperator(plan, None, slots=((0, 0), (1, 0)))
        name = "Nexmark q8 (window join persons x auctions, TUMBLE 10 s)"
    else:
        assert isinstance(plan, IntervalPlan)
        operator = IntervalJoinOperator(plan, None, slots=((0, 0), (1, 0)))
        name = "Nexmark q3 (regular join auctions x persons, state TTL 1 h)"
    sides = [tables[topic] for topic in plan.topics]
    total = sum(t.num_rows for t in sides)
    rounds = max(1, total // batch)
    peak_rows = peak_bytes = out = 0
    started, cpu = time.perf_counter(), time.process_time()
    for r in range(rounds):
        cut = {}
        for slot, table in enumerate(sides):
            low, high = r * table.num_rows // rounds, (r + 1) * table.num_rows // rounds
            cut[slot] = table.slice(low, high - low)
        out += operator.process_round(cut, 0).output.num_rows
        peak_rows = max(peak_rows, operator.state_rows)
        peak_bytes = max(peak_bytes, operator.state_bytes)
    out += operator.flush().output.num_rows
    took, cpu_took = time.perf_counter() - started, time.process_time() - cpu
    return name, total / took, total / cpu_took, out, peak_rows, peak_bytes


def _latency(windows: int) -> list[float]:
    """Produce one event per second of event time; each window's result is timed from the
    produce that closes it (watermark passes its end) to the row being readable."""
    from streamhouse.client.client import open_embedded  # the SDK itself: engine code never imports the facade

    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, open_embedded(str(Path(tmp) / "d")) as sh:
        sh.sql(
            "CREATE TOPIC ev (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '0' SECOND) "
            "WITH (partitions = 1)"
        )
        sh.sql(
            "CREATE MATERIALIZED VIEW per_second AS SELECT window_start, window_end, count(*) AS n "
            "FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end"
        )
        t0 = 1_700_000_000_000
        sh.produce("ev", {"k": 0, "ts": t0})
        for w in range(1, windows + 1):
            sent = time.perf_counter()
            sh.produce("ev", {"k": w, "ts": t0 + w * 1000})  # closes window w - 1
            while sh.sql("SELECT count(*) AS c FROM per_second").column("c")[0].as_py() < w:
                time.sleep(0.005)
            samples.append(time.perf_counter() - sent)
    return samples


def run(args: argparse.Namespace) -> int:
    from streamhouse.datagen.nexmark import generate

    data = generate(args.events * 50 // 46 + 50)
    bids = data.bid.slice(0, args.events)
    source = _source(bids)
    rows = [
        _throughput("TUMBLE 10 s count/sum per auction", TUMBLE, source, args.batch),
        _throughput("Nexmark q5 (HOP 2 s / 10 s)", QUERIES["q5"], source, args.batch),
        _throughput("Nexmark q7 (TUMBLE + max join)", QUERIES["q7"], source, args.batch),
    ]
    joins = [_join_throughput(data, args.batch, query) for query in ("q8", "q3")]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    latency = _latency(args.latency_windows)
    table = Table(
        title=f"bench jobs: {args.events:,} bids, micro-batches of {args.batch:,}",
        # What a figure needs to be quoted: the command, when, and on what (CPUs, load).
        caption=f"{' '.join(sys.argv)} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}",
    )
    table.add_column("measure")
    table.add_column("result", justify="right")
    for name, rate, out in rows:
        table.add_row(name, f"{rate / 1e6:.2f} M events/s ({int(out):,} rows out)")
    for join_name, join_rate, join_cpu_rate, join_out, join_rows, join_bytes in joins:
        table.add_row(
            join_name,
            f"{join_rate / 1e6:.2f} M events/s wall, {join_cpu_rate / 1e6:.2f} M/s per CPU second "
            f"(person + auction rows; {int(join_out):,} rows out)",
        )
        table.add_row(
            f"{join_name.split(' (')[0]} peak join state (both sides)",
            f"{join_rows:,} rows, {join_bytes / 2**20:,.1f} MiB",
        )
    table.add_row("peak memory (process RSS, input table included)", f"{peak_mib:,.0f} MiB")
    p50, p99 = np.percentile(np.asarray(latency) * 1000, [50, 99])
    table.add_row("window result visible after the closing event, p50 / p99", f"{p50:.0f} / {p99:.0f} ms")
    Console().print(table)
    return 0
