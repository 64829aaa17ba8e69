"""`--engine ray`: Daft on a local Ray (one for the session, tests/engine/daft_sql/conftest.py)
over the segment files plus the unflushed tails, compared with the agent's DataFusion path on the
Nexmark queries: q0-q9 and q11, every one we run ad hoc (Daft can express all of them after the
rewrite; none is refused). Then pruning, tails, segments in S3 (SeaweedFS), the typed refusals,
the CLI, each dialect rewrite against DataFusion, and v1/v2 segment files through the column map.
All in one file so one xdist worker starts one Ray."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamhouse
from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.daft_sql.layout import Layout, physical_columns, sql_expressions
from streamhouse.daft_sql.run import EngineChoiceError, Storage, list_topic_files, run_daft
from streamhouse.datagen.nexmark_queries import Q4, Q6, Q9, QUERIES
from streamhouse.devservices.seaweedfs import S3Server
from streamhouse.sql.errors import SqlError
from tests.engine.daft_sql.tables import daft_rows, datafusion_rows
from tests.engine.datagen.test_nexmark import result_rows

EVENTS = {"events": 3_000, "seed": 11, "events_per_second": 200}
ALL: dict[str, str] = {**QUERIES, "q4": Q4, "q6": Q6, "q9": Q9}
ENGINE = "ray"


@pytest.fixture(scope="module")
def nexmark(tmp_path_factory: pytest.TempPathFactory, ray_daft: Any) -> Iterator[tuple[Client, Storage]]:
    """Nexmark topics in 3 partitions over several segments each, plus an unflushed tail."""
    data = Path(tmp_path_factory.mktemp("daft")) / "data"
    with streamhouse.open(data, roll_bytes=5_000, merge_interval_ms=0) as client:
        fill_nexmark(client, partitions=3, chunk=500, acks="durable", **EVENTS)
        root = data.resolve()
        yield client, Storage(f"sqlite:///{root}/metadata.db", f"file://{root}/objects")


def _rows(table: pa.Table, ordered: bool) -> list[tuple[Any, ...]]:
    rows = result_rows(table)
    # Floats (q1's euros, averages) compared to 9 decimals: the engines sum in different orders.
    rows = [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]
    return rows if ordered else sorted(rows, key=repr)


@pytest.mark.parametrize("query", sorted(ALL, key=lambda q: int(q[1:])))
def test_nexmark_on_ray_matches_datafusion(query: str, nexmark: tuple[Client, Storage]) -> None:
    client, storage = nexmark
    expected = client.sql(ALL[query])
    got = run_daft(client, ALL[query], ENGINE, storage)
    assert expected.num_rows > 0, "the data set must exercise the query"
    assert got.column_names == expected.column_names
    ordered = "ORDER BY" in ALL[query].rsplit(")", 1)[-1]  # q4, q6 and q9's inner ORDER BYs do not count
    assert _rows(got, ordered) == _rows(expected, ordered)


def test_tails_and_pruning(nexmark: tuple[Client, Storage]) -> None:
    client, storage = nexmark
    described = client.describe("bid")
    assert sum(p.segments for p in described.partitions) >= 6, "the topic must span several segments"
    bid = {"auction": 1, "bidder": 2, "price": 3, "date_time": "2026-01-01T00:00:00", "extra": "x"}
    client.produce_batch("bid", [bid, bid], partition=1)  # unflushed: only the tail fetch sees them
    everything = asyncio.run(list_topic_files("SELECT * FROM bid", storage))[1]["bid"]
    pruned = asyncio.run(list_topic_files("SELECT * FROM bid WHERE _partition = 1 AND _offset < 50", storage))[1]["bid"]
    assert {f.partition for f in pruned.files} == {1} and len(pruned.files) == 1 < len(everything.files)
    assert len(pruned.tail_starts) == 1
    late = client.sql("SELECT max(date_time) - INTERVAL '3' SECOND AS t FROM bid").column("t")[0].as_py()
    recent = f"SELECT * FROM bid WHERE date_time >= TIMESTAMP '{late.isoformat(sep=' ')}'"
    assert 0 < len(asyncio.run(list_topic_files(recent, storage))[1]["bid"].files) < len(everything.files)
    for sql in (
        "SELECT count(*) AS n, max(_offset) AS top FROM bid",
        "SELECT _partition, count(*) AS n FROM bid WHERE _partition = 1 AND _offset >= 100 GROUP BY _partition",
        "SELECT _offset, price FROM bid WHERE _partition = 2 AND _offset BETWEEN 10 AND 20 ORDER BY _offset",
        "SELECT count(*) AS n FROM bid WHERE _timestamp >= '2000-01-01' AND auction % 7 = 0",
    ):
        assert result_rows(run_daft(client, sql, ENGINE, storage)) == result_rows(client.sql(sql)), sql


def test_one_runner_per_process(nexmark: tuple[Client, Storage]) -> None:
    client, storage = nexmark
    with pytest.raises(EngineChoiceError, match="already runs Daft on its ray runner"):
        run_daft(client, "SELECT 1", "daft", storage)


def test_segments_in_s3(s3_server: S3Server, s3_bucket: str, tmp_path: Path, ray_daft: Any) -> None:
    """Daft's workers read the segment objects from S3 (SeaweedFS) with the endpoint and the
    credentials of boto3's chain; the last records are still in the writer's buffer."""
    store = f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}"
    with streamhouse.open(tmp_path / "s3", object_store_url=store, s3_endpoint=s3_server.endpoint) as client:
        client.sql("CREATE TOPIC t (n BIGINT, at TIMESTAMP(3)) WITH (partitions = 2)")
        client.produce_batch("t", [{"n": i, "at": f"2026-01-01T00:00:{i:02d}"} for i in range(40)])
        client.sql("SELECT count(*) FROM t")  # nothing flushes here: the agent keeps its buffer
        storage = Storage(f"sqlite:///{(tmp_path / 's3').resolve()}/metadata.db", store, s3_server.endpoint)
        sql = """SELECT window_start, count(*) AS c, sum(n) AS s
            FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(at), INTERVAL '10' SECOND))
            GROUP BY window_start ORDER BY window_start"""
        assert result_rows(run_daft(client, sql, ENGINE, storage)) == result_rows(client.sql(sql))
        # An unknown topic, a column that is not there: the same SqlError as the agent's.
        for bad in ("SELECT * FROM nope", "SELECT x FROM t"):
            with pytest.raises(SqlError) as daft_error:
                run_daft(client, bad, ENGINE, storage)
            with pytest.raises(SqlError) as agent_error:
                client.sql(bad)
            if "nope" in bad:  # a missing column is worded by each engine's planner
                assert str(daft_error.value) == str(agent_error.value)


@pytest.mark.parametrize(
    "sql",
    [
        # 1. each window TVF, the columns' types kept (naive and UTC time columns)
        "SELECT k, window_start, window_end, window_time, count(*) AS n, sum(v) AS s FROM TABLE(TUMBLE(TABLE events,"
        " DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end, window_time",
        "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(_timestamp), INTERVAL '10' "
        "SECOND, INTERVAL '3' SECOND)) GROUP BY window_start",
        "SELECT window_start, window_end, sum(v) AS s FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND,"
        " INTERVAL '20' SECOND)) GROUP BY window_start, window_end",
        "SELECT window_end, sum(v) AS s FROM TABLE(CUMULATE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND, "
        "INTERVAL '40' SECOND)) GROUP BY window_end",
        "SELECT k, window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE events PARTITION BY k, "
        "DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY k, window_start, window_end",
        "SELECT window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE events, DESCRIPTOR(ts), "
        "INTERVAL '8' SECOND)) GROUP BY window_start, window_end",
        "WITH e AS (SELECT * FROM events WHERE v > 1) SELECT window_start, count(*) AS n "
        "FROM TABLE(TUMBLE(TABLE e, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start",
        # 2. identifiers fold; 3. non-equi inner join conditions, CROSS JOIN (4. MOD: DataFusion has none)
        "SELECT E.K, O.Lo FROM Events AS E JOIN other AS O ON E.k = O.k AND E.v > O.lo",
        "SELECT e.k, o.lo FROM events e CROSS JOIN other o WHERE e.v % 2 = 0",
        # 5. timestamp literals against naive and UTC columns; 6. INTERVAL literals
        "SELECT v FROM events WHERE ts >= TIMESTAMP '1970-01-01 00:00:01.5' AND _timestamp < '1970-01-01T00:00:40Z'",
        "SELECT v, ts + INTERVAL '1' MINUTE AS later FROM events WHERE ts BETWEEN '1970-01-01 00:00:00' AND "
        "TIMESTAMP '1970-01-01 00:00:10' - INTERVAL '1' SECOND",
    ],
)
def test_rewritten_query_gives_datafusions_rows(sql: str, ray_daft: Any) -> None:
    def key(row: dict[str, Any]) -> str:
        return repr(sorted(row.items()))

    got, expected = daft_rows(ray_daft, sql), datafusion_rows(sql)
    assert expected, "the case must return rows"
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_v1_and_v2_segment_files_read_as_the_same_sql_table(tmp_path: Path, ray_daft: Any) -> None:
    daft = ray_daft
    sql_schema = pa.schema(
        [
            pa.field("_partition", pa.int32(), nullable=False),
            pa.field("_offset", pa.int64(), nullable=False),
            pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("_key", pa.binary()),
            pa.field("amount", pa.float64()),
            pa.field("added", pa.string()),  # declared after the v1 file was written: nulls there
        ]
    )
    v1 = pa.table({"offset": [0, 1], "timestamp": [1_000, 2_000], "key": [b"a", None], "v.amount": [1.5, 2.5]})
    v2 = pa.table(
        {
            "_partition": pa.array([3, 3], pa.int32()),
            "_offset": [2, 3],
            "_timestamp": pa.array([3_000, 4_000], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "_key": [b"c", b"d"],
            "amount": [3.5, None],
            "added": ["x", "y"],
        }
    )
    frames = []
    for name, table, layout in (("v1", v1, Layout.V1), ("v2", v2, Layout.V2)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        columns = physical_columns(pq.read_schema(path), sql_schema, str(path))
        assert columns.layout is layout
        frames.append(daft.read_parquet(str(path)).select(*sql_expressions(columns, sql_schema, 3, sql_schema.names)))
    got = frames[0].concat(frames[1]).sort("_offset").to_arrow()
    assert got.schema.names == sql_schema.names
    assert got.column("_timestamp").cast(pa.int64()).to_pylist() == [1_000, 2_000, 3_000, 4_000]
    assert got.column("_partition").to_pylist() == [3, 3, 3, 3]
    assert got.column("amount").to_pylist() == [1.5, 2.5, 3.5, None]
    assert got.column("added").to_pylist() == [None, None, "x", "y"]
    assert got.column("_key").to_pylist() == [b"a", None, b"c", b"d"]
