"""Segment files (docs/DESIGN.md §4): a Parquet file per segment, encoded here; pure, synchronous, IO-free.

Layout: b"PAR1" | row group 0 | … | row group n-1 | page index | thrift footer | u32 length | b"PAR1".

Parquet's page CRCs cover page *data* only, not page headers or the footer, so a flipped byte
in a page header could decode to wrong records. We therefore record (byte_start, byte_end,
CRC32C) of every row group in the footer's key/value metadata, and the segment's metadata row
carries the footer's length and CRC32C (SegmentRef). A reader verifies the footer against the
ref and each fetched row group against the footer before decoding, so every byte it decodes is
verified. The page index and the leading magic are never read, so they need no cover.

Layout 2 (footer format version 3, the default since issue 16; segment/field_ids.py) stores
the same records as plain Parquet other engines read natively: `_partition` first, plain names,
`_timestamp` a UTC ms timestamp, field ids on every column. The records' own Arrow schema is in
the footer, and decoding relabels to it, so every reader gets the same table from either layout.

This module is the one callers import; reading is split out for size and re-exported here:
segment/footer.py (verify and parse the footer, prune row groups) and segment/decode.py
(verify and decode row groups).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import SegmentInfo, SegmentRef
from streamhouse.storage.records.control import footer_metadata
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.storage.segment.column_crcs import KEY_COLUMN_CRCS, fill_column_crcs, reserve_column_crcs
from streamhouse.storage.segment.decode import decode_row_groups, decode_segment
from streamhouse.storage.segment.field_ids import PARTITION_COLUMN, physical_name, physical_table
from streamhouse.storage.segment.footer import (
    DENSE_FORMAT_VERSION,
    FORMAT_VERSION,
    KEY_BASE_OFFSET,
    KEY_END_OFFSET,
    KEY_EPOCH,
    KEY_FORMAT_VERSION,
    KEY_LAST_OFFSET,
    KEY_MAX_TIMESTAMP,
    KEY_MIN_TIMESTAMP,
    KEY_PARTITION,
    KEY_ROW_GROUP_OFFSETS,
    KEY_ROW_GROUPS,
    KEY_SCHEMA,
    KEY_TOPIC,
    LAYOUT2_FORMAT_VERSION,
    TRAILER_BYTES,
    RowGroupInfo,
    SegmentFooter,
    column_min_max,
    parse_footer,
    select_row_groups,
)

__all__ = [
    "DEFAULT_ROW_GROUP_BYTES",
    "FORMAT_VERSION",
    "LAYOUT",
    "EncodedSegment",
    "RowGroupInfo",
    "SegmentFooter",
    "column_min_max",
    "decode_row_groups",
    "decode_segment",
    "encode_segment",
    "parse_footer",
    "select_row_groups",
]

DEFAULT_ROW_GROUP_BYTES = 1 << 20
# Arrow's writer silently splits row groups longer than this (its max_row_group_length default);
# we must never let it, or our per-row-group CRC list would not line up with the row groups.
MAX_ROWS_PER_GROUP = 1 << 20

_RECORD_COLUMNS = len(RECORD_SCHEMA)
_DELTA = "DELTA_BINARY_PACKED"
# The layout new segments are written in (field_ids.py: 2, Parquet other engines read natively,
# footer version 3). Layout 1 stays writable for tests and for agents that must still be read
# by older ones during an upgrade (they refuse version 3); every version stays readable.
LAYOUT = 2


@dataclass(frozen=True)
class EncodedSegment:
    """One encoded segment and the facts its metadata row needs."""

    data: bytes
    base_offset: int
    end_offset: int  # exclusive
    record_count: int
    min_timestamp: int
    max_timestamp: int
    footer_length: int  # thrift footer + 4-byte length + b"PAR1"
    footer_crc: int  # CRC32C of the last footer_length bytes
    size_bytes: int
    row_group_count: int

    def ref(self, object_key: str) -> SegmentRef:
        return SegmentRef(object_key, self.size_bytes, self.footer_length, self.footer_crc)

    def info(self, *, topic: str, partition: int, object_key: str, epoch: int) -> SegmentInfo:
        """The metadata row of this segment once it is stored at `object_key`."""
        return SegmentInfo(
            topic=topic,
            partition=partition,
            base_offset=self.base_offset,
            end_offset=self.end_offset,
            min_timestamp=self.min_timestamp,
            max_timestamp=self.max_timestamp,
            size_bytes=self.size_bytes,
            object_key=object_key,
            epoch=epoch,
            footer_length=self.footer_length,
            footer_crc=self.footer_crc,
        )


def encode_segment(
    table: pa.Table | pa.RecordBatch,
    *,
    topic: str,
    partition: int,
    epoch: int,
    row_group_bytes: int = DEFAULT_ROW_GROUP_BYTES,
    extra_metadata: Mapping[str, str] | None = None,
    covers: tuple[int, int] | None = None,
    layout: int = LAYOUT,
) -> EncodedSegment:
    """Encode records (RECORD_SCHEMA columns first, then any extra typed columns) as a segment.

    Offsets must be contiguous and ascending (a roll, a merge of dense segments); timestamps
    may be in any order. `covers` = (base, end): the offset range a compacted segment stands
    for; its offsets need only ascend strictly within it (gaps are where compaction removed
    records) and the footer has KEY_END_OFFSET and KEY_ROW_GROUP_OFFSETS (layout 1: version 2).
    `extra_metadata` joins the footer's key/value metadata (e.g. JSON decode errors).
    `layout` 2 (default) writes field_ids.py's columns as format version 3, whatever `covers`.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    _validate(table, row_group_bytes)
    if layout not in (1, 2):
        raise InvalidInputError(f"segment layout must be 1 or 2, got {layout}")
    n = table.num_rows
    offsets = table.column(0).to_numpy()
    first, last = int(offsets[0]), int(offsets[-1])
    if covers is None:
        if first < 0 or (n > 1 and not bool((np.diff(offsets) == 1).all())):
            raise InvalidInputError("segment offsets must be contiguous, ascending and non-negative")
        base_offset, end_offset = first, first + n
    else:
        base_offset, end_offset = covers
        if not 0 <= base_offset <= first or last >= end_offset or (n > 1 and not bool((np.diff(offsets) > 0).all())):
            raise InvalidInputError(
                f"compacted segment offsets must ascend strictly within [{base_offset}, {end_offset}), "
                f"got {first}..{last}"
            )
    gapped = n != end_offset - base_offset  # a compaction that removed nothing stays version 1
    ts_range = pc.min_max(table.column(1))
    min_ts, max_ts = int(ts_range["min"].as_py()), int(ts_range["max"].as_py())
    version = LAYOUT2_FORMAT_VERSION if layout == 2 else FORMAT_VERSION if gapped else DENSE_FORMAT_VERSION
    metadata = {
        KEY_FORMAT_VERSION: str(version),
        KEY_TOPIC: topic,
        KEY_PARTITION: str(partition),
        KEY_BASE_OFFSET: str(base_offset),
        KEY_LAST_OFFSET: str(last),
        KEY_EPOCH: str(epoch),
        KEY_MIN_TIMESTAMP: str(min_ts),
        KEY_MAX_TIMESTAMP: str(max_ts),
        **(extra_metadata or {}),
        **footer_metadata(table),  # Kafka transaction markers' offsets (storage/records/control.py)
    }
    bounds = _row_group_bounds(table, row_group_bytes)
    written = table
    if layout == 2:
        # Our own copy of the records' schema: pyarrow's (ARROW:schema) would be layout 2's,
        # and other engines need none (it would only be a second schema to keep consistent).
        metadata[KEY_SCHEMA] = base64.b64encode(table.schema.serialize().to_pybytes()).decode()
        written = physical_table(table, partition)
    if gapped:
        metadata[KEY_END_OFFSET] = str(end_offset)
        spans = [[int(offsets[lo]), int(offsets[hi - 1])] for lo, hi in itertools.pairwise(bounds)]
        metadata[KEY_ROW_GROUP_OFFSETS] = json.dumps(spans, separators=(",", ":"))
    # Parquet is rarely larger than the Arrow data; if a guess falls short, the write fails
    # cleanly ("out of bounds") and is redone in a buffer twice the size.
    capacity = table.nbytes + table.nbytes // 4 + 16_384 * len(bounds) * (table.num_columns + 2) + (1 << 20)
    while True:
        try:
            data, row_groups = _write(written, bounds, metadata, pa.allocate_buffer(capacity), layout)
            break
        except OSError as exc:
            if "out of bounds" not in str(exc):
                raise
            capacity *= 2
    footer_length = int.from_bytes(data[-TRAILER_BYTES:-4], "little") + TRAILER_BYTES
    return EncodedSegment(
        data=data,
        base_offset=base_offset,
        end_offset=end_offset,
        record_count=n,
        min_timestamp=min_ts,
        max_timestamp=max_ts,
        footer_length=footer_length,
        footer_crc=crc32c(memoryview(data)[-footer_length:]),
        size_bytes=len(data),
        row_group_count=row_groups,
    )


