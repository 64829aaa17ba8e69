"""`streamhouse bench nexmark` fills person/auction/bid topics from the Nexmark generator;
`streamhouse bench sql` fills a JSON bid topic and times count(*), a filtered projection with a
LIMIT, a 10-second TUMBLE count/sum per auction and a point lookup by `_offset`, with the query
process's peak RSS (and, with --vs-duckdb, DuckDB running the same aggregation over the topic's
own segment files): sql_queries.py."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from streamhouse.api.types import Acks
from streamhouse.client.client import Client
from streamhouse.storage.values.types import sql_type

console = Console(stderr=True)
_CHUNK = 100_000
TUMBLE_SQL = (
    "SELECT auction, window_start, count(*) AS bids, sum(price) AS volume "
    "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
    "GROUP BY auction, window_start"
)
DUCKDB_SQL = (
    "SELECT auction, time_bucket(INTERVAL '10 seconds', date_time) AS window_start, count(*) AS bids, "
    "sum(price) AS volume FROM read_ndjson('{path}', columns = {{auction: 'BIGINT', price: 'BIGINT', "
    "date_time: 'TIMESTAMP'}}) GROUP BY ALL"
)


def ddl(name: str, schema: pa.Schema, partitions: int, event_time: str = "date_time") -> str:
    columns = ", ".join(f"{f.name} {sql_type(f.type)}" for f in schema)
    watermark = (
        f", WATERMARK FOR {event_time} AS {event_time} - INTERVAL '4' SECOND" if event_time in schema.names else ""
    )
    return f"CREATE TOPIC IF NOT EXISTS {name} ({columns}{watermark}) WITH (partitions = {partitions})"


def fill_nexmark(
    client: Client,
    events: int,
    *,
    partitions: int = 4,
    seed: int = 0,
    chunk: int = _CHUNK,
    acks: Acks = "leader",
    **generator: int,
) -> dict[str, int]:
    """Create the three Nexmark topics and produce `events` generated events into them
    (`generator`: more arguments of sql.nexmark.generate, e.g. events_per_second). With
    acks="durable" every chunk is its own segment per partition, whatever the roll timing."""
    from streamhouse.datagen.nexmark import generate

    data = generate(events, seed=seed, **generator)
    tables = {"person": data.person, "auction": data.auction, "bid": data.bid}
    keys = {"person": "id", "auction": "id", "bid": "auction"}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        for name, table in tables.items():
            client.sql(ddl(name, table.schema, partitions))
            task = bar.add_task(f"produce {name}", total=table.num_rows)
            for start in range(0, table.num_rows, chunk):
                rows = table.slice(start, chunk)
                client.produce_table(name, rows, key_column=keys[name], acks=acks)
                bar.advance(task, rows.num_rows)
    return {name: table.num_rows for name, table in tables.items()}


def add_nexmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=1_000_000, help="Nexmark events to generate (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument("--bootstrap", help="agents to fill (default: the embedded engine on --data-dir)")
    parser.add_argument("--data-dir", default="./streamhouse-data", help="embedded engine directory")


def run_nexmark(args: argparse.Namespace) -> int:
    from streamhouse.client.client import connect, open_embedded

    started = time.perf_counter()
    with connect(args.bootstrap) if args.bootstrap else open_embedded(args.data_dir) as client:
        counts = fill_nexmark(client, args.events, partitions=args.partitions, seed=args.seed)
    took = time.perf_counter() - started
    print(f"nexmark: {args.events:,} events ({counts}) in {took:.1f} s, {args.events / took:,.0f} events/s")
    return 0


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=10_000_000, help="bids in the topic")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument(
        "--vs-duckdb", action="store_true", help="time DuckDB on the same records, reading the topic's segment files"
    )
    parser.add_argument(
        "--dir",
        help="working directory, kept (default: a temporary one); a directory an earlier run filled with "
        "--records bids is reused as it is, without filling it again",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the best is reported")
    parser.add_argument("--query-memory", default="1GB", help="the queries' memory cap (SET query_memory; default 1GB)")


def run_sql(args: argparse.Namespace) -> int:
    """Fill the bid topic (every record in a segment at the end), then time the queries in a
    fresh process, so its peak RSS is the query engine's alone (sql_queries.py)."""
    from streamhouse.bench.sql_queries import query_phase

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-sql-"))
    marker = workdir / "filled"  # written once every record is in: "<records> <partitions>"
    filled = f"{args.records} {args.partitions}"
    rows: list[tuple[str, str]] = []
    try:
        if marker.is_file() and marker.read_text().strip() == filled:
            rows.append(("fill", f"reused {workdir}"))
        else:
            if (workdir / "engine").exists():
                shutil.rmtree(workdir / "engine")  # a partial fill, or other --records: start over
            marker.unlink(missing_ok=True)
            started = time.perf_counter()
            _fill_bids(workdir / "engine", args.records, args.partitions)
            marker.write_text(filled)
            rows.append(("fill (produce JSON, segments with typed columns)", f"{time.perf_counter() - started:.1f} s"))
        rows += query_phase(str(workdir / "engine"), args.repeat, args.query_memory, args.vs_duckdb)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"bench sql: {args.records:,} bids, {args.partitions} partitions")
    table.add_column("measure")
    table.add_column("result", justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _fill_bids(path: Path, records: int, partitions: int) -> None:
    """`records` Nexmark bids, generated a million at a time (50 M at once would not fit the
    budget this benchmark checks): chunk k is its own seed, its clock after chunk k-1's."""
    from streamhouse.client.client import open_embedded
    from streamhouse.datagen.nexmark import generate
    from streamhouse.datagen.nexmark_config import DEFAULT_EVENTS_PER_SECOND, DEFAULT_FIRST_EVENT_MS

    per_chunk = min(records, 1_000_000)
    events = per_chunk * 50 // 46 + 50  # bids are 46 of every 50 events
    span_ms = events * 1000 // DEFAULT_EVENTS_PER_SECOND
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console)
    with open_embedded(str(path)) as client, bar:
        task = bar.add_task("produce bid", total=records)
        done = 0
        for k in range(-(-records // per_chunk)):
            bids = generate(events, seed=k, first_event_ms=DEFAULT_FIRST_EVENT_MS + k * span_ms).bid
            bids = bids.slice(0, min(per_chunk, records - done))
            if k == 0:
                client.sql(ddl("bid", bids.schema, partitions))
            for start in range(0, bids.num_rows, _CHUNK):
                last = done + _CHUNK >= records
                # The last chunk durably: the topic's tail is in segments (DuckDB reads them).
                client.produce_table(
                    "bid", bids.slice(start, _CHUNK), key_column="auction", acks="durable" if last else "leader"
                )
                done += min(_CHUNK, bids.num_rows - start)
                bar.update(task, completed=done)
