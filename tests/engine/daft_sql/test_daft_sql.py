"""`--engine ray`: Daft on a local Ray over the segment files in S3 (SeaweedFS) plus the unflushed
tails, compared with the agent's DataFusion path on the Nexmark queries: q0-q9 and q11, every
one Daft can express (none is refused). Then pruning, tails, the typed refusals, and the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import streamhouse
from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.daft_sql.errors import UnsupportedOnDaftError
from streamhouse.daft_sql.run import EngineChoiceError, Storage, list_topic_files, run_daft
from streamhouse.datagen.nexmark_queries import Q4, Q6, Q9, QUERIES
from streamhouse.devservices.seaweedfs import S3Server
from tests.engine.datagen.test_nexmark import result_rows

EVENTS = {"events": 5_000, "seed": 11, "events_per_second": 200}
ALL: dict[str, str] = {**QUERIES, "q4": Q4, "q6": Q6, "q9": Q9}
ENGINE = "ray"


@pytest.fixture(scope="module")
def nexmark(tmp_path_factory: pytest.TempPathFactory, ray_daft: Any) -> Iterator[tuple[Client, Storage]]:
    """Nexmark topics in 3 partitions over several segments each, plus an unflushed tail."""
    data = Path(tmp_path_factory.mktemp("daft")) / "data"
    with streamhouse.open(data, roll_bytes=20_000, merge_interval_ms=0) as client:
        fill_nexmark(client, partitions=3, chunk=500, **EVENTS)
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
    for sql in (
        "SELECT count(*) AS n, max(_offset) AS top FROM bid",
        "SELECT _partition, count(*) AS n FROM bid WHERE _partition = 1 AND _offset >= 100 GROUP BY _partition",
        "SELECT _offset, price FROM bid WHERE _partition = 2 AND _offset BETWEEN 10 AND 20 ORDER BY _offset",
        "SELECT count(*) AS n FROM bid WHERE _timestamp >= '2000-01-01' AND auction % 7 = 0",
    ):
        assert result_rows(run_daft(client, sql, ENGINE, storage)) == result_rows(client.sql(sql)), sql


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM bid B LEFT JOIN auction A ON A.id = B.auction AND B.price > A.initial_bid",
        "SELECT count(*) FILTER (WHERE price > 10) AS n FROM bid",
        "SELECT * FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND, INTERVAL '1' HOUR))",
    ],
)
def test_what_daft_cannot_run_is_refused_by_name(sql: str, nexmark: tuple[Client, Storage]) -> None:
    client, storage = nexmark
    with pytest.raises(UnsupportedOnDaftError, match="without --engine"):
        run_daft(client, sql, ENGINE, storage)


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


def test_cli_engine_ray(nexmark: tuple[Client, Storage], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamhouse.cli.main import main

    data = tmp_path / "small"
    with streamhouse.open(data) as client:
        client.sql("CREATE TOPIC t (n BIGINT) WITH (partitions = 2)")
        client.produce_batch("t", [{"n": i} for i in range(10)])
    query = "SELECT count(*) AS c, sum(n) AS s FROM t"
    assert main(["sql", "--data-dir", str(data), "--engine", "ray", "--format", "csv", query]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "10,45"
    assert main(["sql", "--data-dir", str(data), "--engine", "spark", query]) == 1
    assert "unknown --engine 'spark'" in capsys.readouterr().err
