"""Bounded-memory SQL scans (issue 16, part 1): a topic reaches DataFusion as a stream decoded
chunk by chunk as it is pulled (sql/query/stream.py), so a LIMIT reads one row group and a
GROUP BY over more data than the statement's memory cap streams through it; and every answer
says which offsets it covers, so a query on an agent that does not lead a partition says that
the leader's unflushed records are not in it (sql/query/coverage.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.sql.query.coverage import coverage
from streamhouse.storage.errors import CorruptDataError, QueryMemoryExceededError
from streamhouse.storage.segment.column_crcs import chunk_range

ROWS = 40_000
PAD = "x" * 300  # each row's string: the topic's decoded size is well over the cap below
CAP = "8MB"


def _engine(client: Client) -> Any:
    return client.transport.service._sql  # type: ignore[attr-defined]  # the embedded agent's SQL engine


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A metadata store and object store a second agent can share; records stay in the
    leader's buffer until 3 MB of them or a durable produce rolls a segment."""
    root = tmp_path_factory.mktemp("streaming")
    return {
        "metadata_url": f"sqlite:///{root / 'meta.db'}",
        "object_store_url": f"file://{root / 'objects'}",
        "roll_bytes": 3 << 20,
        "roll_age_ms": 600_000,
        "root": root,
    }


@pytest.fixture(scope="module")
def big(stores: dict[str, Any]) -> Iterator[Client]:
    """One partition of ROWS records in several segments (none left in the buffer)."""
    settings = {k: v for k, v in stores.items() if k != "root"}
    with streamhouse.open(stores["root"] / "a", **settings) as client:
        client.sql("CREATE TOPIC t (n BIGINT, s VARCHAR) WITH (partitions = 1)")
        table = pa.table({"n": pa.array(range(ROWS), pa.int64()), "s": pa.array([PAD] * ROWS)})
        for start in range(0, ROWS, 10_000):
            last = start + 10_000 >= ROWS  # a durable produce rolls the whole buffer
            client.produce_table("t", table.slice(start, 10_000), partition=0, acks="durable" if last else "leader")
        yield client


def _reader_row_groups(client: Client) -> int:
    return int(client.transport.service.manager.reader.segments.row_groups_read)  # type: ignore[attr-defined]


def test_limit_reads_one_row_group(big: Client) -> None:
    big.sql(f"SET query_memory = '{CAP}'")
    try:
        before = _reader_row_groups(big)
        rows = big.sql("SELECT * FROM t LIMIT 10")
        assert rows.num_rows == 10
        assert _reader_row_groups(big) - before == 1
        scan = _engine(big).last_scans[0]
        assert scan.stats.row_groups_kept > 4 and scan.stream.stats.row_groups_read == 1
    finally:
        big.sql("RESET query_memory")


def test_group_by_streams_under_a_cap_smaller_than_the_topic(big: Client) -> None:
    big.sql(f"SET query_memory = '{CAP}'")
    try:
        # No ORDER BY: DataFusion reserves 10 MB for any sort, more than the whole cap. The
        # LIMIT keeps the streaming path (without one, DataFusion reads the files: below).
        result = big.sql("SELECT n % 7 AS k, count(*) AS c, sum(n) AS total, max(s) AS m FROM t GROUP BY 1 LIMIT 99")
        scan = _engine(big).last_scans[0]
    finally:
        big.sql("RESET query_memory")
    expected = [{"k": k, "c": len(range(k, ROWS, 7)), "total": sum(range(k, ROWS, 7)), "m": PAD} for k in range(7)]
    assert sorted(result.to_pylist(), key=lambda row: row["k"]) == expected
    # What it read would not have fitted: materialised, the same query is refused up front.
    assert scan.stream.estimated_bytes > 8 << 20
    assert scan.stream.stats.chunks_read > 4 and scan.stream.stats.rows_read == ROWS
    assert coverage(result) == {"t": [{"partition": 0, "start": 0, "end": ROWS, "unflushed_included": True}]}


