"""`streamhouse bench compaction`: small-segment merging (docs/DESIGN.md §4).

Two measures of merging --segments small segments (default 1,000 of 10 records, what 1,000
acks=durable produces leave):
- merge: storage/segment/merge.py alone, in memory (verify + decode + concatenate + encode);
- merger: engine/agent/merger.py end to end on real stores — download, merge, upload, the swap
  transaction — and a full read of the partition before and after (cold caches), the reason
  merging exists. Stores: SQLite + a local directory by default; --s3-url/--s3-endpoint (or a
  temporary SeaweedFS when `weed` is on PATH, with --s3) and --metadata for PostgreSQL.
Log compaction (latest value per key) is not built yet, so it has no figures here.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from streamhouse.agent.leases import Leases
from streamhouse.agent.merger import Merger, MergeSettings
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.writer import segment_key
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment.format import EncodedSegment, encode_segment, parse_footer
from streamhouse.storage.segment.merge import merge_segments

console = Console(stderr=True)
TOPIC = "bench-merge"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segments", type=int, default=1_000, help="small segments to merge (default 1,000)")
    parser.add_argument("--records", type=int, default=10, help="records per small segment (default 10)")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size (default 100)")
    parser.add_argument("--metadata", default=None, help="metadata store URL (default: SQLite in a temp dir)")
    parser.add_argument("--s3-url", default=None, help="s3://bucket/prefix (default: a local directory)")
    parser.add_argument("--s3-endpoint", default=None, help="S3 endpoint for --s3-url")
    parser.add_argument("--s3", action="store_true", help="a temporary SeaweedFS (needs `weed` on PATH)")
    parser.add_argument("--dir", default=None, help="working directory (default: a temp dir)")


def _small_segments(args: argparse.Namespace) -> list[EncodedSegment]:
    n, out = args.records, []
    rng = np.random.default_rng(7)
    for i in range(args.segments):
        # Random bytes: compression must not flatter the bytes moved.
        raw = rng.bytes(n * args.value_bytes)
        values: list[bytes | None] = [raw[j * args.value_bytes : (j + 1) * args.value_bytes] for j in range(n)]
        keys: list[bytes | None] = [f"key-{(i * n + j) % 1000}".encode() for j in range(n)]
        batch = make_batch(values, keys=keys, timestamps=[1_700_000_000_000 + i] * n, base_offset=i * n)
        out.append(encode_segment(pa.Table.from_batches([batch]), topic=TOPIC, partition=0, epoch=1))
    return out


def _rate(records: int, segments: int, seconds: float) -> str:
    # Small segments cost per segment (a Parquet open each), not per record: both rates.
    return f"{records / seconds / 1e3:.1f} k rec/s, {segments / seconds:,.0f} segments/s"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sh-bench-merge-"))
    rows: list[tuple[str, str]] = []
    records = args.segments * args.records
    segments = _small_segments(args)
    size_in = sum(s.size_bytes for s in segments)
    inputs = [
        (parse_footer(s.data[-s.footer_length :], size_bytes=s.size_bytes, footer_crc=s.footer_crc, source="b"), s.data)
        for s in segments
    ]
    started = time.perf_counter()
    merged = merge_segments(inputs, epoch=1)
    took = time.perf_counter() - started
    rows += [
        ("merge (in memory): time", f"{took * 1000:.0f} ms"),
        ("merge (in memory): rate", _rate(records, args.segments, took)),
        ("merge: bytes in → out", f"{_mb(size_in)} → {_mb(merged.size_bytes)}"),
    ]
    with ExitStack() as stack:
        try:
            url, endpoint = args.s3_url, args.s3_endpoint
            if args.s3 and not url:
                from streamhouse.bench.storage import _s3_target

                url, endpoint = stack.enter_context(_s3_target(argparse.Namespace(s3_url=None), workdir))
            url = url or f"file://{workdir / 'objects'}"
            rows += asyncio.run(_through_the_merger(args, segments, url, endpoint, workdir))
        finally:
            if not args.dir:
                shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"streamhouse bench compaction — {args.segments:,} segments × {args.records} records")
    table.add_column("measure")
    table.add_column("result")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


async def _through_the_merger(
    args: argparse.Namespace, segments: list[EncodedSegment], url: str, endpoint: str | None, workdir: Path
) -> list[tuple[str, str]]:
    metadata = await open_metadata_store(args.metadata or f"sqlite:///{workdir / 'meta.db'}")
    store = open_object_store(url, s3_endpoint=endpoint)
    try:
        with_topic = [t.name for t in await metadata.list_topics()]
        if TOPIC in with_topic:
            await metadata.delete_topic(TOPIC)
        await metadata.create_topic(TOPIC, 1)
        lease = await metadata.acquire_lease(partition_resource(TOPIC, 0), "bench@writer", 600_000)
        for seg in segments:
            key = segment_key(TOPIC, 0, seg.base_offset, lease.epoch)
            await store.put(key, seg.data, if_absent=False)
            await metadata.commit_segment(
                seg.info(topic=TOPIC, partition=0, object_key=key, epoch=lease.epoch), "bench@writer", lease.epoch
            )
        before = await _read_all(metadata, store)
        settings = MergeSettings(0, 64 << 20, 256 << 20, 2, grace_ms=0, max_segments=len(segments) + 1)  # one run
        leases = Leases(metadata, holder="bench@merger", agent_id="bench", ttl_ms=60_000)
        merger = Merger(metadata, store, leases, settings)
        started = time.perf_counter()
        done = await merger.merge_partition(TOPIC, 0)
        took = time.perf_counter() - started
        after = await _read_all(metadata, store)
        moved_in = sum(o.read_bytes for o in done)
        moved_out = sum(o.written_bytes for o in done)
        merged_records = sum(o.end_offset - o.base_offset for o in done)
        listed = await metadata.list_segments(TOPIC, 0)
        await metadata.delete_topic(TOPIC)
        return [
            (f"merger ({url.split(':')[0]}): segments", f"{len(segments):,} → {len(listed)}"),
            ("merger: time (download, merge, upload, swap)", f"{took:.2f} s"),
            ("merger: rate", _rate(merged_records, len(segments) - len(listed) + len(done), took)),
            ("merger: bytes moved (read + written)", f"{_mb(moved_in)} + {_mb(moved_out)}"),
            ("full read before merging (cold)", f"{before:.2f} s"),
            ("full read after merging (cold)", f"{after:.2f} s"),
        ]
    finally:
        await store.close()
        await metadata.close()


async def _read_all(metadata: MetadataStore, store: ObjectStore) -> float:
    reader = PartitionReader(metadata, store)  # a fresh block cache: every byte fetched
    started = time.perf_counter()
    table = await reader.read(TOPIC, 0, 0, max_records=10**9)
    assert table.num_rows > 0
    return time.perf_counter() - started