def _write(
    table: pa.Table, bounds: Sequence[int], metadata: dict[str, str], buffer: pa.Buffer, layout: int
) -> tuple[bytes, int]:
    """Write the Parquet file into `buffer`; returns its bytes and the number of row groups.

    Arrow writes straight into our buffer, so each row group's bytes can be checksummed as
    soon as it is written; the CRC list must be in the footer, which is written at close.
    """
    # Layout 2 has `_partition` first: a constant, so dictionary-encoded (a few bytes per row
    # group) with statistics (pyiceberg's add_files reads the partition value from them).
    lead = [PARTITION_COLUMN] if layout == 2 else []
    name = physical_name if layout == 2 else str
    extra = table.schema.names[_RECORD_COLUMNS + len(lead) :]
    offset, timestamp = name("offset"), name("timestamp")
    sink = pa.FixedSizeBufferWriter(buffer)
    view = memoryview(buffer)
    ranges: list[list[int]] = []
    try:
        writer = pq.ParquetWriter(
            sink,
            table.schema,
            compression="lz4",  # written as LZ4_RAW
            # Dictionaries pay off for typed columns decoded from JSON (low-cardinality strings),
            # not for opaque keys and values; offset and timestamp are delta-encoded instead.
            use_dictionary=[*lead, *extra] or False,  # type: ignore[arg-type]  # stubs say bool; a list is documented
            column_encoding={offset: _DELTA, timestamp: _DELTA},
            # Statistics prune by offset, time and typed columns; min/max of opaque values
            # would only bloat the footer every reader fetches.
            write_statistics=[*lead, offset, timestamp, *extra],
            write_page_index=True,
            write_page_checksum=True,
            sorting_columns=[pq.SortingColumn(len(lead))],
            store_schema=layout == 1,
        )
        start = sink.tell()  # after the leading magic
        for lo, hi in itertools.pairwise(bounds):
            # Arrow closes each column chunk inside write_table, so the sink position after
            # the call is exactly where the row group ends (tests check this against the footer).
            writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
            end = sink.tell()
            ranges.append([start, end, crc32c(view[start:end])])
            start = end
        # Column chunk CRCs (column_crcs.py): reserved now, filled in once the writer closed.
        reserved = reserve_column_crcs(len(ranges), table.schema)
        writer.add_key_value_metadata(
            {**metadata, KEY_ROW_GROUPS: json.dumps(ranges, separators=(",", ":")), KEY_COLUMN_CRCS: reserved}
        )
        writer.close()
        fill_column_crcs(view, sink.tell(), reserved, writer.writer.metadata)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"records cannot be stored as a segment: {exc}") from exc
    return buffer.slice(0, sink.tell()).to_pybytes(), len(ranges)


