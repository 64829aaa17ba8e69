"""The segment footer: our key/value metadata, verifying and parsing it, pruning row groups.

Pure and IO-free. Public names are re-exported by segment_format (the module callers import).
"""

from __future__ import annotations

import base64
import bisect
import functools
import itertools
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.storage.segment._footer_check import problem
from streamhouse.storage.segment.field_ids import PARTITION_COLUMN, physical_name

# Version 2 (log compaction, issue 14) adds KEY_END_OFFSET and KEY_ROW_GROUP_OFFSETS, so a
# segment may cover an offset range holding fewer records (gaps where compaction removed
# records); version 1 segments (dense, end = last + 1) still read. Only gapped segments are
# written as version 2: dense ones stay version 1, readable by older agents during an upgrade.
# Version 3 (issue 16) is layout 2 (field_ids.py): plain Parquet other engines read natively
# (`_partition` first, plain names, `_timestamp` a UTC ms timestamp, field ids everywhere), the
# records' own Arrow schema under KEY_SCHEMA (decoders relabel to it, so what they return is
# the same for every version), dense or gapped (KEY_END_OFFSET and KEY_ROW_GROUP_OFFSETS iff
# gapped). Every segment is written as version 3 unless a writer asks for layout 1.
FORMAT_VERSION = 2
DENSE_FORMAT_VERSION = 1
LAYOUT2_FORMAT_VERSION = 3
READABLE_VERSIONS = frozenset({"1", "2", "3"})
MAGIC = b"PAR1"
TRAILER_BYTES = 8  # u32 thrift footer length + b"PAR1"

_PREFIX = "streamhouse."
KEY_FORMAT_VERSION = _PREFIX + "format_version"
KEY_TOPIC = _PREFIX + "topic"
KEY_PARTITION = _PREFIX + "partition"
KEY_BASE_OFFSET = _PREFIX + "base_offset"
KEY_LAST_OFFSET = _PREFIX + "last_offset"  # the last record's offset
KEY_END_OFFSET = _PREFIX + "end_offset"  # v2: end of the covered range (exclusive), >= last + 1
KEY_ROW_GROUP_OFFSETS = _PREFIX + "row_group_offsets"  # v2: JSON [[first, last], …] offsets per row group
KEY_EPOCH = _PREFIX + "epoch"
KEY_MIN_TIMESTAMP = _PREFIX + "min_timestamp"
KEY_MAX_TIMESTAMP = _PREFIX + "max_timestamp"
KEY_ROW_GROUPS = _PREFIX + "row_groups"  # JSON [[byte_start, byte_end, crc32c], …] per row group
KEY_SCHEMA = _PREFIX + "schema"  # v3: base64 Arrow IPC schema of the records (logical columns)

# Leaf column index of the record time: `timestamp` after `offset` (layout 1), `_timestamp`
# after `_partition` and `_offset` (layout 2).
_TIMESTAMP_LEAF = {1: 1, 2: 2}

# Everything pyarrow, thrift, json or our own parsing may raise on bad bytes. A caller must see
# only CorruptDataError, so each of these is translated where it can occur.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    pa.ArrowException,
    OSError,
    ValueError,  # includes UnicodeDecodeError and json.JSONDecodeError
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,
    struct.error,
)


@dataclass(frozen=True)
class RowGroupInfo:
    """Where one row group's bytes are, their CRC32C, and what the row group holds.

    [base_offset, end_offset) is the offset range the row group covers; in a gapped segment
    (compacted) it holds fewer rows than that, first_offset..last_offset being its records'."""

    index: int
    byte_start: int
    byte_end: int  # exclusive
    crc: int
    base_offset: int
    end_offset: int  # exclusive
    min_timestamp: int | None  # None: no statistics, so it cannot be pruned by time
    max_timestamp: int | None
    num_rows: int
    first_offset: int
    last_offset: int

    @property
    def dense(self) -> bool:
        """Whether row i holds offset base_offset + i (no gaps)."""
        return self.num_rows == self.end_offset - self.base_offset

    @property
    def num_bytes(self) -> int:
        return self.byte_end - self.byte_start


