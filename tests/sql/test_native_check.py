"""The checks of segment files DataFusion reads itself (sql/query/native_check.py): each column
chunk a query may read is checked once per process while its file is unchanged, and a file that
changed after it was checked (rewritten, replaced, its footer damaged) is checked again in full,
so damage is still found; damage in a column the query does not read, even between two it
does (read together with one pread), is not reported."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.sql.query.native_check import STATS
from streamhouse.storage.errors import CorruptDataError
from streamhouse.storage.segment.column_crcs import chunk_range

ROWS = 40_000
CAP = "8MB"  # read chunks of a few hundred KB: the scans span more than a few, so they go native
QUERY = "SELECT sum(a) AS a, sum(c) AS c FROM t"
EXPECTED = [{"a": sum(range(ROWS)), "c": 3 * sum(range(ROWS))}]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Client, Path]]:
    """One partition of ROWS records (a, b, c: b a short string, its chunks between those of a and c) in
    one segment of many row groups; the segment file's path."""
    with streamhouse.open(tmp_path / "engine", roll_bytes=64 << 20, roll_age_ms=600_000) as client:
        client.sql("CREATE TOPIC t (a BIGINT, b VARCHAR, c BIGINT, d VARCHAR) WITH (partitions = 1)")
        table = pa.table(
            {
                "a": pa.array(range(ROWS), pa.int64()),
                "b": pa.array([f"k{i % 97}" for i in range(ROWS)]),
                "c": pa.array(range(0, 3 * ROWS, 3), pa.int64()),
                "d": pa.array(["x" * 300] * ROWS),  # in each record's value: many row groups
            }
        )
        client.produce_table("t", table, partition=0, acks="durable")
        [segment] = (tmp_path / "engine").rglob("topics/t/*/*.parquet")
        client.sql(f"SET query_memory = '{CAP}'")
        yield client, segment


def _damage(segment: Path, column: str, row_group: int, *, replace: bool) -> None:
    """Flip a byte in the middle of one column chunk: rewritten in place, or replaced by a new
    file (a new inode) as a replaced object would be."""
    metadata = pq.ParquetFile(segment).metadata
    start, end = chunk_range(metadata, row_group, metadata.schema.names.index(column))
    data = bytearray(segment.read_bytes())
    data[(start + end) // 2] ^= 0xFF
    _rewrite(segment, bytes(data), replace=replace)


def _rewrite(segment: Path, data: bytes, *, replace: bool) -> None:
    if replace:
        fresh = segment.with_suffix(".new")
        fresh.write_bytes(data)
        os.replace(fresh, segment)
        return
    before = segment.stat()
    segment.write_bytes(data)
    if segment.stat().st_mtime_ns == before.st_mtime_ns:  # same clock tick as the last write: a later one
        os.utime(segment, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def test_chunks_are_checked_once_while_the_file_is_unchanged(engine: tuple[Client, Path]) -> None:
    client, segment = engine
    files, chunks = STATS.files, STATS.chunks
    assert client.sql(QUERY).to_pylist() == EXPECTED
    row_groups = pq.ParquetFile(segment).metadata.num_row_groups
    assert row_groups > 4
    assert (STATS.files - files, STATS.chunks - chunks) == (1, 2 * row_groups)  # a and c of every row group
    assert client.sql(QUERY).to_pylist() == EXPECTED
    assert (STATS.files - files, STATS.chunks - chunks) == (1, 2 * row_groups)  # nothing checked again
    client.sql("SELECT max(b) AS b FROM t")
    assert STATS.chunks - chunks == 3 * row_groups  # only the chunks of b were new


@pytest.mark.parametrize("replace", [False, True], ids=["rewritten", "replaced"])
def test_a_file_damaged_after_it_was_checked_is_checked_again(engine: tuple[Client, Path], replace: bool) -> None:
    client, segment = engine
    assert client.sql(QUERY).to_pylist() == EXPECTED  # checked and remembered
    _damage(segment, "c", 2, replace=replace)
    with pytest.raises(CorruptDataError, match=r"row group 2 column chunk \d+ CRC32C mismatch.*topics/t/"):
        client.sql(QUERY)


def test_a_damaged_footer_is_found_after_the_file_was_checked(engine: tuple[Client, Path]) -> None:
    client, segment = engine
    assert client.sql(QUERY).to_pylist() == EXPECTED
    data = bytearray(segment.read_bytes())
    data[-100] ^= 0xFF  # in the footer's Thrift bytes
    _rewrite(segment, bytes(data), replace=False)
    with pytest.raises(CorruptDataError, match="segment footer CRC32C mismatch"):
        client.sql(QUERY)


def test_damage_in_a_column_not_read_is_not_reported(engine: tuple[Client, Path]) -> None:
    """b's chunks lie between a's and c's: read with them when near enough, never checked."""
    client, segment = engine
    for row_group in (0, 3):
        _damage(segment, "b", row_group, replace=False)
    assert client.sql(QUERY).to_pylist() == EXPECTED
    with pytest.raises(CorruptDataError, match=r"row group 0 column chunk \d+ CRC32C mismatch"):
        client.sql("SELECT max(b) AS b FROM t")