def test_a_group_by_without_limit_reads_the_segment_files_natively(big: Client) -> None:
    """Committed segments are read by DataFusion's own Parquet reader (sql/query/native.py):
    nothing goes through our segment reader, the answer and its coverage are the same."""
    big.sql(f"SET query_memory = '{CAP}'")  # a scan over one read chunk (else read whole, at once)
    try:
        before = _reader_row_groups(big)
        result = big.sql("SELECT n % 7 AS k, count(*) AS c, sum(n) AS total, max(s) AS m FROM t GROUP BY 1")
        where = "WHERE _offset >= 1234 AND _offset < 23456 AND _timestamp >= TIMESTAMP '2000-01-01 00:00:00'"
        cut = big.sql(f"SELECT count(*) AS c, sum(n) AS total, min(_offset) AS lo FROM t {where}")
    finally:
        big.sql("RESET query_memory")
    assert _reader_row_groups(big) == before and _engine(big).last_scans[0].stream.stats.chunks_read == 0
    expected = [{"k": k, "c": len(range(k, ROWS, 7)), "total": sum(range(k, ROWS, 7)), "m": PAD} for k in range(7)]
    assert sorted(result.to_pylist(), key=lambda row: row["k"]) == expected
    assert coverage(result) == {"t": [{"partition": 0, "start": 0, "end": ROWS, "unflushed_included": True}]}
    # Rows cut by offset and by record time: the files read with their cuts give the same rows.
    assert cut.to_pylist() == [{"c": 23456 - 1234, "total": sum(range(1234, 23456)), "lo": 1234}]


def test_a_memory_cap_still_holds_for_what_the_query_keeps(big: Client) -> None:
    """Streaming bounds the scan, not the answer: sorting every row under the cap is refused."""
    big.sql("SET query_memory = '4MB'")
    try:
        with pytest.raises(QueryMemoryExceededError, match=r"query memory limit of 4\.0 MB exceeded"):
            big.sql("SELECT string_agg(s, ',') FROM t")
    finally:
        big.sql("RESET query_memory")


def test_a_non_leader_answer_says_the_unflushed_tail_is_not_in_it(big: Client, stores: dict[str, Any]) -> None:
    """Two agents on one metadata store and object store: the leader answers with its buffered
    records; the other sees what is committed and its answer's coverage says so."""
    big.sql("CREATE TOPIC tail (n BIGINT) WITH (partitions = 1)")
    big.produce_batch("tail", [{"n": i} for i in range(50)], partition=0, acks="durable")
    big.produce_batch("tail", [{"n": i} for i in range(50, 80)], partition=0)  # in the leader's buffer only
    settings = {k: v for k, v in stores.items() if k != "root"}
    query = "SELECT count(*) AS c FROM tail"
    here = big.sql(query)
    with streamhouse.open(stores["root"] / "b", **settings) as other:
        there = other.sql(query)
    assert here.column("c").to_pylist() == [80]
    assert coverage(here) == {"tail": [{"partition": 0, "start": 0, "end": 80, "unflushed_included": True}]}
    assert there.column("c").to_pylist() == [50]
    assert coverage(there) == {"tail": [{"partition": 0, "start": 0, "end": 50, "unflushed_included": False}]}


def test_a_damaged_segment_read_mid_stream_raises_its_own_error(big: Client, stores: dict[str, Any]) -> None:
    """A chunk read on the agent's loop fails inside DataFusion's pull: the query ends with the
    reader's CorruptDataError (what and where), not DataFusion's text of it."""
    big.sql("CREATE TOPIC bad (n BIGINT, s VARCHAR) WITH (partitions = 1)")
    rows = pa.table({"n": pa.array(range(8_000), pa.int64()), "s": pa.array([PAD] * 8_000)})
    big.produce_table("bad", rows, partition=0, acks="durable")
    [segment] = (stores["root"] / "objects").rglob("topics/bad/*/*.parquet")
    metadata = pq.ParquetFile(segment).metadata
    start, end = chunk_range(metadata, 1, metadata.schema.names.index("s"))
    data = bytearray(segment.read_bytes())
    data[(start + end) // 2] ^= 0xFF  # in column s of row group 1
    segment.write_bytes(bytes(data))
    big.sql(f"SET query_memory = '{CAP}'")
    try:
        # Streamed (the LIMIT): the row group's CRC; read by DataFusion: the column chunk's.
        for query in ("SELECT max(s) AS m FROM bad LIMIT 5", "SELECT max(s) AS m FROM bad"):
            with pytest.raises(CorruptDataError, match=r"topics/bad/"):
                big.sql(query)
            assert _engine(big).last_scans[0].stream.estimated_bytes > 1 << 20  # streamed: over one 1 MiB chunk
        # A projection that does not read the damaged chunk is answered (and checked) as usual.
        assert big.sql("SELECT count(*) AS c, sum(n) AS t FROM bad").to_pylist() == [{"c": 8_000, "t": 31_996_000}]
    finally:
        big.sql("RESET query_memory")
