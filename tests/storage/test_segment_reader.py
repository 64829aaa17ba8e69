"""SegmentReader against real object stores (local directory and SeaweedFS S3)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import CorruptDataError, InvalidInputError, ObjectNotFoundError
from streamhouse.storage.model import SegmentRef
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.object_store.local import LocalObjectStore
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from streamhouse.storage.segment.cache import BlockCache
from streamhouse.storage.segment.format import EncodedSegment, encode_segment
from streamhouse.storage.segment.reader import SegmentReader

MIB = 1 << 20
BASE = 5_000
T0 = 1_700_000_000_000


def big_table(n: int = 30_000, value_bytes: int = 200, seed: int = 1) -> pa.Table:
    """~6 MiB of incompressible values, so the object really is multi-MiB; timestamps wobble."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=n * value_bytes, dtype=np.uint8).tobytes()
    offsets = np.arange(0, (n + 1) * value_bytes, value_bytes, dtype=np.int32)
    values = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    timestamps = T0 + np.arange(n, dtype=np.int64) * 10 + rng.integers(-500, 500, size=n)
    keys = pa.array([None if i % 5 == 0 else b"k%d" % (i % 100) for i in range(n)], pa.binary())
    columns = [
        pa.array(np.arange(BASE, BASE + n, dtype=np.int64)),
        pa.array(timestamps, pa.int64()),
        keys,
        values,
        pa.nulls(n, RECORD_SCHEMA.field("headers").type),
    ]
    return pa.Table.from_arrays(columns, schema=RECORD_SCHEMA)


@pytest.fixture(scope="module")
def big() -> tuple[pa.Table, EncodedSegment]:
    table = big_table()
    return table, encode_segment(table, topic="t", partition=0, epoch=1)


def expected_rows(
    table: pa.Table,
    start: int | None = None,
    end: int | None = None,
    min_ts: int | None = None,
    max_ts: int | None = None,
) -> pa.Table:
    offsets = table.column("offset").to_numpy()
    ts = table.column("timestamp").to_numpy()
    keep = np.ones(len(offsets), dtype=bool)
    if start is not None:
        keep &= offsets >= start
    if end is not None:
        keep &= offsets < end
    if min_ts is not None:
        keep &= ts >= min_ts
    if max_ts is not None:
        keep &= ts <= max_ts
    return table.filter(pa.array(keep))


async def store_segment(store: ObjectStore, key: str, seg: EncodedSegment, data: bytes | None = None) -> SegmentRef:
    await store.put(key, seg.data if data is None else data)
    return seg.ref(key)


async def test_reads_exact_ranges_fetching_little(
    object_store: ObjectStore, big: tuple[pa.Table, EncodedSegment]
) -> None:
    table, seg = big
    assert seg.size_bytes > 5 * MIB and seg.row_group_count >= 5
    ref = await store_segment(object_store, "topics/t/00000/seg.parquet", seg)
    reader = SegmentReader(object_store)

    got = await reader.read(ref, start_offset=BASE + 12_345, end_offset=BASE + 12_445)
    assert got.equals(expected_rows(table, BASE + 12_345, BASE + 12_445)) and got.num_rows == 100
    assert reader.bytes_fetched < 2 * MIB  # the footer and one ~1 MiB row group
    assert (reader.footers_fetched, reader.row_groups_read) == (1, 1)

    min_ts, max_ts = T0 + 50_000, T0 + 60_000
    got = await reader.read(ref, min_timestamp=min_ts, max_timestamp=max_ts, columns=["offset", "key"])
    assert got.equals(expected_rows(table, min_ts=min_ts, max_ts=max_ts).select(["offset", "key"]))
    got = await reader.read(ref, start_offset=BASE + 100, end_offset=BASE + 20_000, max_timestamp=T0 + 10_000)
    assert got.equals(expected_rows(table, BASE + 100, BASE + 20_000, max_ts=T0 + 10_000))
    assert (await reader.read(ref)).equals(table)
    assert reader.footers_fetched == 1  # immutable: fetched once

    empty = await reader.read(ref, start_offset=BASE + 30_000, columns=["value"])
    assert empty.num_rows == 0 and empty.schema == pa.schema([RECORD_SCHEMA.field("value")])
    assert (await reader.read(ref, start_offset=BASE + 10, end_offset=BASE + 10)).num_rows == 0
    assert (await reader.read(ref, min_timestamp=T0 + 10**9)).num_rows == 0