@dataclass(frozen=True, eq=False)
class SegmentFooter:
    """A verified, parsed footer. Immutable, so readers cache it by object key."""

    source: str
    size_bytes: int
    footer_length: int
    footer_crc: int
    metadata: pq.FileMetaData
    schema: pa.Schema
    topic: str
    partition: int
    epoch: int
    base_offset: int
    end_offset: int  # exclusive
    min_timestamp: int
    max_timestamp: int
    row_groups: tuple[RowGroupInfo, ...]
    # 1: the records' columns as written (versions 1, 2); 2: field_ids.py's (version 3).
    # `schema` is the records' columns either way: decoders map names through field_ids.
    layout: int = 1

    @property
    def record_count(self) -> int:
        return int(self.metadata.num_rows)

    @property
    def dense(self) -> bool:
        """Whether the segment holds every offset of [base_offset, end_offset)."""
        return self.record_count == self.end_offset - self.base_offset

    @property
    def footer_start(self) -> int:
        return self.size_bytes - self.footer_length

    # pyarrow builds these anew on every access (the key/values copy ~100 KB per footer of 47
    # row groups): every query's scan plan reads them for every segment, so they are kept.
    @functools.cached_property
    def key_values(self) -> dict[bytes, bytes]:
        """The footer's key/value metadata (shared: not to be changed)."""
        return dict(self.metadata.metadata or {})

    @functools.cached_property
    def row_group_bytes(self) -> tuple[int, ...]:
        """Each row group's uncompressed size (Parquet's total_byte_size)."""
        return tuple(self.metadata.row_group(i).total_byte_size for i in range(self.metadata.num_row_groups))


def corrupt(message: str, source: str, position: int | None) -> CorruptDataError:
    return CorruptDataError(message, source=source, position=position)


def parse_footer(
    tail: bytes | bytearray | memoryview, *, size_bytes: int, footer_crc: int, source: str
) -> SegmentFooter:
    """Verify the last `len(tail)` bytes of a segment against the CRC its metadata row
    recorded, then parse them. Any failure is a CorruptDataError naming `source`."""
    length = len(tail)
    footer_start = size_bytes - length
    if length <= TRAILER_BYTES or footer_start < len(MAGIC):
        raise corrupt(f"footer length {length} impossible for a {size_bytes}-byte segment", source, 0)
    if crc32c(tail) != footer_crc:
        raise corrupt("segment footer CRC32C mismatch", source, footer_start)
    view = memoryview(tail)
    if bytes(view[-4:]) != MAGIC or int.from_bytes(view[-8:-4], "little") != length - TRAILER_BYTES:
        raise corrupt("segment footer trailer does not match its length", source, size_bytes - TRAILER_BYTES)
    try:
        # Before any pyarrow metadata object sees it: some damage aborts them (_footer_check.c).
        shape = problem(view[:-TRAILER_BYTES])
        if shape is not None:
            raise corrupt(f"segment footer refused: {shape}", source, footer_start)
        parquet = pq.ParquetFile(pa.BufferReader(pa.py_buffer(tail)))
        metadata = parquet.metadata
        # pyarrow maps Parquet lists back to `element` fields and adds the file's key/value
        # pairs; the writer's own Arrow schema (stored by pyarrow in layout 1, by us in layout
        # 2) gives the records back exactly as they were written.
        kv = metadata.metadata or {}
        stored = kv.get(KEY_SCHEMA.encode()) or kv.get(b"ARROW:schema")
        schema = parquet.schema_arrow
        if stored:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored)))
        return _interpret(metadata, schema, parquet.schema_arrow.names, size_bytes, length, footer_crc, source)
    except CorruptDataError:
        raise
    except DECODE_ERRORS as exc:
        raise corrupt(f"unreadable segment footer: {exc!r}", source, footer_start) from exc


