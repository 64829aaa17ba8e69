"""Merging segments (storage/segment/merge.py): the merge is the concatenation, byte for byte."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import CorruptDataError, SegmentMergeError
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment.format import EncodedSegment, SegmentFooter, decode_segment, encode_segment
from streamhouse.storage.segment.merge import merge_segments, merged_key
from streamhouse.storage.values.json_decode import json_error_details, json_errors, with_declared_columns
from streamhouse.storage.values.schema import Column, ValueSchema
from tests.storage.test_segment_format import assert_same, footer_of
from tests.strategies import record_batches

TYPED = ValueSchema((Column("n", "BIGINT"), Column("name", "VARCHAR(16)"), Column("ts", "TIMESTAMP(3)")), None)


def encode(table: pa.Table, epoch: int = 1, extra: dict[str, str] | None = None) -> tuple[SegmentFooter, bytes]:
    seg: EncodedSegment = encode_segment(table, topic="t", partition=3, epoch=epoch, extra_metadata=extra)
    return footer_of(seg, source=f"seg-{table.column(0)[0]}"), seg.data


def rebase(batch: pa.RecordBatch, base: int) -> pa.Table:
    cols = [pa.array(range(base, base + batch.num_rows), pa.int64()), *batch.columns[1:]]
    return pa.Table.from_batches([pa.RecordBatch.from_arrays(cols, schema=batch.schema)])


def merged_table(inputs: list[tuple[SegmentFooter, bytes]], **kw: int) -> tuple[pa.Table, SegmentFooter]:
    seg = merge_segments(inputs, epoch=9, **kw)
    footer = footer_of(seg, source="merged")
    return decode_segment(footer, seg.data), footer


@given(
    batches=st.lists(record_batches(max_records=20, allow_big=False), min_size=1, max_size=6),
    base=st.integers(min_value=0, max_value=2**40),
    row_group_bytes=st.integers(min_value=64, max_value=1 << 16),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_merge_equals_the_concatenation(batches: list[pa.RecordBatch], base: int, row_group_bytes: int) -> None:
    batches = [b for b in batches if b.num_rows] or [make_batch([None, b""], keys=[b"", None])]
    tables, position = [], base
    for batch in batches:  # neighbours: each starts where the one before ends
        tables.append(rebase(batch, position))
        position += batch.num_rows
    inputs = [encode(t, epoch=i + 1) for i, t in enumerate(tables)]
    merged, footer = merged_table(inputs, row_group_bytes=row_group_bytes)
    assert_same(merged, pa.concat_tables(tables))  # null vs empty, headers, timestamps: exact
    assert (footer.base_offset, footer.end_offset, footer.epoch) == (base, position, 9)
    assert footer.min_timestamp == min(f.min_timestamp for f, _ in inputs)
    assert footer.max_timestamp == max(f.max_timestamp for f, _ in inputs)


@given(counts=st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=5))
@settings(max_examples=25, deadline=None)
def test_typed_columns_and_json_errors_survive(counts: list[int]) -> None:
    inputs, tables, position = [], [], 0
    for i, n in enumerate(counts):
        values = [
            b"not json" if (position + j) % 11 == 0 else json.dumps({"n": position + j, "name": f"x{j}"}).encode()
            for j in range(n)
        ]
        batch = make_batch(values, keys=[None] * n, timestamps=[1000 + j for j in range(n)], base_offset=position)
        table, extra = with_declared_columns(pa.Table.from_batches([batch]), TYPED)
        tables.append(table)
        inputs.append(encode(table, epoch=i + 1, extra=extra))
        position += n
    merged, footer = merged_table(inputs)
    assert_same(merged, pa.concat_tables(tables))
    bad = [o for o in range(position) if o % 11 == 0]
    count, first = json_errors(footer.metadata.metadata)
    assert (count, first) == (len(bad), bad[:10])
    assert [b.offset for b in json_error_details(footer.metadata.metadata)] == bad[:10]


def test_1000_small_segments_become_one() -> None:
    inputs = []
    for i in range(1000):
        batch = make_batch([f"v{i}-{j}".encode() for j in range(10)], keys=[b"k"] * 10, base_offset=i * 10)
        inputs.append(encode(pa.Table.from_batches([batch])))
    merged, footer = merged_table(inputs)
    assert merged.num_rows == 10_000 and merged.column("offset").to_pylist() == list(range(10_000))
    assert merged.column("value")[234].as_py() == b"v23-4"
    assert (footer.base_offset, footer.end_offset) == (0, 10_000)


def test_refusals_name_the_problem() -> None:
    a = encode(pa.Table.from_batches([make_batch([b"a", b"b"], base_offset=0)]))
    gap = encode(pa.Table.from_batches([make_batch([b"c"], base_offset=3)]))
    with pytest.raises(SegmentMergeError, match="not neighbours"):
        merge_segments([a, gap], epoch=1)
    with pytest.raises(SegmentMergeError, match="no segments"):
        merge_segments([], epoch=1)
    typed, _ = with_declared_columns(pa.Table.from_batches([make_batch([b"{}"], base_offset=2)]), TYPED)
    with pytest.raises(SegmentMergeError, match="other columns"):
        merge_segments([a, encode(typed)], epoch=1)
    other = encode_segment(pa.Table.from_batches([make_batch([b"c"], base_offset=2)]), topic="u", partition=3, epoch=1)
    with pytest.raises(SegmentMergeError, match="segments of t/3 and u/3"):
        merge_segments([a, (footer_of(other), other.data)], epoch=1)


def test_unknown_footer_keys_are_never_dropped_silently() -> None:
    a = encode(pa.Table.from_batches([make_batch([b"a"], base_offset=0)]))
    b = encode(pa.Table.from_batches([make_batch([b"b"], base_offset=1)]), extra={"streamhouse.future": "x"})
    with pytest.raises(SegmentMergeError, match=r"streamhouse\.future"):
        merge_segments([a, b], epoch=1)


def test_a_corrupt_input_is_detected() -> None:
    a = encode(pa.Table.from_batches([make_batch([b"a" * 100, b"b"], base_offset=0)]))
    b_footer, b_data = encode(pa.Table.from_batches([make_batch([b"c" * 100], base_offset=2)]))
    rg = b_footer.row_groups[0]
    flipped = bytearray(b_data)
    flipped[(rg.byte_start + rg.byte_end) // 2] ^= 0x40
    with pytest.raises(CorruptDataError):
        merge_segments([a, (b_footer, bytes(flipped))], epoch=1)


def test_merged_keys_never_collide_with_writer_keys() -> None:
    key = merged_key("t", 3, 0, 10, 2, "abc")
    assert key == "topics/t/00003/00000000000000000000-2-merged-00000000000000000010-abc.parquet"
    assert key != merged_key("t", 3, 0, 10, 2, "abd")
