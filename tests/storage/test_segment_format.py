"""Segment format (docs/DESIGN.md §4): exact round trips, pruning, and corruption always detected."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError, InvalidInputError
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from streamhouse.storage.segment.field_ids import physical_table
from streamhouse.storage.segment.format import (
    EncodedSegment,
    SegmentFooter,
    decode_row_groups,
    decode_segment,
    encode_segment,
    parse_footer,
    select_row_groups,
)
from tests.strategies import record_batches


def footer_of(seg: EncodedSegment, data: bytes | None = None, source: str = "seg") -> SegmentFooter:
    data = seg.data if data is None else data
    return parse_footer(data[-seg.footer_length :], size_bytes=len(data), footer_crc=seg.footer_crc, source=source)


def chunks_of(footer: SegmentFooter, data: bytes, indices: list[int] | None = None) -> dict[int, bytes]:
    wanted = range(len(footer.row_groups)) if indices is None else indices
    return {i: data[footer.row_groups[i].byte_start : footer.row_groups[i].byte_end] for i in wanted}


def assert_same(actual: pa.Table, expected: pa.Table) -> None:
    """Stricter than Table.equals, which ignores list field names."""
    assert actual.schema.to_string(show_schema_metadata=False) == expected.schema.to_string(show_schema_metadata=False)
    assert actual.equals(expected)


def sample_table(n: int = 300, base: int = 1000, seed: int = 1) -> pa.Table:
    rng = random.Random(seed)
    values = [None if i % 17 == 0 else b"" if i % 13 == 0 else f"value-{i}".encode() * (i % 5) for i in range(n)]
    keys = [None if i % 3 == 0 else f"key-{i % 7}".encode() for i in range(n)]
    headers = [
        None if i % 4 == 0 else [] if i % 4 == 1 else [("trace-ü", f"{i}".encode()), ("n", None)] for i in range(n)
    ]
    timestamps = [1_700_000_000_000 + rng.randrange(0, 100_000) for _ in range(n)]
    batch = make_batch(values, keys=keys, timestamps=timestamps, headers=headers, base_offset=base)
    return pa.Table.from_batches([batch])


@given(batch=record_batches(), row_group_bytes=st.integers(min_value=64, max_value=1 << 20))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_round_trip_is_exact(batch: pa.RecordBatch, row_group_bytes: int) -> None:
    assume(batch.num_rows > 0)
    table = pa.Table.from_batches([batch])
    seg = encode_segment(table, topic="orders", partition=2, epoch=5, row_group_bytes=row_group_bytes)
    footer = footer_of(seg)
    assert (seg.base_offset, seg.end_offset, seg.record_count) == (
        batch.column(0)[0].as_py(),
        batch.column(0)[0].as_py() + batch.num_rows,
        batch.num_rows,
    )
    ts = batch.column(1).to_numpy()
    assert (seg.min_timestamp, seg.max_timestamp) == (int(ts.min()), int(ts.max()))
    assert seg.size_bytes == len(seg.data) and seg.row_group_count == len(footer.row_groups)
    assert (footer.topic, footer.partition, footer.epoch) == ("orders", 2, 5)
    assert (footer.base_offset, footer.end_offset) == (seg.base_offset, seg.end_offset)
    assert_same(decode_segment(footer, seg.data), table)
    assert_same(decode_row_groups(footer, chunks_of(footer, seg.data)), table)
    # Any subset decodes to exactly its rows.
    some = sorted(random.Random(batch.num_rows).sample(range(len(footer.row_groups)), k=len(footer.row_groups) // 2))
    rows = [r for i in some for r in range(footer.row_groups[i].base_offset, footer.row_groups[i].end_offset)]
    expected = table.take(pa.array([r - seg.base_offset for r in rows], pa.int64()))
    assert_same(decode_row_groups(footer, chunks_of(footer, seg.data, some)), expected)
    assert_same(decode_segment(footer, seg.data, row_groups=some), expected)


def test_several_row_groups_and_ranges_match_parquet_metadata() -> None:
    seg = encode_segment(sample_table(), topic="t", partition=0, epoch=1, row_group_bytes=1024)
    footer = footer_of(seg)
    assert len(footer.row_groups) > 5
    md = pq.ParquetFile(pa.BufferReader(seg.data)).metadata
    for rg, info in zip((md.row_group(i) for i in range(md.num_row_groups)), footer.row_groups, strict=True):
        cols = [rg.column(j) for j in range(rg.num_columns)]
        starts = [c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset for c in cols]
        ends = [s + c.total_compressed_size for s, c in zip(starts, cols, strict=True)]
        # The sink position after each write_table is exactly the row group's extent.
        assert (min(starts), max(ends)) == (info.byte_start, info.byte_end)
        assert info.crc == crc32c(seg.data[info.byte_start : info.byte_end])
        assert info.num_rows == rg.num_rows
        partitions, offsets, timestamps = cols[0], cols[1], cols[2]  # layout 2: _partition first
        assert (partitions.statistics.min, partitions.statistics.max) == (0, 0)
        assert offsets.statistics.min == info.base_offset and offsets.statistics.max == info.end_offset - 1
        assert (timestamps.statistics.min_raw, timestamps.statistics.max_raw) == (
            info.min_timestamp,
            info.max_timestamp,
        )
        for c in cols:
            # pyarrow's name for LZ4_RAW: the thrift footer holds codec 7 (LZ4_RAW), not 5 (Hadoop LZ4).
            assert c.compression == "LZ4"
            assert c.has_offset_index
        assert "DELTA_BINARY_PACKED" in offsets.encodings and "DELTA_BINARY_PACKED" in timestamps.encodings
        assert offsets.has_column_index and timestamps.has_column_index  # the page index
        assert not cols[4].is_stats_set  # no min/max of opaque values in the footer


def test_other_parquet_readers_see_the_records() -> None:
    table = sample_table()
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=2048)
    assert pq.read_table(pa.BufferReader(seg.data)).equals(physical_table(table, 0))
    legacy = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=2048, layout=1)
    assert pq.read_table(pa.BufferReader(legacy.data)).equals(table)
    kv = pq.read_metadata(pa.BufferReader(seg.data)).metadata
    assert kv[b"streamhouse.topic"] == b"t" and kv[b"streamhouse.last_offset"] == b"1299"


def test_encoding_is_deterministic() -> None:
    # A writer retrying an upload compares bytes with the object already there.
    table = sample_table()
    assert (
        encode_segment(table, topic="t", partition=0, epoch=1).data
        == encode_segment(table, topic="t", partition=0, epoch=1).data
    )


def test_extra_typed_columns_survive() -> None:
    base = sample_table(n=200)
    n = base.num_rows
    extra = {
        "auction": pa.array([i if i % 9 else None for i in range(n)], pa.int64()),
        "price": pa.array(np.linspace(0, 1, n), pa.float64()),
        "ts": pa.array(np.arange(n) * 1000, pa.timestamp("ms", tz="UTC")),
        "channel": pa.array([["web", "app", None][i % 3] for i in range(n)], pa.string()),
        "tags": pa.array([[f"t{i}"] if i % 2 else [] for i in range(n)], pa.list_(pa.string())),
        "flag": pa.array([i % 2 == 0 for i in range(n)], pa.bool_()),
    }
    table = base
    for name, column in extra.items():
        table = table.append_column(name, column)
    seg = encode_segment(table, topic="bids", partition=1, epoch=1, row_group_bytes=2048)
    footer = footer_of(seg)
    assert_same(decode_segment(footer, seg.data), table)
    assert_same(
        decode_row_groups(footer, chunks_of(footer, seg.data), columns=["price", "ts"]),
        table.select(["price", "ts"]),
    )
    rg = pq.ParquetFile(pa.BufferReader(seg.data)).metadata.row_group(0)
    stats = {rg.column(j).path_in_schema: rg.column(j).is_stats_set for j in range(rg.num_columns)}
    assert stats["auction"] and stats["price"] and stats["ts"]  # typed columns can be pruned by SQL


def test_invalid_input_is_rejected() -> None:
    table = sample_table(n=10)
    with pytest.raises(InvalidInputError):
        encode_segment(table.slice(0, 0), topic="t", partition=0, epoch=1)
    gap = pa.Table.from_batches([make_batch([b"a", b"b"], base_offset=0)]).set_column(
        0, RECORD_SCHEMA.field(0), pa.array([0, 2], pa.int64())
    )
    with pytest.raises(InvalidInputError, match="contiguous"):
        encode_segment(gap, topic="t", partition=0, epoch=1)
    backwards = gap.set_column(0, RECORD_SCHEMA.field(0), pa.array([5, 4], pa.int64()))
    with pytest.raises(InvalidInputError, match="contiguous"):
        encode_segment(backwards, topic="t", partition=0, epoch=1)
    with pytest.raises(InvalidInputError, match="record schema"):
        encode_segment(table.drop_columns(["headers"]), topic="t", partition=0, epoch=1)
    with pytest.raises(InvalidInputError, match="duplicate"):
        encode_segment(table.append_column("key", table.column("key")), topic="t", partition=0, epoch=1)
    with pytest.raises(InvalidInputError):
        encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=0)


def test_rows_per_group_follow_bytes_not_averages() -> None:
    # Averages would put the small rows in hundreds of 2-row groups and the large ones in
    # groups of several MiB; cutting by cumulative bytes keeps every group near the target.
    values = [b"x" * 10] * 1000 + [b"y" * (256 << 10)] * 20
    seg = encode_segment(
        pa.Table.from_batches([make_batch(values)]), topic="t", partition=0, epoch=1, row_group_bytes=64 << 10
    )
    groups = footer_of(seg).row_groups
    assert sum(1 for g in groups if g.end_offset <= 1000) <= 1
    assert all(max(0, g.end_offset - max(g.base_offset, 1000)) <= 1 for g in groups)


# --- pruning -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned() -> tuple[pa.Table, EncodedSegment, SegmentFooter]:
    table = sample_table(n=600, base=50, seed=3)
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=1024)
    return table, seg, footer_of(seg)


bound = st.one_of(st.none(), st.integers(min_value=0, max_value=700))
time_bound = st.one_of(st.none(), st.integers(min_value=1_699_999_990_000, max_value=1_700_000_110_000))


@given(start=bound, end=bound, min_ts=time_bound, max_ts=time_bound)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_select_row_groups_prunes_soundly(
    pruned: tuple[pa.Table, EncodedSegment, SegmentFooter],
    start: int | None,
    end: int | None,
    min_ts: int | None,
    max_ts: int | None,
) -> None:
    table, _, footer = pruned
    offsets = table.column("offset").to_numpy()
    ts = table.column("timestamp").to_numpy()
    match = np.ones(len(offsets), dtype=bool)
    if start is not None:
        match &= offsets >= start
    if end is not None:
        match &= offsets < end
    if min_ts is not None:
        match &= ts >= min_ts
    if max_ts is not None:
        match &= ts <= max_ts
    selected = select_row_groups(footer, start, end, min_ts, max_ts)
    assert selected == sorted(set(selected))
    for g in footer.row_groups:
        in_group = (offsets >= g.base_offset) & (offsets < g.end_offset)
        if (match & in_group).any():
            assert g.index in selected  # sound: nothing that matches is pruned
        if g.index in selected:  # tight: a kept group overlaps the bounds by its statistics
            assert start is None or g.end_offset > start
            assert end is None or g.base_offset < end
            assert min_ts is None or (g.max_timestamp is not None and g.max_timestamp >= min_ts)
            assert max_ts is None or (g.min_timestamp is not None and g.min_timestamp <= max_ts)


def test_select_by_offset_is_exact(pruned: tuple[pa.Table, EncodedSegment, SegmentFooter]) -> None:
    _, _, footer = pruned
    g = footer.row_groups
    assert select_row_groups(footer) == list(range(len(g)))
    assert select_row_groups(footer, g[2].base_offset, g[2].end_offset) == [2]
    assert select_row_groups(footer, g[2].end_offset - 1, g[3].base_offset + 1) == [2, 3]
    assert select_row_groups(footer, footer.end_offset) == []
    assert select_row_groups(footer, None, footer.base_offset) == []


# --- corruption ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> tuple[pa.Table, EncodedSegment, SegmentFooter]:
    table = sample_table(n=120, base=7, seed=9)
    seg = encode_segment(table, topic="t", partition=0, epoch=1, row_group_bytes=1024)
    footer = footer_of(seg)
    assert len(footer.row_groups) >= 4
    return table, seg, footer


def read_everything(data: bytes, seg: EncodedSegment, sparse: bool) -> pa.Table:
    """What a reader does: footer verified with the CRC stored beside it, then all row groups."""
    footer = footer_of(seg, data)
    if sparse:
        return decode_row_groups(footer, chunks_of(footer, data))
    return decode_segment(footer, data)


@given(position=st.data(), mask=st.integers(min_value=1, max_value=255), sparse=st.booleans())
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_flipped_byte_is_detected_or_never_read(
    small: tuple[pa.Table, EncodedSegment, SegmentFooter], position: st.DataObject, mask: int, sparse: bool
) -> None:
    table, seg, footer = small
    p = position.draw(st.integers(min_value=0, max_value=seg.size_bytes - 1))
    data = bytearray(seg.data)
    data[p] ^= mask
    unread = p < 4 or footer.row_groups[-1].byte_end <= p < footer.footer_start  # magic, page index
    try:
        result = read_everything(bytes(data), seg, sparse)
    except CorruptDataError as exc:
        event("detected")
        assert not unread
        assert exc.source == "seg" and exc.position is not None and exc.position <= p
        return
    event("unread region")
    assert unread
    assert_same(result, table)


def test_every_footer_byte_is_covered(small: tuple[pa.Table, EncodedSegment, SegmentFooter]) -> None:
    _, seg, footer = small
    for p in range(footer.footer_start, seg.size_bytes):
        data = bytearray(seg.data)
        data[p] ^= 0x01
        with pytest.raises(CorruptDataError) as info:
            footer_of(seg, bytes(data))
        assert info.value.position is not None and info.value.position >= footer.footer_start


def test_footer_length_or_crc_mismatch(small: tuple[pa.Table, EncodedSegment, SegmentFooter]) -> None:
    _, seg, _ = small
    for length in (0, 8, seg.footer_length - 1, seg.footer_length + 1, seg.size_bytes):
        with pytest.raises(CorruptDataError):
            parse_footer(
                seg.data[-length:] if length else b"",
                size_bytes=seg.size_bytes,
                footer_crc=seg.footer_crc,
                source="s",
            )
    with pytest.raises(CorruptDataError, match="CRC32C"):
        parse_footer(
            seg.data[-seg.footer_length :],
            size_bytes=seg.size_bytes,
            footer_crc=seg.footer_crc ^ 1,
            source="s",
        )
    with pytest.raises(CorruptDataError):  # truncated object: the tail is not the footer
        footer_of(seg, seg.data[:-1])


def test_row_group_length_mismatch(small: tuple[pa.Table, EncodedSegment, SegmentFooter]) -> None:
    _, seg, footer = small
    chunks = chunks_of(footer, seg.data)
    chunks[1] = chunks[1][:-1]
    with pytest.raises(CorruptDataError, match="row group 1") as info:
        decode_row_groups(footer, chunks)
    assert info.value.position == footer.row_groups[1].byte_start
    with pytest.raises(CorruptDataError):
        decode_segment(footer, seg.data[: footer.row_groups[-1].byte_end - 1])


def test_bad_requests_are_invalid_input(small: tuple[pa.Table, EncodedSegment, SegmentFooter]) -> None:
    _, seg, footer = small
    with pytest.raises(InvalidInputError):
        decode_segment(footer, seg.data, columns=["nope"])
    with pytest.raises(InvalidInputError):
        decode_segment(footer, seg.data, row_groups=[len(footer.row_groups)])
    assert decode_row_groups(footer, {}, columns=["value"]).schema == pa.schema([RECORD_SCHEMA.field("value")])


@given(position=st.data(), mask=st.integers(min_value=1, max_value=255))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bytes_past_our_crcs_still_fail_typed(
    small: tuple[pa.Table, EncodedSegment, SegmentFooter], position: st.DataObject, mask: int
) -> None:
    """Defence in depth: even bytes that *pass* our CRCs (as if damaged before they were
    computed) only ever raise CorruptDataError from the decoder, never another type."""
    _, seg, footer = small
    p = position.draw(st.integers(min_value=4, max_value=footer.row_groups[-1].byte_end - 1))
    data = bytearray(seg.data)
    data[p] ^= mask
    groups = tuple(dataclasses.replace(g, crc=crc32c(data[g.byte_start : g.byte_end])) for g in footer.row_groups)
    forged = dataclasses.replace(footer, row_groups=groups)
    try:
        decode_segment(forged, bytes(data))
        event("decoded (page headers are not covered by Parquet's own CRCs)")
    except CorruptDataError:
        event("rejected by pyarrow")