def _interpret(
    metadata: pq.FileMetaData,
    schema: pa.Schema,
    physical: list[str],
    size_bytes: int,
    footer_length: int,
    footer_crc: int,
    source: str,
) -> SegmentFooter:
    footer_start = size_bytes - footer_length

    def bad(message: str) -> CorruptDataError:
        return corrupt(message, source, footer_start)

    kv: Mapping[bytes, bytes] = metadata.metadata or {}
    text = {k.decode(): v.decode() for k, v in kv.items() if k.startswith(_PREFIX.encode())}
    version = text.get(KEY_FORMAT_VERSION)
    if version not in READABLE_VERSIONS:
        raise bad(f"unsupported segment format version {version!r}")
    if len(schema) < len(RECORD_SCHEMA) or any(
        not schema.field(i).equals(RECORD_SCHEMA.field(i)) for i in range(len(RECORD_SCHEMA))
    ):
        raise bad(f"segment schema does not start with the record schema: {schema}")
    layout = 2 if version == str(LAYOUT2_FORMAT_VERSION) else 1
    if layout == 2 and (
        KEY_SCHEMA not in text or physical != [PARTITION_COLUMN, *(physical_name(n) for n in schema.names)]
    ):
        raise bad(f"layout 2 columns {physical} do not match the records' {schema.names}")
    base_offset = int(text[KEY_BASE_OFFSET])
    last_offset = int(text[KEY_LAST_OFFSET])
    end = text.get(KEY_END_OFFSET)
    end_offset = int(end) if end is not None and version != "1" else last_offset + 1
    if version == "2" and end is None:
        raise bad(f"format version 2 footer without {KEY_END_OFFSET}")
    ranges = json.loads(text[KEY_ROW_GROUPS])
    if not isinstance(ranges, list) or len(ranges) != metadata.num_row_groups or not ranges:
        raise bad(f"row group list does not match the {metadata.num_row_groups} row groups")
    counts = [metadata.row_group(i).num_rows for i in range(len(ranges))]
    spans = _row_group_spans(text, version, base_offset, last_offset, end_offset, counts, bad)

    groups: list[RowGroupInfo] = []
    expected_start = len(MAGIC)
    for i, item in enumerate(ranges):
        if not (isinstance(item, list) and len(item) == 3 and all(type(v) is int for v in item)):
            raise bad(f"malformed row group entry {item!r}")
        start, end, crc = item
        if start != expected_start or end <= start or end > footer_start:
            raise bad(f"row group {i} spans impossible bytes [{start}, {end})")
        rg = metadata.row_group(i)
        stats = rg.column(_TIMESTAMP_LEAF[layout]).statistics
        # Raw: the int64 epoch ms of either layout (layout 2's min/max would be datetimes).
        lo, hi = (stats.min_raw, stats.max_raw) if stats is not None and stats.has_min_max else (None, None)
        if not (isinstance(lo, int) and isinstance(hi, int)):
            lo = hi = None
        first, last = spans[i]
        groups.append(
            RowGroupInfo(
                index=i,
                byte_start=start,
                byte_end=end,
                crc=crc,
                # A row group covers its gaps up to the next one's first record.
                base_offset=base_offset if i == 0 else first,
                end_offset=end_offset if i == len(ranges) - 1 else spans[i + 1][0],
                min_timestamp=lo,
                max_timestamp=hi,
                num_rows=counts[i],
                first_offset=first,
                last_offset=last,
            )
        )
        expected_start = end
    return SegmentFooter(
        source=source,
        size_bytes=size_bytes,
        footer_length=footer_length,
        footer_crc=footer_crc,
        metadata=metadata,
        schema=schema,
        topic=text[KEY_TOPIC],
        partition=int(text[KEY_PARTITION]),
        epoch=int(text[KEY_EPOCH]),
        base_offset=base_offset,
        end_offset=end_offset,
        min_timestamp=int(text[KEY_MIN_TIMESTAMP]),
        max_timestamp=int(text[KEY_MAX_TIMESTAMP]),
        row_groups=tuple(groups),
        layout=layout,
    )


