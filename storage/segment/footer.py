"""The segment footer: our key/value metadata, verifying and parsing it, pruning row groups.

Pure and IO-free. Public names are re-exported by segment_format (the module callers import).
"""

from __future__ import annotations

import base64
import bisect
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.records.schema import RECORD_SCHEMA

FORMAT_VERSION = 1
MAGIC = b"PAR1"
TRAILER_BYTES = 8  # u32 thrift footer length + b"PAR1"

_PREFIX = "streamhouse."
KEY_FORMAT_VERSION = _PREFIX + "format_version"
KEY_TOPIC = _PREFIX + "topic"
KEY_PARTITION = _PREFIX + "partition"
KEY_BASE_OFFSET = _PREFIX + "base_offset"
KEY_LAST_OFFSET = _PREFIX + "last_offset"
KEY_EPOCH = _PREFIX + "epoch"
KEY_MIN_TIMESTAMP = _PREFIX + "min_timestamp"
KEY_MAX_TIMESTAMP = _PREFIX + "max_timestamp"
KEY_ROW_GROUPS = _PREFIX + "row_groups"  # JSON [[byte_start, byte_end, crc32c], …] per row group

_TIMESTAMP_LEAF = 1  # leaf column index of `timestamp` (offset is 0)

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
    """Where one row group's bytes are, their CRC32C, and what the row group holds."""

    index: int
    byte_start: int
    byte_end: int  # exclusive
    crc: int
    base_offset: int
    end_offset: int  # exclusive
    min_timestamp: int | None  # None: no statistics, so it cannot be pruned by time
    max_timestamp: int | None

    @property
    def num_rows(self) -> int:
        return self.end_offset - self.base_offset

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

    @property
    def record_count(self) -> int:
        return self.end_offset - self.base_offset

    @property
    def footer_start(self) -> int:
        return self.size_bytes - self.footer_length


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
        parquet = pq.ParquetFile(pa.BufferReader(pa.py_buffer(tail)))
        metadata = parquet.metadata
        # pyarrow maps Parquet lists back to `element` fields and adds the file's key/value
        # pairs; the writer's own Arrow schema (stored by pyarrow) gives the records back
        # exactly as they were written.
        stored = (metadata.metadata or {}).get(b"ARROW:schema")
        schema = parquet.schema_arrow
        if stored:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored)))
        return _interpret(metadata, schema, size_bytes, length, footer_crc, source)
    except CorruptDataError:
        raise
    except DECODE_ERRORS as exc:
        raise corrupt(f"unreadable segment footer: {exc!r}", source, footer_start) from exc


def _interpret(
    metadata: pq.FileMetaData,
    schema: pa.Schema,
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
    if text.get(KEY_FORMAT_VERSION) != str(FORMAT_VERSION):
        raise bad(f"unsupported segment format version {text.get(KEY_FORMAT_VERSION)!r}")
    if len(schema) < len(RECORD_SCHEMA) or any(
        not schema.field(i).equals(RECORD_SCHEMA.field(i)) for i in range(len(RECORD_SCHEMA))
    ):
        raise bad(f"segment schema does not start with the record schema: {schema}")
    base_offset = int(text[KEY_BASE_OFFSET])
    end_offset = int(text[KEY_LAST_OFFSET]) + 1
    ranges = json.loads(text[KEY_ROW_GROUPS])
    if not isinstance(ranges, list) or len(ranges) != metadata.num_row_groups or not ranges:
        raise bad(f"row group list does not match the {metadata.num_row_groups} row groups")

    groups: list[RowGroupInfo] = []
    expected_start, offset = len(MAGIC), base_offset
    for i, item in enumerate(ranges):
        if not (isinstance(item, list) and len(item) == 3 and all(type(v) is int for v in item)):
            raise bad(f"malformed row group entry {item!r}")
        start, end, crc = item
        if start != expected_start or end <= start or end > footer_start:
            raise bad(f"row group {i} spans impossible bytes [{start}, {end})")
        rg = metadata.row_group(i)
        stats = rg.column(_TIMESTAMP_LEAF).statistics
        lo, hi = (stats.min, stats.max) if stats is not None and stats.has_min_max else (None, None)
        if not (isinstance(lo, int) and isinstance(hi, int)):
            lo = hi = None
        groups.append(
            RowGroupInfo(
                index=i,
                byte_start=start,
                byte_end=end,
                crc=crc,
                base_offset=offset,
                end_offset=offset + rg.num_rows,
                min_timestamp=lo,
                max_timestamp=hi,
            )
        )
        expected_start, offset = end, offset + rg.num_rows
    if offset != end_offset or metadata.num_rows != end_offset - base_offset:
        raise bad(f"row counts do not add up to offsets [{base_offset}, {end_offset})")
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
    )


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
