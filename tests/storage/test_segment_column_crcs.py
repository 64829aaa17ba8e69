"""Per-column-chunk CRC32Cs in the segment footer (storage/segment/column_crcs.py): every column
chunk of every row group has the CRC of exactly its bytes, nested columns included, in both
layouts and in merged output; a damaged chunk is found and named; a footer without them says so."""

from __future__ import annotations

import io
import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.segment.column_crcs import chunk_range, column_crcs, leaf_columns, verify_chunks
from streamhouse.storage.segment.merge import merge_segments
from tests.storage.test_segment_layout2 import encoded, records


@pytest.mark.parametrize("layout", [1, 2])
def test_every_column_chunk_has_the_crc_of_its_bytes(layout: int) -> None:
    footer, data = encoded(records(600), layout)
    metadata = footer.metadata
    crcs = column_crcs(metadata, "seg")
    assert crcs is not None and len(footer.row_groups) > 3
    assert crcs.shape == (len(footer.row_groups), metadata.num_columns)
    for g, rg in enumerate(footer.row_groups):
        ranges = [chunk_range(metadata, g, j) for j in range(metadata.num_columns)]
        # The chunks tile their row group: checking them all checks all of its bytes.
        assert ranges[0][0] == rg.byte_start and ranges[-1][1] == rg.byte_end
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert [crc32c(data[a:b]) for a, b in ranges] == crcs[g].tolist()


def test_leaves_of_nested_columns_and_a_damaged_chunk() -> None:
    footer, data = encoded(records(600), 2)
    metadata = footer.metadata
    crcs = column_crcs(metadata, "seg")
    assert crcs is not None
    headers = leaf_columns(metadata, ["_headers"])
    bid = leaf_columns(metadata, ["bid"])  # ROW<who, items ARRAY<ROW<sku, qty>>>: 3 leaves
    assert len(headers) == 2 and len(bid) == 3 and leaf_columns(metadata, ["price", "ts"]) == [bid[0] - 2, bid[0] - 1]
    chunks = [(g, j) for g in range(len(footer.row_groups)) for j in leaf_columns(metadata, ["price", "bid"])]
    verify_chunks(data, 0, metadata, crcs, chunks, "seg")
    a, b = chunk_range(metadata, 2, bid[1])
    damaged = bytearray(data)
    damaged[(a + b) // 2] ^= 1
    with pytest.raises(CorruptDataError, match=f"row group 2 column chunk {bid[1]} CRC32C mismatch"):
        verify_chunks(bytes(damaged), 0, metadata, crcs, chunks, "seg")
    # Only what is checked counts: the other columns' chunks are not read.
    verify_chunks(bytes(damaged), 0, metadata, crcs, [c for c in chunks if c != (2, bid[1])], "seg")


def test_merged_segments_carry_their_own_and_plain_parquet_has_none() -> None:
    first, second = encoded(records(300), 2), encoded(records(300, base=300), 2)
    merged = merge_segments([first, second], epoch=2)
    metadata = pq.ParquetFile(io.BytesIO(merged.data)).metadata
    crcs = column_crcs(metadata, "merged")
    assert crcs is not None
    ranges = [chunk_range(metadata, 0, j) for j in range(metadata.num_columns)]
    assert crcs[0].tolist() == [crc32c(merged.data[a:b]) for a, b in ranges]
    plain = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    assert column_crcs(pq.ParquetFile(io.BytesIO(plain.getvalue())).metadata, "plain") is None
