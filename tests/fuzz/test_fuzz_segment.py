"""Fuzz of segment decoding (storage/segment/footer.py, decode.py): what a reader takes from the
object store. A damaged footer whose CRC was recomputed (so the Parquet/thrift parser and our key
checks see hostile bytes), and damaged row groups under a footer whose recorded CRC matches them
(so pyarrow decodes hostile pages), give a verified footer / a table of the written schema or
CorruptDataError, never anything else. (A footer whose column chunk metadata aborted the process:
test_segment_footer_aborts.py.)"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.segment.decode import decode_row_groups, decode_segment
from streamhouse.storage.segment.format import EncodedSegment, SegmentFooter, encode_segment, parse_footer
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import mutations, record_batches

SOURCE = "fuzz-segment"


@st.composite
def segments(draw: st.DrawFn) -> EncodedSegment:
    batch = draw(record_batches(max_records=12, allow_big=False).filter(lambda b: b.num_rows > 0))
    row_group_bytes = draw(st.sampled_from((64, 256, 1 << 20)))
    return encode_segment(batch, topic="t", partition=1, epoch=3, row_group_bytes=row_group_bytes)


def footer_of(seg: EncodedSegment) -> SegmentFooter:
    tail = seg.data[-seg.footer_length :]
    return parse_footer(tail, size_bytes=seg.size_bytes, footer_crc=seg.footer_crc, source=SOURCE)


@st.composite
def damaged_footers(draw: st.DrawFn) -> tuple[bytes, int]:
    """(tail, size_bytes): a segment's footer bytes damaged, sometimes with a wrong length."""
    seg = draw(segments())
    tail = draw(mutations(st.just(seg.data[-seg.footer_length :]), max_ops=3))
    size = draw(st.one_of(st.just(seg.size_bytes), st.integers(0, 2 * seg.size_bytes)))
    return tail, size


@fuzz(150)
@given(damaged_footers())
def test_damaged_footers_under_a_valid_crc_parse_or_raise_corrupt_data(case: tuple[bytes, int]) -> None:
    tail, size = case
    with bounded():
        try:
            footer = parse_footer(tail, size_bytes=size, footer_crc=crc32c(tail), source=SOURCE)
        except CorruptDataError as exc:
            assert exc.source == SOURCE
            return
    assert footer.row_groups and footer.base_offset <= footer.end_offset


@st.composite
def damaged_row_groups(draw: st.DrawFn) -> tuple[SegmentFooter, bytes, dict[int, bytes]]:
    """A footer whose row group CRCs (and extents) were rewritten to match damaged row groups: the
    segment bytes with the damage in place, and the damaged chunks."""
    seg = draw(segments())
    footer = footer_of(seg)
    index = draw(st.integers(0, len(footer.row_groups) - 1))
    rg = footer.row_groups[index]
    chunk = draw(mutations(st.just(seg.data[rg.byte_start : rg.byte_end]), max_ops=3))
    groups = list(footer.row_groups)
    groups[index] = dataclasses.replace(rg, byte_end=rg.byte_start + len(chunk), crc=crc32c(chunk))
    data = seg.data[: rg.byte_start] + chunk + seg.data[rg.byte_end :]
    chunks = {i: seg.data[g.byte_start : g.byte_end] for i, g in enumerate(footer.row_groups) if i != index}
    chunks[index] = chunk
    return dataclasses.replace(footer, row_groups=tuple(groups), size_bytes=len(data)), data, chunks


def check_table(footer: SegmentFooter, table: pa.Table) -> None:
    assert table.schema.names == footer.schema.names
    table.validate(full=True)  # UTF-8 too: decode checks what pyarrow's Parquet reader does not


def test_a_header_key_damaged_to_invalid_utf8_under_a_matching_crc_is_corrupt_data() -> None:
    # Found by the fuzz below: decode returned a `headers` key that was not UTF-8.
    batch = make_batch([b"v"], keys=[b"k"], timestamps=[1000], headers=[[("abc", b"x")]], base_offset=5)
    seg = encode_segment(batch, topic="t", partition=1, epoch=3)
    footer = footer_of(seg)
    rg = footer.row_groups[0]
    chunk = seg.data[rg.byte_start : rg.byte_end]
    at = chunk.index(b"abc") + 1
    chunk = chunk[:at] + b"\xff" + chunk[at + 1 :]
    footer = dataclasses.replace(footer, row_groups=(dataclasses.replace(rg, crc=crc32c(chunk)),))
    data = seg.data[: rg.byte_start] + chunk + seg.data[rg.byte_end :]
    for decode in (lambda: decode_row_groups(footer, {0: chunk}), lambda: decode_segment(footer, data)):
        with pytest.raises(CorruptDataError, match="invalid UTF-8 in column 'headers'"):
            decode()


@fuzz(100)
@given(damaged_row_groups(), st.booleans())
def test_damaged_row_groups_under_a_matching_crc_decode_or_raise_corrupt_data(
    case: tuple[SegmentFooter, bytes, dict[int, bytes]], whole: bool
) -> None:
    footer, data, chunks = case
    with bounded():
        try:
            table = decode_segment(footer, data) if whole else decode_row_groups(footer, chunks)
        except CorruptDataError as exc:
            assert exc.source == SOURCE
            return
    check_table(footer, table)
