"""The integrity checks of the segment files DataFusion reads itself (native.py).

Every column chunk DataFusion may read is checked against the CRC32C the writer recorded for it
(storage/segment/column_crcs.py), and the footer it parses against the CRC its metadata row
records; no answer leaves run_query before those checks passed.

Cheaper than the first version (issue 16: the bench's TUMBLE spent ~15 % of its CPU here at
10 M bids, beside DataFusion on the same two cores):
- Each file's checks are one worker's loop of `pread`s into one reused buffer, chunks closer
  than _GAP read together; no mmap (mapping and unmapping ~100 files per query faulted every
  page in and shot down the TLBs of DataFusion's threads), no thread hand-off per file.
- What passed is remembered for the process: per footer (the reader's footer cache holds them;
  this map lets go of a footer when it does), the file's identity when checked (device, inode,
  size, modification time) and the (row group, leaf) chunks that matched. A later query checks
  only chunks not checked yet; a file whose identity changed (rewritten, replaced) is checked
  again in full, footer first. Segment objects are never rewritten in place (a new object key
  per write), so a changed identity can only be damage or a replacement. Bytes that rot in
  place without a write after they were checked are found by the next process that reads them.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.model import SegmentRef
from streamhouse.storage.segment.column_crcs import chunk_range, column_crcs, leaf_spans
from streamhouse.storage.segment.footer import SegmentFooter

Crcs: TypeAlias = "np.ndarray[Any, np.dtype[np.uint32]]"
# Chunks at most this far apart are read with one pread (the bytes between are read and
# skipped): one call instead of two costs more in Python than copying 16 KiB.
_GAP = 16 << 10
_MAX_READ = 8 << 20  # a longer run of chunks is split


@dataclass(frozen=True)
class FileCheck:
    """One segment file DataFusion reads: per leaf column, the row groups whose chunk of it
    DataFusion may read."""

    path: str
    ref: SegmentRef
    footer: SegmentFooter
    chunks: tuple[tuple[int, Sequence[int]], ...]  # (leaf, row groups)


@dataclass
class _Checked:
    identity: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns when checked
    groups: dict[int, set[int]] = field(default_factory=dict)  # leaf -> row groups whose chunk matched


class CheckStats:
    """What this process's checks read (tests and EXPLAIN-style diagnostics)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = 0  # files whose footer was checked
        self.chunks = 0  # column chunks checked

    def add(self, files: int, chunks: int) -> None:
        with self._lock:
            self.files += files
            self.chunks += chunks


STATS = CheckStats()
_CHECKED: weakref.WeakKeyDictionary[SegmentFooter, _Checked] = weakref.WeakKeyDictionary()
_RANGES: weakref.WeakKeyDictionary[SegmentFooter, dict[int, list[tuple[int, int]]]] = weakref.WeakKeyDictionary()
_CRCS: weakref.WeakKeyDictionary[SegmentFooter, Crcs | None] = weakref.WeakKeyDictionary()
_SPANS: weakref.WeakKeyDictionary[SegmentFooter, dict[str, range]] = weakref.WeakKeyDictionary()


def footer_crcs(footer: SegmentFooter) -> Crcs | None:
    """The footer's column chunk CRCs ([row group, leaf]; None: written before them), parsed once."""
    if footer not in _CRCS:
        _CRCS[footer] = column_crcs(footer.metadata, footer.source)
    return _CRCS[footer]


def footer_leaves(footer: SegmentFooter, name: str) -> range:
    """The leaf indices of one top-level file column (empty: not in the file)."""
    spans = _SPANS.get(footer)
    if spans is None:
        spans = _SPANS[footer] = leaf_spans(footer.metadata)
    return spans.get(name, range(0))


def check_files(files: Iterable[FileCheck], stop: threading.Event | None = None) -> None:
    """Check the files one after another (module doc); CorruptDataError names the first
    damage found. Returns early once `stop` is set (the query was cancelled)."""
    buffer = bytearray()
    for f in files:
        if stop is not None and stop.is_set():
            return
        buffer = _check_file(f, buffer)


def _check_file(f: FileCheck, buffer: bytearray) -> bytearray:
    footer, ref, source = f.footer, f.ref, f.ref.object_key
    fd = os.open(f.path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if st.st_size != ref.size_bytes:
            raise CorruptDataError(f"object has {st.st_size} bytes, metadata says {ref.size_bytes}", source=source)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        checked = _CHECKED.get(footer)
        if checked is None or checked.identity != identity:
            tail = os.pread(fd, ref.footer_length, st.st_size - ref.footer_length)
            if crc32c(tail) != ref.footer_crc:
                raise CorruptDataError("segment footer CRC32C mismatch", source=source, position=footer.footer_start)
            checked = _Checked(identity)
            _CHECKED[footer] = checked
            STATS.add(1, 0)
        todo = [(j, set(groups).difference(checked.groups.get(j, ()))) for j, groups in f.chunks]
        if not any(groups for _, groups in todo):
            return buffer
        crcs = footer_crcs(footer)
        if crcs is None:  # native.py reads only files with column CRCs
            raise CorruptDataError("segment has no column chunk CRCs", source=source)
        spans = sorted((*_chunk_ranges(footer, j)[g], g, j) for j, groups in todo for g in groups)
        for run in _runs(spans):
            start, end = run[0][0], max(b for _, b, _, _ in run)
            if len(buffer) < end - start:
                buffer = bytearray(end - start)
            view = memoryview(buffer)
            try:
                if os.preadv(fd, [view[: end - start]], start) != end - start:
                    raise CorruptDataError(f"object ends before byte {end}", source=source, position=start)
                for a, b, g, j in run:
                    if crc32c(view[a - start : b - start]) != int(crcs[g, j]):
                        raise CorruptDataError(
                            f"row group {g} column chunk {j} CRC32C mismatch", source=source, position=a
                        )
                    checked.groups.setdefault(j, set()).add(g)
            finally:
                view.release()
            STATS.add(0, len(run))
    finally:
        os.close(fd)
    return buffer


def _runs(spans: Sequence[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """Sorted chunk spans grouped into reads: a gap over _GAP or a read over _MAX_READ splits."""
    runs: list[list[tuple[int, int, int, int]]] = []
    end = 0
    for span in spans:
        if runs and span[0] - end <= _GAP and span[1] - runs[-1][0][0] <= _MAX_READ:
            runs[-1].append(span)
            end = max(end, span[1])
        else:
            runs.append([span])
            end = span[1]
    return runs


def _chunk_ranges(footer: SegmentFooter, leaf: int) -> list[tuple[int, int]]:
    """Byte ranges of one leaf's chunks in every row group, checked to lie inside their row
    group once and kept per footer (footers are cached, immutable)."""
    known = _RANGES.setdefault(footer, {})
    if leaf not in known:
        ranges = [chunk_range(footer.metadata, g, leaf) for g in range(len(footer.row_groups))]
        for (a, b), rg in zip(ranges, footer.row_groups, strict=True):
            if not rg.byte_start <= a < b <= rg.byte_end:
                raise CorruptDataError(f"column chunk {rg.index}/{leaf} outside its row group", source=footer.source)
        known[leaf] = ranges
    return known[leaf]
