"""`streamhouse bench compaction`: log compaction and small-segment merging (docs/DESIGN.md §4).

Log compaction (latest value per key) of --compact-records records over --keys keys (1% of the
records tombstones), in --compact-segments segments, CPU seconds measured (process CPU time, so a
loaded machine does not distort the per-core figures):
- kernel: storage/segment/compact.py alone (choose the survivors, filter the table);
- pass in memory: storage/segment/compacted.py (verify + decode + kernel + encode the segments);
- compactor: engine/agent/compactor.py end to end on the stores (download, pass, upload, swap),
  and a full read of the partition before and after it (cold caches), records/s.
Merging --segments small segments (default 1,000 of 10 records, what 1,000 acks=durable
produces leave):
- merge: storage/segment/merge.py alone, in memory (verify + decode + concatenate + encode);
- merger: engine/agent/merger.py end to end on real stores — download, merge, upload, the swap
  transaction — and a full read of the partition before and after (cold caches), the reason
  merging exists. Stores: SQLite + a local directory by default; --s3-url/--s3-endpoint (or a
  temporary SeaweedFS when `weed` is on PATH, with --s3) and --metadata for PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from streamhouse.agent.compactor import Compactor, CompactSettings
from streamhouse.agent.leases import Leases
from streamhouse.agent.merger import Merger, MergeSettings
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import partition_resource
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.roll import segment_key
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from streamhouse.storage.segment.compact import compact_records
from streamhouse.storage.segment.compacted import compact_segments
from streamhouse.storage.segment.format import EncodedSegment, SegmentFooter, encode_segment, parse_footer
from streamhouse.storage.segment.merge import merge_segments

T = TypeVar("T")
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
    parser.add_argument("--compact-records", type=int, default=2_000_000, help="records to compact (default 2 M)")
    parser.add_argument("--keys", type=int, default=100_000, help="distinct keys among them (default 100,000)")
    parser.add_argument("--compact-segments", type=int, default=8, help="segments they are in (default 8)")


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
    rows: list[tuple[str, str]] = compaction_in_memory(args)
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
            rows += asyncio.run(_through_the_compactor(args, url, endpoint, workdir))
            rows += asyncio.run(_through_the_merger(args, segments, url, endpoint, workdir))
        finally:
            if not args.dir:
                shutil.rmtree(workdir, ignore_errors=True)
    table = Table(
        title=f"streamhouse bench compaction — compaction of {args.compact_records:,} records over {args.keys:,} keys; "
        f"merge of {args.segments:,} segments × {args.records} records"
    )
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


# -- log compaction ---------------------------------------------------------------------------
COMPACT_TOPIC = "bench-compact"


def _keyed_records(args: argparse.Namespace) -> pa.Table:
    """--compact-records records over --keys keys in random order, 1% tombstones, values of
    --value-bytes random bytes (built column-wise: no Python per record)."""
    n, rng = args.compact_records, np.random.default_rng(11)
    names = pa.array([f"key-{i:08d}".encode() for i in range(args.keys)], pa.binary())
    keys = names.take(pa.array(rng.integers(0, args.keys, n)))
    width = args.value_bytes
    data = pa.py_buffer(rng.bytes(n * width))
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    values = pa.Array.from_buffers(pa.binary(), n, [None, offsets, data])
    values = pc.if_else(pa.array(rng.random(n) < 0.01), pa.scalar(None, pa.binary()), values)
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(1_700_000_000_000 + np.arange(n, dtype=np.int64)),
            keys,
            values,
            pa.nulls(n, RECORD_SCHEMA.field("headers").type),
        ],
        schema=RECORD_SCHEMA,
    )


def _cpu(call: Callable[[], T]) -> tuple[T, float, float]:
    """The result, CPU seconds of this process and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = call()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def _per_core(records: int, cpu_s: float, wall_s: float) -> str:
    return f"{records / cpu_s / 1e6:.2f} M rec/s per core (CPU {cpu_s:.2f} s, wall {wall_s:.2f} s)"