def _validate(table: pa.Table, row_group_bytes: int) -> None:
    if table.num_rows == 0:
        raise InvalidInputError("a segment holds at least one record")
    if row_group_bytes <= 0:
        raise InvalidInputError(f"row_group_bytes must be positive, got {row_group_bytes}")
    schema = table.schema
    if len(schema) < _RECORD_COLUMNS or any(
        not schema.field(i).equals(RECORD_SCHEMA.field(i)) for i in range(_RECORD_COLUMNS)
    ):
        raise InvalidInputError(f"segment columns must start with the record schema {RECORD_SCHEMA}")
    if len(set(schema.names)) != len(schema.names):
        raise InvalidInputError(f"duplicate column names in {schema.names}")
    if table.column(0).null_count or table.column(1).null_count:
        raise InvalidInputError("offset and timestamp may not be null")


def _row_group_bounds(table: pa.Table, target_bytes: int) -> Sequence[int]:
    """Row indices where row groups start (plus the end), cutting at every `target_bytes`.

    Sizes count each row's key and value bytes plus an even share of everything else, so a
    few large values do not make one oversized row group (averages alone would).
    """
    n = table.num_rows
    varying = _bytes_before(table.column("key")) + _bytes_before(table.column("value"))
    share = max(0, table.nbytes - int(varying[-1])) // n
    before = varying[:-1] + np.arange(n, dtype=np.int64) * share  # estimated bytes preceding each row
    # A row starts a new group when a multiple of the target falls in (before[i-1], before[i]].
    thresholds = np.arange(target_bytes, int(before[-1]) + 1, target_bytes, dtype=np.int64)
    starts = [0, *np.unique(np.searchsorted(before, thresholds)).tolist(), n]
    bounds = [0]
    for hi in starts[1:]:
        while hi - bounds[-1] > MAX_ROWS_PER_GROUP:
            bounds.append(bounds[-1] + MAX_ROWS_PER_GROUP)
        bounds.append(hi)
    return bounds


def _bytes_before(column: pa.ChunkedArray[Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Cumulative value bytes before each row (n + 1 entries), straight from the offsets
    buffers: no per-value lengths, no copies of the data."""
    pieces = [np.zeros(1, dtype=np.int64)]
    total = 0
    for chunk in column.chunks:
        offsets = chunk.buffers()[1]
        if len(chunk) == 0 or offsets is None:
            continue
        raw = np.frombuffer(memoryview(offsets), dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        pieces.append(raw[1:].astype(np.int64) - int(raw[0]) + total)
        total += int(raw[-1]) - int(raw[0])
    return np.concatenate(pieces)