async def test_unbounded_read_of_uncached_segment_is_one_get(
    object_store: ObjectStore, big: tuple[pa.Table, EncodedSegment]
) -> None:
    table, seg = big
    ref = await store_segment(object_store, "whole.parquet", seg)
    reader = SegmentReader(object_store)
    assert (await reader.read(ref)).equals(table)
    assert (reader.gets, reader.bytes_fetched, reader.footers_fetched) == (1, seg.size_bytes, 1)
    small = SegmentReader(object_store, whole_object_bytes=MIB)  # too big for one GET: footer, then data
    assert (await small.read(ref)).equals(table)
    assert small.gets == 2


async def test_block_cache_serves_repeat_reads_and_rejects_damaged_blocks(tmp_path: Path) -> None:
    table = big_table(n=8_000)
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=256 << 10)
    store = LocalObjectStore(f"file://{tmp_path}")
    ref = await store_segment(store, "cached.parquet", seg)
    cache = BlockCache(memory_bytes=64 * MIB)
    reader = SegmentReader(store, cache)
    want = expected_rows(table, BASE + 1_000, BASE + 5_000)
    assert (await reader.read(ref, start_offset=BASE + 1_000, end_offset=BASE + 5_000)).equals(want)
    gets = reader.gets
    assert (await reader.read(ref, start_offset=BASE + 1_000, end_offset=BASE + 5_000)).equals(want)
    assert reader.gets == gets and cache.hits > 0

    assert (await reader.read(ref)).equals(table)  # now every row group is cached

    # A damaged cached block (say, on the disk tier) is refetched, not reported as corruption.
    await cache.put(f"{ref.object_key}#1", b"garbage")
    fresh = SegmentReader(store, cache)
    assert (await fresh.read(ref)).equals(table)
    assert fresh.cached_blocks_rejected == 1 and fresh.gets == 2  # footer + row group 1
    assert await cache.get(f"{ref.object_key}#1") != b"garbage"  # replaced by verified bytes
    await store.close()


async def test_full_read_with_cache_is_one_data_get_and_fills_the_cache(tmp_path: Path) -> None:
    table = big_table(n=4_000)
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=128 << 10)
    store = LocalObjectStore(f"file://{tmp_path}")
    ref = await store_segment(store, "fill.parquet", seg)
    reader = SegmentReader(store, BlockCache(memory_bytes=64 * MIB))
    assert (await reader.read(ref)).equals(table)
    assert reader.gets == 2  # footer, then the whole object
    got = await reader.read(ref, start_offset=BASE + 2_000, end_offset=BASE + 2_100, columns=["key"])
    assert got.equals(expected_rows(table, BASE + 2_000, BASE + 2_100).select(["key"]))
    assert reader.gets == 2  # served by the cache
    await store.close()


@pytest.mark.parametrize("part_bytes", [8 << 20, 200 << 10])
async def test_reads_in_parts_keep_order(tmp_path: Path, part_bytes: int) -> None:
    table = big_table(n=6_000)
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=64 << 10)
    store = LocalObjectStore(f"file://{tmp_path}")
    ref = await store_segment(store, "p.parquet", seg)
    reader = SegmentReader(store, part_bytes=part_bytes, whole_object_bytes=0)
    assert (await reader.read(ref)).equals(table)  # from byte 0: read in place
    got = await reader.read(ref, start_offset=BASE + 700)  # a run from a later row group
    assert got.equals(expected_rows(table, BASE + 700))
    runs = await reader.read(ref, min_timestamp=T0 + 10_000, max_timestamp=T0 + 20_000)
    assert runs.equals(expected_rows(table, min_ts=T0 + 10_000, max_ts=T0 + 20_000))
    await store.close()


