"""Verifying and decoding segment row groups; pure, synchronous, IO-free.

Every row group is checked against the CRC32C its (already verified) footer recorded before
pyarrow sees a byte of it, so decoding only ever runs on the bytes that were written. Any
failure is still translated to CorruptDataError: a caller never sees another exception type.
Public names are re-exported by segment_format.
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.segment.field_ids import physical_name
from streamhouse.storage.segment.footer import DECODE_ERRORS, SegmentFooter, corrupt
from streamhouse.storage.segment.utf8_check import invalid_utf8_column
from streamhouse.storage.values.nested_widen import widen_column, widens

Chunk = bytes | bytearray | memoryview

# Every row group is checked against its CRC32C from the verified footer before pyarrow sees
# it, and that CRC covers every byte the page CRCs cover plus the page headers. Verifying the
# page CRCs again cost ~12% of a full read for no added safety, so our reader skips it; the
# page CRCs are still written for other Parquet readers (DuckDB, Spark, Trino).
VERIFY_PAGE_CRCS = False

_FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=VERIFY_PAGE_CRCS)
)


def verify_row_group(footer: SegmentFooter, index: int, chunk: Chunk) -> None:
    """Raise CorruptDataError unless `chunk` is exactly row group `index` as written."""
    rg = footer.row_groups[index]
    if len(chunk) != rg.num_bytes:
        raise corrupt(
            f"row group {index} has {len(chunk)} bytes, the footer says {rg.num_bytes}",
            footer.source,
            rg.byte_start,
        )
    if crc32c(chunk) != rg.crc:
        raise corrupt(f"row group {index} CRC32C mismatch", footer.source, rg.byte_start)


def decode_row_groups(
    footer: SegmentFooter,
    chunks: Mapping[int, Chunk],
    columns: Sequence[str] | None = None,
    *,
    use_threads: bool = True,
) -> pa.Table:
    """Decode the row groups in `chunks` (index → exactly that row group's bytes), in index
    order, after verifying each one. Works on any subset of a segment's row groups."""
    indices = sorted(chunks)
    _check_request(footer, indices, columns)
    if not indices:
        return _empty(footer, columns)
    for i in indices:
        verify_row_group(footer, i, chunks[i])
    sparse = _SparseFile(footer.size_bytes, [(footer.row_groups[i].byte_start, chunks[i]) for i in indices])
    return _decode(footer, pa.PythonFile(sparse, mode="r"), indices, columns, use_threads, scan=False)


def decode_segment(
    footer: SegmentFooter,
    data: Chunk,
    columns: Sequence[str] | None = None,
    row_groups: Iterable[int] | None = None,
    *,
    use_threads: bool = True,
) -> pa.Table:
    """Decode `row_groups` (default: all) from `data`, the segment's bytes from position 0 on
    (the whole object, or a prefix holding those row groups), after verifying each one.

    Positions in `data` are file positions, so pyarrow reads it in place (no Python calls)."""
    indices = sorted(set(range(len(footer.row_groups)) if row_groups is None else row_groups))
    _check_request(footer, indices, columns)
    if not indices:
        return _empty(footer, columns)
    view = memoryview(data)
    for i in indices:
        rg = footer.row_groups[i]
        if rg.byte_end > len(view):
            raise corrupt(f"segment bytes end before row group {i}", footer.source, len(view))
        verify_row_group(footer, i, view[rg.byte_start : rg.byte_end])
    source = pa.BufferReader(pa.py_buffer(data))
    if len(view) != footer.size_bytes or len(indices) != len(footer.row_groups):
        return _decode(footer, source, indices, columns, use_threads, scan=False)
    # All of the object: pyarrow's dataset scanner decodes row groups side by side, ~25% faster
    # than ParquetFile.read_row_groups. It parses the footer it finds in `data` itself, so that
    # copy must be the verified one. (Only whole files: with a subset of row groups, pyarrow 26
    # returned them out of order.)
    if crc32c(view[footer.footer_start :]) != footer.footer_crc:
        raise corrupt("segment footer CRC32C mismatch", footer.source, footer.footer_start)
    return _decode(footer, source, indices, columns, use_threads, scan=True)


def with_null_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` as `schema`'s columns in order, any it lacks as a null column of that type: a
    segment written before schema evolution added a declared column (issue 13) reads it as
    nulls, never as an error. A present column stored before nested evolution widened its ROW
    (also inside ARRAY/MAP) is widened here (nested_widen.py: the new children read as nulls,
    one vectorised cast), one stored wider than `schema` is narrowed to it; every reader of
    stored rows conforms them here. Other present columns are kept as they are (never retyped)."""
    present = set(table.column_names)
    if all(f.name in present and table.schema.field(f.name).type == f.type for f in schema):
        return table.select(schema.names)
    fields: list[pa.Field[Any]] = []
    columns: list[Any] = []
    for want in schema:
        if want.name not in present:
            fields.append(want)
            columns.append(pa.nulls(table.num_rows, want.type))
            continue
        have = table.schema.field(want.name)  # keeps NOT NULL
        column = table.column(want.name)
        # Widened by nested evolution after it was stored: widen. Stored after it, but asked
        # for by a reader holding the topic's older columns (another agent's topic cache):
        # narrow to what that reader knows, so its tables still concatenate.
        if have.type != want.type and (widens(have.type, want.type) or widens(want.type, have.type)):
            have, column = have.with_type(want.type), widen_column(column, want.type)
        fields.append(have)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _check_request(footer: SegmentFooter, indices: Sequence[int], columns: Sequence[str] | None) -> None:
    if indices and not (indices[0] >= 0 and indices[-1] < len(footer.row_groups)):
        raise InvalidInputError(f"row groups {indices} out of range 0..{len(footer.row_groups) - 1}")
    if columns is not None:
        unknown = [c for c in columns if c not in footer.schema.names]
        if unknown:
            raise InvalidInputError(f"unknown segment columns {unknown}; it has {footer.schema.names}")


def _empty(footer: SegmentFooter, columns: Sequence[str] | None) -> pa.Table:
    table = footer.schema.empty_table()
    return table if columns is None else table.select(list(columns))


def _decode(
    footer: SegmentFooter,
    source: pa.NativeFile,
    indices: list[int],
    columns: Sequence[str] | None,
    use_threads: bool,
    *,
    scan: bool,
) -> pa.Table:
    names = footer.schema.names if columns is None else list(columns)
    # Offsets are always decoded (cheap: delta-encoded) to check the rows came back in order.
    read = names if "offset" in names else ["offset", *names]
    # Layout 2 stores them under field_ids.py's names; they are read as those and relabelled.
    stored = read if footer.layout == 1 else [physical_name(n) for n in read]
    position = footer.row_groups[indices[0]].byte_start
    try:
        if scan:
            fragment = _FORMAT.make_fragment(source)  # type: ignore[arg-type]  # stubs omit NativeFile
            table = fragment.to_table(columns=stored, use_threads=use_threads)
        else:
            parquet = pq.ParquetFile(
                source, metadata=footer.metadata, page_checksum_verification=VERIFY_PAGE_CRCS, pre_buffer=False
            )
            table = parquet.read_row_groups(indices, columns=stored, use_threads=use_threads)
        if footer.layout != 1:
            table = table.rename_columns(read)
        in_order = _offsets_match(footer, indices, table.column("offset"))
        # Zero-copy relabelling to the schema as written (list field names, column order;
        # layout 2: `_timestamp` back to int64 ms, types pyarrow's own schema would restore).
        table = table.select(names).cast(_project(footer.schema, names))
        # pyarrow's Parquet reader does not check UTF-8 (damage behind a matching CRC).
        not_utf8 = invalid_utf8_column(table)
    except DECODE_ERRORS as exc:
        raise corrupt(f"undecodable row groups {indices}: {exc!r}", footer.source, position) from exc
    if not in_order:
        raise corrupt(f"row groups {indices} decoded to other rows than written", footer.source, position)
    if not_utf8 is not None:
        raise corrupt(f"row groups {indices} decoded invalid UTF-8 in column {not_utf8!r}", footer.source, position)
    return table


def _offsets_match(footer: SegmentFooter, indices: list[int], offsets: pa.ChunkedArray[Any]) -> bool:
    """Whether every decoded batch sits where its rows belong. Batches are decoded sequentially
    from within one row group, so checking each chunk's first and last offset catches row
    groups or batches returned out of order without touching every value. A gapped segment
    (compacted) has no offset arithmetic to check against: its offsets are checked whole
    (vectorised) to ascend strictly and to start and end each row group where the footer says."""
    groups = [footer.row_groups[i] for i in indices]
    if len(offsets) != sum(g.num_rows for g in groups) or offsets.null_count:
        return False
    firsts = np.cumsum([0, *(g.num_rows for g in groups)])  # row position where each group starts
    if not footer.dense:
        values = offsets.to_numpy()
        return bool(
            (np.diff(values) > 0).all()
            and (values[firsts[:-1]] == [g.first_offset for g in groups]).all()
            and (values[firsts[1:] - 1] == [g.last_offset for g in groups]).all()
        )

    def expected(row: int) -> int:
        g = int(np.searchsorted(firsts, row, side="right")) - 1
        return groups[g].base_offset + row - int(firsts[g])

    row = 0
    for chunk in offsets.chunks:
        if len(chunk):
            values = chunk.to_numpy()
            if values[0] != expected(row) or values[-1] != expected(row + len(chunk) - 1):
                return False
        row += len(chunk)
    return True


def _project(schema: pa.Schema, names: Sequence[str]) -> pa.Schema:
    metadata: dict[bytes | str, bytes | str] = {k: v for k, v in (schema.metadata or {}).items()}
    return pa.schema([schema.field(n) for n in names], metadata=metadata or None)


class _SparseFile(io.IOBase):
    """A read-only file (for pa.PythonFile) serving only the fetched row groups' byte ranges.

    A read anywhere else fails, so nothing unverified can be decoded even if pyarrow's access
    pattern changed. Reads return memoryview slices: pyarrow wraps them without copying.
    """

    def __init__(self, size: int, pieces: list[tuple[int, Chunk]]) -> None:
        super().__init__()
        self._size = size
        self._starts = [start for start, _ in pieces]
        self._views = [memoryview(chunk) for _, chunk in pieces]
        self._position = 0

    def read(self, nbytes: int = -1) -> memoryview:
        start = self._position
        end = self._size if nbytes < 0 else min(start + nbytes, self._size)
        i = bisect.bisect_right(self._starts, start) - 1
        if i < 0 or end > self._starts[i] + len(self._views[i]):
            raise OSError(f"read of bytes [{start}, {end}) outside the fetched row groups")
        self._position = end
        return self._views[i][start - self._starts[i] : end - self._starts[i]]

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False