def _row_group_spans(
    text: Mapping[str, str],
    version: str,
    base_offset: int,
    last_offset: int,
    end_offset: int,
    counts: list[int],
    bad: Callable[[str], CorruptDataError],
) -> list[tuple[int, int]]:
    """(first, last) record offset of every row group, checked to ascend inside the segment's
    range with room for each group's rows (a v1 or dense segment: consecutive runs)."""
    total = sum(counts)
    if not base_offset <= last_offset < end_offset or total < 1 or total > end_offset - base_offset:
        raise bad(f"{total} rows do not fit offsets [{base_offset}, {end_offset}) ending at {last_offset}")
    raw = text.get(KEY_ROW_GROUP_OFFSETS)
    if raw is None:
        if version == "1" and total != end_offset - base_offset:
            raise bad(f"row counts do not add up to offsets [{base_offset}, {end_offset})")
        if last_offset != base_offset + total - 1:
            raise bad(f"{total} dense rows from {base_offset} cannot end at {last_offset}")
        firsts = [base_offset, *(base_offset + c for c in itertools.accumulate(counts[:-1]))]
        return [(f, f + c - 1) for f, c in zip(firsts, counts, strict=True)]
    spans = json.loads(raw)
    if not isinstance(spans, list) or len(spans) != len(counts):
        raise bad(f"row group offsets {raw[:80]!r} do not match the {len(counts)} row groups")
    out: list[tuple[int, int]] = []
    previous = base_offset - 1
    for i, span in enumerate(spans):
        if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)):
            raise bad(f"malformed row group offsets {span!r}")
        first, last = span
        if first <= previous or last - first + 1 < counts[i] or (counts[i] == 1 and first != last):
            raise bad(f"row group {i} offsets [{first}, {last}] impossible after {previous} for {counts[i]} rows")
        out.append((first, last))
        previous = last
    if out[-1][1] != last_offset:
        raise bad(f"row group offsets end at {out[-1][1]}, the segment's last offset is {last_offset}")
    return out


def select_row_groups(
    footer: SegmentFooter,
    start_offset: int | None = None,
    end_offset: int | None = None,
    min_timestamp: int | None = None,
    max_timestamp: int | None = None,
) -> list[int]:
    """Indices of the row groups that may hold records with offset in [start_offset, end_offset)
    and timestamp in [min_timestamp, max_timestamp] (both ends inclusive); None = unbounded."""
    groups = footer.row_groups
    first = 0
    if start_offset is not None:
        first = bisect.bisect_right(groups, start_offset, key=lambda g: g.end_offset)
    stop = len(groups)
    if end_offset is not None:
        stop = bisect.bisect_left(groups, end_offset, key=lambda g: g.base_offset)
    return [
        g.index
        for g in groups[first:stop]
        if not (
            (min_timestamp is not None and g.max_timestamp is not None and g.max_timestamp < min_timestamp)
            or (max_timestamp is not None and g.min_timestamp is not None and g.min_timestamp > max_timestamp)
        )
    ]


def column_min_max(footer: SegmentFooter, index: int, column: str) -> tuple[int, int] | None:
    """Row group `index`'s raw (physical) min and max of the top-level integer-backed column
    `column` (a segment name: `timestamp`, `v.ts`; TIMESTAMP(MILLIS) gives int64 ms), from
    the footer's statistics in either layout; None if it has none (then it cannot be pruned)."""
    name = column if footer.layout == 1 else physical_name(column)
    group = footer.metadata.row_group(index)
    # Parquet leaf columns, not Arrow fields: nested columns take several leaves.
    leaf = next((j for j in range(group.num_columns) if group.column(j).path_in_schema == name), None)
    stats = None if leaf is None else group.column(leaf).statistics
    if stats is None or not stats.has_min_max:
        return None
    low, high = stats.min_raw, stats.max_raw
    return (low, high) if isinstance(low, int) and isinstance(high, int) else None