async def test_damaged_objects_raise_corrupt_data(
    object_store: ObjectStore, big: tuple[pa.Table, EncodedSegment]
) -> None:
    _, seg = big
    reader = SegmentReader(object_store)
    middle = bytearray(seg.data)
    middle[seg.size_bytes // 2] ^= 0x40
    ref = await store_segment(object_store, "bad/row-group.parquet", seg, bytes(middle))
    with pytest.raises(CorruptDataError) as info:
        await reader.read(ref)
    assert info.value.source == ref.object_key and info.value.position is not None
    assert info.value.position <= seg.size_bytes // 2

    footer = bytearray(seg.data)
    footer[-seg.footer_length + 10] ^= 0x01
    ref = await store_segment(object_store, "bad/footer.parquet", seg, bytes(footer))
    with pytest.raises(CorruptDataError, match="footer CRC32C"):
        await reader.read(ref, start_offset=BASE)

    ref = await store_segment(object_store, "bad/truncated.parquet", seg, seg.data[:-100])
    for bounds in ({}, {"start_offset": BASE}):
        with pytest.raises(CorruptDataError):
            await SegmentReader(object_store).read(ref, **bounds)

    good = await store_segment(object_store, "bad/good.parquet", seg)
    assert (await reader.read(good, start_offset=BASE, end_offset=BASE + 1)).num_rows == 1
    with pytest.raises(CorruptDataError):  # a cached footer is never used for a different ref
        await reader.read(dataclasses.replace(good, footer_crc=good.footer_crc ^ 1), start_offset=BASE)

    with pytest.raises(ObjectNotFoundError):
        await reader.read(seg.ref("bad/missing.parquet"))
    with pytest.raises(CorruptDataError):
        await reader.read(SegmentRef("bad/row-group.parquet", seg.size_bytes, seg.size_bytes + 1, 0))


async def test_unknown_columns_are_invalid_input(tmp_path: Path) -> None:
    table = pa.Table.from_batches([make_batch([b"a", None, b""], base_offset=3)])
    seg = encode_segment(table, topic="t", partition=0, epoch=1)
    store = LocalObjectStore(f"file://{tmp_path}")
    ref = await store_segment(store, "c.parquet", seg)
    with pytest.raises(InvalidInputError):
        await SegmentReader(store).read(ref, columns=["offset", "nope"])
    assert (await SegmentReader(store).read(ref, columns=["value"])).column("value").to_pylist() == [b"a", None, b""]
    await store.close()


async def test_concurrent_reads(tmp_path: Path, big: tuple[pa.Table, EncodedSegment]) -> None:
    table, seg = big
    store = LocalObjectStore(f"file://{tmp_path}")
    ref = await store_segment(store, "busy.parquet", seg)
    reader = SegmentReader(store, BlockCache(memory_bytes=16 * MIB))
    starts = [BASE + i * 997 for i in range(25)]
    results = await asyncio.gather(*(reader.read(ref, start_offset=s, end_offset=s + 3_000) for s in starts))
    for s, got in zip(starts, results, strict=True):
        assert got.equals(expected_rows(table, s, s + 3_000))
    assert reader.footers_fetched == 1  # readers arriving together share one footer fetch
    whole = await asyncio.gather(*(SegmentReader(store).read(ref) for _ in range(4)))
    assert all(t.equals(table) for t in whole)
    await store.close()


async def test_readers_sharing_a_failed_footer_fetch_all_fail_then_retry(tmp_path: Path) -> None:
    seg = encode_segment(pa.Table.from_batches([make_batch([b"a"] * 10)]), topic="t", partition=0, epoch=1)
    store = LocalObjectStore(f"file://{tmp_path}")
    damaged = bytearray(seg.data)
    damaged[-20] ^= 0xFF
    ref = await store_segment(store, "d.parquet", seg, bytes(damaged))
    reader = SegmentReader(store)
    results = await asyncio.gather(*(reader.read(ref, start_offset=i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, CorruptDataError) for r in results) and reader.gets == 1
    with pytest.raises(CorruptDataError):
        await reader.read(ref, start_offset=0)
    assert reader.gets == 2  # failures are not cached
    await store.close()


# --- exact bounds, property-based (local store, one segment of many small row groups) ---


@pytest.fixture(scope="module")
def local_segment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pa.Table, SegmentRef, str]]:
    table = big_table(n=3_000, value_bytes=20, seed=4)
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=4096)
    root = tmp_path_factory.mktemp("segments")
    (root / "s.parquet").write_bytes(seg.data)
    yield table, seg.ref("s.parquet"), f"file://{root}"


offset_bound = st.one_of(st.none(), st.integers(min_value=BASE - 10, max_value=BASE + 3_010))
ts_bound = st.one_of(st.none(), st.integers(min_value=T0 - 1_000, max_value=T0 + 31_000))


@given(start=offset_bound, end=offset_bound, min_ts=ts_bound, max_ts=ts_bound, project=st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reader_returns_exactly_the_bounded_rows(
    local_segment: tuple[pa.Table, SegmentRef, str],
    start: int | None,
    end: int | None,
    min_ts: int | None,
    max_ts: int | None,
    project: bool,
) -> None:
    table, ref, url = local_segment
    columns = ["value", "offset"] if project else None

    async def read() -> pa.Table:
        store = LocalObjectStore(url)
        try:
            return await SegmentReader(store).read(
                ref, start_offset=start, end_offset=end, min_timestamp=min_ts, max_timestamp=max_ts, columns=columns
            )
        finally:
            await store.close()

    want = expected_rows(table, start, end, min_ts, max_ts)
    assert asyncio.run(read()).equals(want if columns is None else want.select(columns))
