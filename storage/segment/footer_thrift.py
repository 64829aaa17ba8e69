"""Checking a segment's Parquet footer (thrift) before pyarrow's metadata objects touch it.

pyarrow builds a column chunk's metadata (`row_group(i).column(j)`) and its statistics in C++
that throws on inconsistent thrift (a chunk typed unlike its schema column, a level histogram
of the wrong length, statistics too short for their type, encrypted metadata). Those calls are
not exception-translated by pyarrow's Cython layer, so the throw aborts the whole process
instead of raising (found by tests/fuzz/test_fuzz_segment.py). A footer is only damaged like
that behind a matching CRC32C (a writer bug, a collision), but an agent must never die of one.

So parse_footer first walks the thrift compact encoding itself and accepts only what our
writers produce: every row group holds one chunk per leaf column, of that column's physical
type and path, unencrypted, with statistics whose min/max fit the type and level histograms as
long as the column's levels (no geospatial statistics). Anything else is CorruptDataError
saying what and where. The walk is C (_footer_check.c): it reads every byte of the footer,
which in Python cost ~20x pyarrow's own parse; in C it is a few per cent of it.
"""

from __future__ import annotations

from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.segment._footer_check import problem


def check_footer(thrift: bytes | memoryview, *, source: str, position: int) -> None:
    """Raise CorruptDataError naming `source` and the footer's `position` unless the serialized
    Parquet FileMetaData `thrift` (the footer without its 8-byte trailer) has the shape above."""
    found = problem(thrift)
    if found is not None:
        raise CorruptDataError(f"segment footer refused: {found}", source=source, position=position)