def _encoded_segments(table: pa.Table, count: int) -> list[EncodedSegment]:
    step = -(-table.num_rows // count)
    return [
        encode_segment(table.slice(lo, step), topic=COMPACT_TOPIC, partition=0, epoch=1)
        for lo in range(0, table.num_rows, step)
    ]


def compaction_in_memory(args: argparse.Namespace) -> list[tuple[str, str]]:
    table = _keyed_records(args)
    n = table.num_rows
    (kept, counts), cpu, wall = _cpu(lambda: compact_records(table, now_ms=0, delete_retention_ms=0))
    rows = [
        ("compaction kernel: rate", _per_core(n, cpu, wall)),
        (
            "compaction: records in → out",
            f"{n:,} → {kept.num_rows:,} ({counts.tombstones_dropped:,} tombstones dropped)",
        ),
    ]
    segments = _encoded_segments(table, args.compact_segments)
    inputs = [(_footer(s), s.data) for s in segments]
    runs = [list(range(len(inputs)))]
    done, cpu, wall = _cpu(lambda: compact_segments(inputs, runs, now_ms=0, delete_retention_ms=0))
    rows += [
        ("compaction pass in memory (decode + kernel + encode): rate", _per_core(n, cpu, wall)),
        ("compaction pass: bytes in → out", f"{_mb(done.bytes_in)} → {_mb(sum(s.size_bytes for s in done.segments))}"),
    ]
    return rows


def _footer(segment: EncodedSegment) -> SegmentFooter:
    tail = segment.data[-segment.footer_length :]
    return parse_footer(tail, size_bytes=segment.size_bytes, footer_crc=segment.footer_crc, source="bench")


async def _through_the_compactor(
    args: argparse.Namespace, url: str, endpoint: str | None, workdir: Path
) -> list[tuple[str, str]]:
    metadata = await open_metadata_store(args.metadata or f"sqlite:///{workdir / 'meta.db'}")
    store = open_object_store(url, s3_endpoint=endpoint)
    try:
        if COMPACT_TOPIC in [t.name for t in await metadata.list_topics()]:
            await metadata.delete_topic(COMPACT_TOPIC)
        table = _keyed_records(args)
        # The compactor never takes a partition's newest segment: one small segment closes the log.
        tail = table.slice(table.num_rows - 1)
        segments = [*_encoded_segments(table.slice(0, table.num_rows - 1), args.compact_segments)]
        segments.append(encode_segment(tail, topic=COMPACT_TOPIC, partition=0, epoch=1))
        info = await metadata.create_topic(COMPACT_TOPIC, 1, {"cleanup.policy": "compact", "delete.retention.ms": "0"})
        lease = await metadata.acquire_lease(partition_resource(COMPACT_TOPIC, 0), "bench@writer", 600_000)
        for seg in segments:
            key = segment_key(COMPACT_TOPIC, 0, seg.base_offset, lease.epoch)
            await store.put(key, seg.data, if_absent=False)
            info_row = seg.info(topic=COMPACT_TOPIC, partition=0, object_key=key, epoch=lease.epoch)
            await metadata.commit_segment(info_row, "bench@writer", lease.epoch)
        before, n_before = await _read_topic(metadata, store, COMPACT_TOPIC)
        leases = Leases(metadata, holder="bench@compactor", agent_id="bench", ttl_ms=60_000)
        settings = CompactSettings(0, grace_ms=0, run_bytes=1 << 40, max_pass_bytes=1 << 40)
        compactor = Compactor(metadata, store, leases, settings)
        started, cpu = time.perf_counter(), time.process_time()
        outcome = await compactor.compact_partition(info, 0)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert outcome is not None and outcome.swapped == 1
        after, n_after = await _read_topic(metadata, store, COMPACT_TOPIC)
        await metadata.delete_topic(COMPACT_TOPIC)
        records = outcome.counts.records_in
        return [
            (f"compactor ({url.split(':')[0]}): time (download, pass, upload, swap)", f"{took:.2f} s"),
            ("compactor: whole pass, process CPU (incl. IO and metadata)", _per_core(records, cpu, took)),
            ("compactor: bytes read → written", f"{_mb(outcome.read_bytes)} → {_mb(outcome.written_bytes)}"),
            (
                "full read before compaction (cold)",
                f"{n_before:,} records in {before:.2f} s ({n_before / before / 1e6:.2f} M rec/s)",
            ),
            (
                "full read of the compacted topic (cold)",
                f"{n_after:,} records in {after:.2f} s ({n_after / after / 1e6:.2f} M rec/s)",
            ),
        ]
    finally:
        await store.close()
        await metadata.close()


async def _read_topic(metadata: MetadataStore, store: ObjectStore, topic: str) -> tuple[float, int]:
    reader = PartitionReader(metadata, store)  # a fresh block cache: every byte fetched
    started = time.perf_counter()
    table = await reader.read(topic, 0, 0, max_records=10**9)
    return time.perf_counter() - started, table.num_rows
