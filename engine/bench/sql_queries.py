"""The query half of `streamhouse bench sql` (sql.py fills the topic): the queries run in a fresh
process on the filled engine directory, so the peak RSS reported (the kernel's high-water mark,
VmHWM) is the query engine's own: the embedded agent, DataFusion and the scans, not the fill.

Timed, best of --repeat: count(*), a filtered projection with a LIMIT, the 10-second TUMBLE
count/sum per auction (after a first run, timed apart: it checks the CRCs of the column chunks
DataFusion reads, which the process then remembers, sql/query/native_check.py), a point lookup
by `_offset`; with --vs-duckdb, DuckDB runs the same
aggregation over the very segment files the topic lists (its metadata, not a directory glob:
a merged segment's replaced objects linger for a grace period)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TUMBLE_SQL = (
    "SELECT auction, window_start, count(*) AS bids, sum(price) AS volume "
    "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) "
    "GROUP BY auction, window_start"
)
COUNT_SQL = "SELECT count(*) AS n FROM bid"
# Prices are log-uniform from $1 to $1,000,000 (in cents): about 5 % of bids are over $500,000.
LIMIT_SQL = "SELECT auction, bidder, price, date_time FROM bid WHERE price > 50000000 LIMIT 10"
LOOKUP_SQL = "SELECT * FROM bid WHERE _partition = 0 AND _offset = 12345"
DUCKDB_SQL = (
    "SELECT {auction} AS auction, time_bucket(INTERVAL '10 seconds', {date_time}) AS window_start, "
    "count(*) AS bids, sum({price}) AS volume FROM read_parquet({files}) GROUP BY ALL"
)


def query_phase(engine_dir: str, repeat: int, memory: str, vs_duckdb: bool) -> list[tuple[str, str]]:
    """Run the queries in a spawned process; (measure, result) rows for the report."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        rows: list[tuple[str, str]] = pool.apply(_measure, (engine_dir, repeat, memory, vs_duckdb))
    return rows


def _measure(engine_dir: str, repeat: int, memory: str, vs_duckdb: bool) -> list[tuple[str, str]]:
    from streamhouse.client.client import open_embedded

    rows: list[tuple[str, str]] = []
    with open_embedded(engine_dir) as client:
        client.sql(f"SET query_memory = '{memory}'")
        client.sql(LOOKUP_SQL)  # warm imports and footers
        count, took = _best(repeat, lambda: client.sql(COUNT_SQL))
        rows.append((f"count(*) = {count.column(0)[0].as_py():,}", f"{took:.2f} s"))
        _, took = _best(repeat, lambda: client.sql(LIMIT_SQL))
        rows.append(("filtered projection, LIMIT 10", f"{took * 1000:.1f} ms"))
        started = time.perf_counter()
        client.sql(TUMBLE_SQL)  # the first run also checks the column chunks read (then remembered)
        first = time.perf_counter() - started
        result, ours = _best(repeat, lambda: client.sql(TUMBLE_SQL))
        rows.append((f"TUMBLE 10 s count/sum per auction ({result.num_rows:,} rows)", f"{ours:.2f} s"))
        rows.append(("TUMBLE's first run (with the column chunk checks)", f"{first:.2f} s"))
        _, took = _best(repeat, lambda: client.sql(LOOKUP_SQL))
        rows.append(("point lookup by _partition, _offset", f"{took * 1000:.1f} ms"))
        rows.append((f"peak RSS of the engine process (query_memory {memory})", f"{_peak_rss_mib():,.0f} MiB"))
        files = _segment_files(client, engine_dir) if vs_duckdb else []
    if vs_duckdb:
        theirs, their_rows = _duckdb(files, repeat)
        rows.append((f"same aggregation, DuckDB over the {len(files)} segment files", f"{theirs:.2f} s"))
        rows.append(("StreamHouse ÷ DuckDB", f"{ours / theirs:.2f}×"))
        if their_rows != result.num_rows:
            rows.append(("WARNING: result rows differ", f"{result.num_rows} vs {their_rows}"))
    return rows


def _best(repeat: int, run: Callable[[], Any]) -> tuple[Any, float]:
    times = []
    result = None
    for _ in range(max(repeat, 1)):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return result, min(times)


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _segment_files(client: Any, engine_dir: str) -> list[str]:
    """The bid topic's committed segments as local paths (the embedded store is file://)."""
    service = client.transport.service
    manager = service.manager
    root = Path(engine_dir) / "objects"
    info = client.transport._run(manager.metadata.get_topic("bid"))
    files = []
    for partition in range(info.partitions):
        log = client.transport._run(manager.metadata.list_log("bid", partition))
        files += [str(root / s.object_key) for s in log.segments]
    return files


def _duckdb(files: list[str], repeat: int) -> tuple[float, int]:
    import duckdb
    import pyarrow.parquet as pq

    # The segment's own column names: "v.<name>" before segment layout 2, "<name>" after.
    stored = pq.read_schema(files[0]).names
    column = {n: next(c for c in stored if c in (n, f"v.{n}")) for n in ("auction", "price", "date_time")}
    query = DUCKDB_SQL.format(files=repr(files), **{n: f'"{c}"' for n, c in column.items()})
    con = duckdb.connect()
    result: list[int] = []
    # Arrow out, as our side answers: fetching 3 M Python tuples would time the conversion.
    con.sql(query).to_arrow_table()  # a first run apart, as ours
    _, took = _best(repeat, lambda: result.append(con.sql(query).to_arrow_table().num_rows))
    return took, result[-1]
