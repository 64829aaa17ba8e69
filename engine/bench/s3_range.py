"""How few bytes a small read fetches from a large segment on S3 (`streamhouse bench storage`)."""

from __future__ import annotations

import random
import time

import pyarrow as pa

from streamhouse.bench.data import json_bid_batch
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.segment.format import encode_segment
from streamhouse.storage.segment.reader import SegmentReader


async def bench_s3_range_read(
    url: str, endpoint: str | None, *, segment_bytes: int = 64 << 20, read_records: int = 100, seed: int = 1
) -> dict[str, float | int]:
    """Upload one segment of about `segment_bytes`, then read `read_records` at a random
    offset through a cold reader and report the bytes it fetched."""
    probe = await run_blocking(encode_segment, json_bid_batch(100_000), topic="bench", partition=0, epoch=1)
    records = int(100_000 * segment_bytes / probe.size_bytes)
    table = pa.Table.from_batches([json_bid_batch(records, seed=seed)])
    encoded = await run_blocking(encode_segment, table, topic="bench", partition=0, epoch=1)
    store = open_object_store(url, s3_endpoint=endpoint)
    try:
        key = f"bench/{time.time_ns()}.parquet"
        await store.put(key, encoded.data)
        reader = SegmentReader(store)
        start = random.Random(seed).randrange(0, records - read_records)
        started = time.perf_counter()
        got = await reader.read(encoded.ref(key), start_offset=start, end_offset=start + read_records)
        elapsed = time.perf_counter() - started
        await store.delete(key)
    finally:
        await store.close()
    assert got.num_rows == read_records and got.column("offset")[0].as_py() == start
    return {
        "segment_mb": round(encoded.size_bytes / 2**20, 1),
        "row_groups": encoded.row_group_count,
        "records_read": read_records,
        "bytes_fetched": reader.bytes_fetched,
        "gets": reader.gets,
        "ms": round(elapsed * 1000, 1),
    }
