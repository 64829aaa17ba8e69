"""Per-column-chunk CRC32Cs in a segment's footer (issue 16: projected scans verify only what they read).

A segment's footer has always carried one CRC32C per row group (footer.py KEY_ROW_GROUPS), so a
reader must fetch and checksum every column of a row group to trust any of them: a scan of three
small columns of a topic whose rows carry a 200-byte JSON value read and checksummed all of it.
Segments written since this module also carry, under KEY_COLUMN_CRCS, the CRC32C of every column
chunk (row-group major, leaf columns in Parquet order), so a projected read (ours, or DataFusion's
own Parquet reader, sql/query/native.py) verifies exactly the column chunks it reads. Segments
without the key are verified per row group as before.

Writing it: the chunk byte ranges are only known once the Parquet writer closes, which is after
the key/value metadata is fixed. So the writer reserves the value (`reserve_column_crcs`: a fixed-length
placeholder holding a random nonce) before closing, and `fill_column_crcs` overwrites that placeholder in the
written footer with the real CRCs, same length: the footer's Thrift encoding is unchanged, and the
footer CRC the metadata row records is computed afterwards (format.py encode_segment).

Value format: "c1:" + 8 hex digits per column chunk + "." padding (up to the nonce's length); any
other value (e.g. "x…", written if the chunk count did not match) means "no column CRCs".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError

KEY_COLUMN_CRCS = "streamhouse.column_crcs"
_PREFIX = "c1:"
_NONCE_HEX = 32


def leaves(data_type: pa.DataType) -> int:
    """Parquet leaf columns an Arrow type is stored as."""
    if isinstance(data_type, pa.ExtensionType):
        return leaves(data_type.storage_type)
    if pa.types.is_struct(data_type):
        return sum(leaves(data_type.field(i).type) for i in range(data_type.num_fields))
    if pa.types.is_map(data_type):
        return leaves(data_type.key_type) + leaves(data_type.item_type)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type):
        return leaves(data_type.value_type)
    return 1


def reserve_column_crcs(row_groups: int, schema: pa.Schema) -> str:
    """The placeholder to put under KEY_COLUMN_CRCS before the writer closes."""
    width = max(_NONCE_HEX, 8 * row_groups * sum(leaves(f.type) for f in schema))
    return _PREFIX + os.urandom(_NONCE_HEX // 2).hex() + "0" * (width - _NONCE_HEX)


def fill_column_crcs(data: memoryview, length: int, placeholder: str, metadata: pq.FileMetaData) -> None:
    """Overwrite `placeholder` in the footer of the `length` bytes of `data` just written with
    the CRC32C of every column chunk `metadata` (the closed writer's) places in them."""
    needle = placeholder.encode()
    end = length - 8  # the footer's Thrift bytes end before the length and the magic
    start = end - int.from_bytes(data[end : length - 4], "little")
    where = bytes(data[start:end]).rfind(needle)
    if where < 0:  # cannot happen: the writer stores key/values as given
        raise RuntimeError("column CRC placeholder not found in the segment footer")
    ranges = [chunk_range(metadata, g, j) for g in range(metadata.num_row_groups) for j in range(metadata.num_columns)]
    text = _PREFIX + "".join(f"{crc32c(data[a:b]):08x}" for a, b in ranges)
    if len(text) > len(placeholder):  # the leaf count of the schema was misjudged: no CRCs
        text = "x" * len(placeholder)
    text += "." * (len(placeholder) - len(text))
    position = start + where
    data.cast("B")[position : position + len(needle)] = text.encode()


def chunk_range(metadata: pq.FileMetaData, row_group: int, leaf: int) -> tuple[int, int]:
    """Byte range [start, end) of a column chunk (dictionary page first, if any)."""
    column = metadata.row_group(row_group).column(leaf)
    start = column.data_page_offset
    if column.has_dictionary_page and column.dictionary_page_offset is not None and column.dictionary_page_offset > 0:
        start = min(start, column.dictionary_page_offset)
    return start, start + column.total_compressed_size


def column_crcs(metadata: pq.FileMetaData, source: str) -> np.ndarray[Any, np.dtype[np.uint32]] | None:
    """The CRCs of a verified footer as a [row group, leaf] array, or None (written before them)."""
    raw = (metadata.metadata or {}).get(KEY_COLUMN_CRCS.encode())
    if raw is None or not raw.startswith(_PREFIX.encode()):
        return None
    digits = raw[len(_PREFIX) :].rstrip(b".")
    groups, width = metadata.num_row_groups, metadata.num_columns
    if len(digits) != 8 * groups * width:
        found = len(digits) // 8
        raise CorruptDataError(f"footer lists {found} column CRCs for {groups}×{width} chunks", source=source)
    try:
        values = np.frombuffer(bytes.fromhex(digits.decode("ascii")), dtype=">u4").astype(np.uint32)
    except ValueError as exc:
        raise CorruptDataError(f"unreadable column CRCs in the footer: {exc}", source=source) from exc
    return values.reshape(groups, width)


def leaf_spans(metadata: pq.FileMetaData) -> dict[str, range]:
    """Each top-level physical column's Parquet leaf indices (nested ones take several leaves;
    leaves are in schema order, each top-level field's contiguous)."""
    spans: dict[str, range] = {}
    first = 0
    for f in metadata.schema.to_arrow_schema():
        count = leaves(f.type)
        spans[f.name] = range(first, first + count)
        first += count
    return spans


def leaf_columns(metadata: pq.FileMetaData, names: Sequence[str]) -> list[int]:
    """The Parquet leaf indices storing the top-level physical columns `names`."""
    spans = leaf_spans(metadata)
    return sorted({j for n in names if n in spans for j in spans[n]})


def verify_chunks(
    data: Any,
    base: int,
    metadata: pq.FileMetaData,
    crcs: np.ndarray[Any, np.dtype[np.uint32]],
    chunks: Sequence[tuple[int, int]],
    source: str,
) -> None:
    """Raise CorruptDataError unless every (row group, leaf) chunk in `chunks` has its recorded
    CRC; `data` holds the segment's bytes from file position `base` on, covering all of them."""
    view = memoryview(data)
    for g, j in chunks:
        a, b = chunk_range(metadata, g, j)
        if a < base or b - base > len(view):
            raise CorruptDataError(f"column chunk {g}/{j} lies outside the bytes read", source=source, position=a)
        if crc32c(view[a - base : b - base]) != int(crcs[g, j]):
            raise CorruptDataError(f"row group {g} column chunk {j} CRC32C mismatch", source=source, position=a)
