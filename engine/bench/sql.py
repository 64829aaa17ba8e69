"""`streamhouse bench nexmark` fills person/auction/bid topics from the Nexmark generator;
`streamhouse bench sql` times a 10-second TUMBLE count/sum per auction over a JSON bid topic
(and, with --vs-duckdb, DuckDB running the same aggregation over the same records as JSONL),
plus a point lookup by `_offset`."""

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
    client: Client, events: int, *, partitions: int = 4, seed: int = 0, chunk: int = _CHUNK, **generator: int
) -> dict[str, int]:
    """Create the three Nexmark topics and produce `events` generated events into them
    (`generator`: more arguments of sql.nexmark.generate, e.g. events_per_second)."""
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
                client.produce_table(name, rows, key_column=keys[name])
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
    parser.add_argument("--vs-duckdb", action="store_true", help="time DuckDB on the same records as JSONL")
    parser.add_argument("--dir", help="working directory (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the best is reported")


def run_sql(args: argparse.Namespace) -> int:
    from streamhouse.client.client import open_embedded
    from streamhouse.datagen.nexmark import generate

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-sql-"))
    rows: list[tuple[str, str]] = []
    try:
        # Bids only: generate 50/46 as many events so the bid topic holds about --records rows.
        data = generate(args.records * 50 // 46 + 50)
        bids = data.bid.slice(0, args.records)
        with open_embedded(str(workdir / "engine")) as client:
            client.sql(ddl("bid", bids.schema, args.partitions))
            started = time.perf_counter()
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
                task = bar.add_task("produce bid", total=bids.num_rows)
                for start in range(0, bids.num_rows, _CHUNK):
                    client.produce_table("bid", bids.slice(start, _CHUNK), key_column="auction")
                    bar.advance(task, min(_CHUNK, bids.num_rows - start))
            rows.append(("fill (produce JSON, segments with typed columns)", f"{time.perf_counter() - started:.1f} s"))
            client.sql("SELECT count(*) FROM bid WHERE _offset = 0")  # flush nothing; warm imports
            ours = _best(args.repeat, lambda: client.sql(TUMBLE_SQL))
            rows.append(("TUMBLE 10 s count/sum per auction (StreamHouse)", f"{ours:.2f} s"))
            lookup = _best(
                args.repeat, lambda: client.sql("SELECT * FROM bid WHERE _partition = 0 AND _offset = 12345")
            )
            rows.append(("point lookup by _partition, _offset", f"{lookup * 1000:.1f} ms"))
            result = client.sql(TUMBLE_SQL)
        if args.vs_duckdb:
            theirs, their_rows = _duckdb(bids, workdir)
            rows.append(("same aggregation in DuckDB over JSONL", f"{theirs:.2f} s"))
            rows.append(("StreamHouse ÷ DuckDB", f"{ours / theirs:.2f}×"))
            if their_rows != result.num_rows:
                rows.append(("WARNING: result rows differ", f"{result.num_rows} vs {their_rows}"))
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


def _best(repeat: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(max(repeat, 1)):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _duckdb(bids: pa.Table, workdir: Path) -> tuple[float, int]:
    import duckdb

    from streamhouse.api.values import batch_from_table
    from streamhouse.storage.values.json_decode import newline_terminated

    path = workdir / "bids.jsonl"
    with open(path, "wb") as out:
        for start in range(0, bids.num_rows, _CHUNK):
            values = batch_from_table(bids.slice(start, _CHUNK)).column(3)  # the JSON the topic holds
            out.write(newline_terminated(values))
    con = duckdb.connect()
    query = DUCKDB_SQL.format(path=path)
    result: list[int] = []
    best = _best(3, lambda: result.append(len(con.execute(query).fetchall())))
    return best, result[-1]
