"""Segments with gaps (compacted, issue 14): encoded with `covers=`, footer version 2, read by
offset bounds and row counts exactly as a brute-force filter of the records says, merged, and
refused where an ordinary roll would be wrong."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import CorruptDataError, InvalidInputError
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from streamhouse.storage.segment import footer as f
from streamhouse.storage.segment.format import decode_segment, encode_segment, parse_footer
from streamhouse.storage.segment.merge import merge_segments
from streamhouse.storage.segment.reader import SegmentReader


def gapped(offsets: list[int]) -> pa.Table:
    n = len(offsets)
    batch = make_batch([f"v{o}".encode() for o in offsets], keys=[b"k"] * n, timestamps=[10 * o for o in offsets])
    table = pa.Table.from_batches([batch], schema=RECORD_SCHEMA)
    return table.set_column(0, RECORD_SCHEMA.field(0), pa.array(offsets, pa.int64()))


def parsed(encoded: object) -> f.SegmentFooter:
    e = encoded  # EncodedSegment
    return parse_footer(e.data[-e.footer_length :], size_bytes=e.size_bytes, footer_crc=e.footer_crc, source="g")  # type: ignore[attr-defined]


offsets_strategy = st.lists(st.integers(1, 5), min_size=1, max_size=40).map(lambda s: np.cumsum(s).tolist())


@settings(max_examples=30, deadline=None)
@given(
    offsets=offsets_strategy,
    lead=st.integers(0, 3),
    tail=st.integers(0, 3),
    group=st.sampled_from([40, 200, 1 << 20]),
    bounds=st.lists(st.tuples(st.integers(0, 220), st.integers(0, 60), st.integers(1, 30)), min_size=1, max_size=6),
)
def test_reads_of_a_gapped_segment_match_a_filter(
    tmp_path_factory: pytest.TempPathFactory,
    offsets: list[int],
    lead: int,
    tail: int,
    group: int,
    bounds: list[tuple[int, int, int]],
) -> None:
    base, end = max(0, offsets[0] - lead), offsets[-1] + 1 + tail
    encoded = encode_segment(
        gapped(offsets), topic="t", partition=0, epoch=1, row_group_bytes=group, covers=(base, end)
    )
    footer = parsed(encoded)
    assert (footer.base_offset, footer.end_offset, footer.record_count) == (base, end, len(offsets))
    assert footer.dense == (len(offsets) == end - base)
    assert decode_segment(footer, encoded.data).column("offset").to_pylist() == offsets

    async def reads() -> None:
        store = open_object_store(f"file://{tmp_path_factory.mktemp('gaps')}")
        await store.put("s", encoded.data, if_absent=True)
        reader = SegmentReader(store, whole_object_bytes=0)  # row groups fetched by range
        for start, span, rows in bounds:
            got = await reader.read(encoded.ref("s"), start_offset=start, end_offset=start + span, columns=["value"])
            inside = [o for o in offsets if start <= o < start + span]
            assert got.column("value").to_pylist() == [f"v{o}".encode() for o in inside]
            # A fetch counts records: `rows` of them from `start`, whatever gaps lie between.
            got = await reader.read(encoded.ref("s"), start_offset=start, max_rows=rows)
            assert got.column("offset").to_pylist() == [o for o in offsets if o >= start][:rows]
        await store.close()

    asyncio.run(reads())


def test_ordinary_rolls_still_refuse_gaps_and_dense_segments_stay_version_1() -> None:
    with pytest.raises(InvalidInputError, match="contiguous"):
        encode_segment(gapped([0, 2]), topic="t", partition=0, epoch=1)
    with pytest.raises(InvalidInputError, match="within"):
        encode_segment(gapped([3, 5]), topic="t", partition=0, epoch=1, covers=(4, 10))
    with pytest.raises(InvalidInputError, match="within"):
        encode_segment(gapped([3, 5]), topic="t", partition=0, epoch=1, covers=(0, 5))
    for layout, versions in ((1, (b"1", b"2")), (2, (b"3", b"3"))):  # layout 2: version 3, either way
        dense = parsed(encode_segment(gapped([4, 5, 6]), topic="t", partition=0, epoch=1, covers=(4, 7), layout=layout))
        kv = dense.metadata.metadata or {}
        assert kv[f.KEY_FORMAT_VERSION.encode()] == versions[0] and dense.dense and f.KEY_END_OFFSET.encode() not in kv
        holey = parsed(encode_segment(gapped([4, 6]), topic="t", partition=0, epoch=1, covers=(0, 9), layout=layout))
        kv = holey.metadata.metadata or {}
        assert kv[f.KEY_FORMAT_VERSION.encode()] == versions[1] and kv[f.KEY_END_OFFSET.encode()] == b"9"
        assert kv[f.KEY_LAST_OFFSET.encode()] == b"6" and (holey.base_offset, holey.end_offset) == (0, 9)


def test_a_footer_whose_row_group_offsets_lie_is_corrupt() -> None:
    encoded = encode_segment(gapped([1, 5, 9]), topic="t", partition=0, epoch=1, covers=(0, 10))
    metadata = dict(parsed(encoded).metadata.metadata or {})
    text = {k.decode(): v.decode() for k, v in metadata.items() if k.startswith(b"streamhouse.")}
    spans = [(text, "[[1,12]]"), (text, "[[1,9],[10,11]]"), (text, "[[1,2]]")]
    for kv, lie in spans:
        bad = {**kv, f.KEY_ROW_GROUP_OFFSETS: lie}
        with pytest.raises(CorruptDataError):
            f._row_group_spans(bad, "2", 0, 9, 10, [3], lambda m: CorruptDataError(m, source="x", position=0))


def test_gapped_neighbours_merge_into_one_gapped_segment() -> None:
    a = encode_segment(gapped([1, 3]), topic="t", partition=0, epoch=1, covers=(0, 5))
    b = encode_segment(gapped([5, 6, 7]), topic="t", partition=0, epoch=1)
    merged = merge_segments([(parsed(a), a.data), (parsed(b), b.data)], epoch=1)
    footer = parsed(merged)
    assert (footer.base_offset, footer.end_offset, footer.record_count) == (0, 8, 5)
    assert decode_segment(footer, merged.data).column("offset").to_pylist() == [1, 3, 5, 6, 7]


def test_a_compacted_segment_merges_with_its_clean_history() -> None:
    from streamhouse.storage.segment.compact import CleanHistory
    from streamhouse.storage.segment.compacted import compact_segments

    a = encode_segment(gapped([0, 1, 2]), topic="t", partition=0, epoch=1)
    b = encode_segment(gapped([3, 4]), topic="t", partition=0, epoch=1)
    compacted = compact_segments([(parsed(a), a.data)], [[0]], now_ms=77, delete_retention_ms=10).segments[0]
    merged = merge_segments([(parsed(compacted), compacted.data), (parsed(b), b.data)], epoch=1)
    footer = parsed(merged)
    # Offsets below 3 were cleaned at 77; 3 and 4 never (a later pass ages them from its own time).
    assert CleanHistory.from_footer(footer.metadata.metadata) == [(3, 77)]
    assert decode_segment(footer, merged.data).column("offset").to_pylist() == [2, 3, 4]
