"""`streamhouse bench storage`: the storage core's figures, printed as one table.

Targets (issue: storage core) are printed beside each figure so a run is self-explaining.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

Row = tuple[str, str, str]


def _rate(value: float | int) -> str:
    return f"{value / 1e6:.2f} M rec/s"


@contextmanager
def _s3_target(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str | None]]:
    """The S3 URL to bench against: the user's, or a temporary SeaweedFS on loopback."""
    if args.s3_url:
        yield args.s3_url, args.s3_endpoint
        return
    from streamhouse.devservices.seaweedfs import credentials_env, s3_client, start_seaweedfs

    weed = start_seaweedfs(workdir)
    try:
        os.environ.update(credentials_env(weed.server))
        client = s3_client(weed.server)
        client.create_bucket(Bucket="bench")
        client.close()
        yield "s3://bench/storage", weed.server.endpoint
    finally:
        weed.stop()


def run_storage_bench(args: argparse.Namespace) -> list[Row]:
    from streamhouse.bench.data import json_bid_batch

    console = Console()
    rows: list[Row] = []
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stages: list[tuple[str, Callable[[], None]]] = []
    batch = json_bid_batch(args.records, key_bytes=args.key_bytes)

    def segment() -> None:
        from streamhouse.bench.segment import bench_segment

        r = bench_segment(pa.Table.from_batches([batch]))
        rows.append(("segment write", _rate(r["encode_records_per_s"]), "≥ 3 M rec/s"))
        rows.append(("segment read (our reader, CRCs verified)", _rate(r["read_records_per_s"]), "≥ 10 M rec/s"))
        rows.append(("segment read (bare pyarrow, in memory)", _rate(r["bare_records_per_s"]), "reference"))
        rows.append(("our read / bare read", f"{r['read_over_bare']:.2f}×", "≤ 1.2×"))
        rows.append(("our decode (in memory) / bare read", f"{r['decode_over_bare']:.2f}×", "reference"))

    def ipc() -> None:
        from streamhouse.bench.ipc import bench_ipc_decode

        for per_batch in (1_000, 10_000, args.records):
            r = bench_ipc_decode(batch, records_per_batch=per_batch)
            rows.append((f"batch IPC decode, {per_batch:,} rec/batch", _rate(r["records_per_s"]), "≥ 20 M rec/s"))

    def wal() -> None:
        from streamhouse.bench.wal import bench_wal_append

        r = asyncio.run(bench_wal_append(workdir, records=args.records, fsync="interval"))
        rows.append(("WAL append, fsync=interval", _rate(int(r["records_per_s"])), "≥ 1 M rec/s"))
        r = asyncio.run(bench_wal_append(workdir, records=args.records, fsync="always", concurrency=8))
        rows.append(
            ("WAL append, fsync=always, 8 appenders", _rate(int(r["records_per_s"])), f"{r['syncs']} fdatasyncs")
        )

    def s3() -> None:
        from streamhouse.bench.s3_range import bench_s3_range_read

        with _s3_target(args, workdir) as (url, endpoint):
            r = asyncio.run(bench_s3_range_read(url, endpoint))
        rows.append(
            (
                f"100 records at a random offset of a {r['segment_mb']} MiB segment on S3",
                f"{r['bytes_fetched'] / 2**20:.2f} MiB fetched in {r['gets']} GETs, {r['ms']} ms",
                "≪ 2 MiB",
            )
        )

    for name, fn in (("segment", segment), ("ipc", ipc), ("wal", wal), ("s3", s3)):
        if name not in args.skip:
            stages.append((name, fn))
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
            overall = bar.add_task("storage bench", total=len(stages))
            for name, fn in stages:
                bar.update(overall, description=f"bench: {name}")
                fn()
                bar.advance(overall)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"streamhouse bench storage — {args.records:,} records, {args.key_bytes}-byte keys")
    for column in ("measure", "result", "goal"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(_machine())
    return rows


def _machine() -> str:
    return (
        f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"{time.strftime('%Y-%m-%d')}"
    )
