"""SQL over topics through the embedded engine: DDL, declared columns (decoded once into the
segments, at query time only for the unflushed buffer), system columns, pruning, JSON errors
and bad SQL."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.ddl import CreateTopic, DropTopic, Explain, ShowTopics, parse_statement
from streamhouse.storage.errors import InvalidValueError, TopicExistsError

BIDS = (
    "CREATE TOPIC bids (auction BIGINT, price DOUBLE, item STRING, ts TIMESTAMP(3), "
    "WATERMARK FOR ts AS ts - INTERVAL '3' SECOND) WITH (partitions = 2)"
)
T0 = 1_700_000_000_000


@pytest.fixture
def sh(tmp_path: Path) -> Iterator[Client]:
    # Small rolls, so a few thousand records make several segments and row groups.
    with streamhouse.open(tmp_path / "data", roll_bytes=40_000) as client:
        yield client


def bids(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"auction": i % 7, "price": i * 0.5, "item": f"i{i % 3}", "ts": T0 + i * 1000} for i in range(start, start + n)
    ]


def produce_in_segments(sh: Client, topic: str, rows: list[dict[str, object]], per_segment: int = 500) -> None:
    """acks=durable per chunk: each chunk is committed as (at least) one segment of its own."""
    for start in range(0, len(rows), per_segment):
        sh.produce_batch(topic, rows[start : start + per_segment], partition=0, acks="durable")


def test_ddl_parses_flink_style_create_topic() -> None:
    statement = parse_statement(BIDS + ";")
    assert isinstance(statement, CreateTopic)
    assert statement.partitions == 2
    assert statement.schema is not None
    assert [c.name for c in statement.schema.columns] == ["auction", "price", "item", "ts"]
    assert statement.schema.watermark is not None and statement.schema.watermark.delay_ms == 3_000
    raw = parse_statement("CREATE TOPIC IF NOT EXISTS logs WITH ('Partitions' = '3', 'json.ignore-errors' = 'TRUE')")
    assert isinstance(raw, CreateTopic) and raw.schema is None and raw.if_not_exists
    assert raw.partitions == 3 and raw.config == {"json.ignore-errors": "true"}
    assert parse_statement("drop topic if exists logs") == DropTopic("logs", True)
    assert parse_statement("SHOW TOPICS") == ShowTopics()
    assert parse_statement("EXPLAIN SELECT 1") == Explain("SELECT 1")
    assert parse_statement("SELECT 1") is None


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("CREATE TOPIC t (a BIGINT, b GEOMETRY)", "line 1, column 29"),
        ("CREATE TOPIC t (a BIGINT", "expected ,"),
        ("CREATE TOPIC t (a BIGINT, WATERMARK FOR a AS a - INTERVAL '1' SECOND)", "TIMESTAMP"),
        ("CREATE TOPIC t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' FORTNIGHT)", "FORTNIGHT"),
        ("CREATE TOPIC t WITH (format = 'json')", "declared columns"),
        ("DROP TOPIC a b", "unexpected 'b'"),
    ],
)
def test_bad_ddl_says_what_and_where(sql: str, message: str) -> None:
    with pytest.raises(SqlError, match=message):
        parse_statement(sql)


def test_declared_columns_are_decoded_into_segments_and_from_the_buffer(sh: Client, tmp_path: Path) -> None:
    sh.sql(BIDS)
    sh.produce_batch("bids", bids(3_000), keys=[str(i % 7) for i in range(3_000)], acks="durable")
    sh.produce("bids", {"auction": 99, "price": 1.0, "item": "new", "ts": "2026-01-01T00:00:00Z"}, partition=0)
    total = sh.sql("SELECT count(*) AS n, sum(price) AS s FROM bids").to_pylist()
    assert total == [{"n": 3_001, "s": sum(i * 0.5 for i in range(3_000)) + 1.0}]
    newest = sh.sql("SELECT auction, item, ts FROM bids WHERE auction = 99").to_pylist()
    assert newest == [{"auction": 99, "item": "new", "ts": datetime(2026, 1, 1)}]  # from the unflushed buffer
    files = glob.glob(str(tmp_path / "data" / "objects" / "**" / "*.parquet"), recursive=True)
    assert files
    stored = pq.ParquetFile(files[0]).schema_arrow  # segment layout 2: what other engines read
    assert {"auction", "price", "item", "ts", "_value"} <= set(stored.names)  # typed columns beside the raw value
    assert stored.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert all(b"PARQUET:field_id" in (f.metadata or {}) for f in stored)


def test_system_columns_and_raw_topics(sh: Client) -> None:
    sh.sql("CREATE TOPIC logs WITH (partitions = 2)")
    sh.produce("logs", b"hello", key="k1", partition=1, timestamp=T0)
    table = sh.sql("SELECT * FROM logs")
    assert table.column_names == ["_partition", "_offset", "_timestamp", "_key", "_value"]
    assert table.schema.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.to_pylist() == [
        {
            "_partition": 1,
            "_offset": 0,
            "_timestamp": datetime.fromtimestamp(T0 / 1000, tz=UTC),
            "_key": b"k1",
            "_value": b"hello",
        }
    ]


def test_a_point_query_on_offset_decodes_one_block(sh: Client) -> None:
    sh.sql(BIDS)
    produce_in_segments(sh, "bids", bids(6_000))
    plan = sh.sql("EXPLAIN SELECT * FROM bids WHERE _partition = 0 AND _offset = 4321").to_pylist()
    pruning = plan[0]["plan"]
    assert plan[0]["plan_type"] == "streamhouse pruning"
    assert "partitions 1/2" in pruning and "blocks 1/" in pruning and "rows read 1" in pruning
    assert int(pruning.split("segments ")[1].split("/")[1].split(",")[0]) > 1  # several segments, one read
    row = sh.sql("SELECT _offset, auction, price FROM bids WHERE _partition = 0 AND _offset = 4321").to_pylist()
    assert row == [{"_offset": 4321, "auction": 4321 % 7, "price": 4321 * 0.5}]


def test_event_time_and_record_time_predicates_prune_and_stay_exact(sh: Client) -> None:
    sh.sql(BIDS)
    produce_in_segments(sh, "bids", bids(6_000))
    window = "ts >= TIMESTAMP '2023-11-14 23:00:00' AND ts < TIMESTAMP '2023-11-14 23:01:00'"
    count = sh.sql(f"SELECT count(*) AS n FROM bids WHERE {window}").to_pylist()
    expected = sum(1 for b in bids(6_000) if T0 + 2_800_000 <= int(b["ts"]) < T0 + 2_860_000)  # type: ignore[call-overload]
    assert count == [{"n": expected}]
    pruning = sh.sql(f"EXPLAIN SELECT * FROM bids WHERE {window}").to_pylist()[0]["plan"]
    kept, total = (int(x) for x in pruning.split("blocks ")[1].split(",")[0].split("/"))
    assert kept < total
    everything = sh.sql("SELECT count(*) AS n FROM bids WHERE _timestamp >= TIMESTAMP '2000-01-01 00:00:00'")
    assert everything.to_pylist() == [{"n": 6_000}]


def test_json_that_does_not_match_is_refused_at_produce_unless_ignored(sh: Client) -> None:
    sh.sql(BIDS)
    with pytest.raises(InvalidValueError, match=r"record 1 of the batch, the value: not JSON"):
        sh.produce_batch("bids", [{"auction": 1}, b"not json", {"auction": "seven"}], partition=1)
    assert sh.sql("SELECT count(*) AS n FROM bids").to_pylist() == [{"n": 0}]  # nothing of the batch
    sh.sql("CREATE TOPIC lenient (auction BIGINT) WITH ('json.ignore-errors' = 'true')")
    sh.produce_batch("lenient", [{"auction": 1}, b"not json"], partition=0)
    assert sh.sql("SELECT auction FROM lenient ORDER BY _offset").to_pylist() == [{"auction": 1}, {"auction": None}]
    assert "values not matching the columns 1" in sh.sql("EXPLAIN SELECT * FROM lenient").column("plan")[0].as_py()


def test_show_describe_drop(sh: Client) -> None:
    sh.sql(BIDS)
    with pytest.raises(TopicExistsError):
        sh.sql(BIDS)
    sh.sql(BIDS.replace("CREATE TOPIC", "CREATE TOPIC IF NOT EXISTS"))
    shown = sh.sql("SHOW TOPICS").to_pylist()
    assert [(t["topic"], t["partitions"]) for t in shown] == [("bids", 2)]
    described = sh.sql("DESCRIBE bids").to_pylist()
    assert [(d["column"], d["type"]) for d in described][-4:] == [
        ("auction", "BIGINT"),
        ("price", "DOUBLE"),
        ("item", "STRING"),
        ("ts", "TIMESTAMP(3)"),
    ]
    assert described[-1]["watermark"] is not None
    sh.sql("DROP TOPIC bids")
    assert sh.sql("SHOW TOPICS").num_rows == 0
    sh.sql("DROP TOPIC IF EXISTS bids")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC * FROM bids", "SELEC"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("SELECT nope FROM bids", "nope"),
        ("SELECT auction + item FROM bids", "auction|item|Utf8|Int64"),
    ],
)
def test_bad_sql_names_the_problem(sh: Client, sql: str, message: str) -> None:
    sh.sql(BIDS)
    with pytest.raises(SqlError, match=message):
        sh.sql(sql)


def test_queries_racing_rolls_never_miss_acknowledged_records(tmp_path: Path) -> None:
    """A roll commits a segment and drops its batches from the buffer while a query reads
    segments; the query must still see every record acknowledged before it started."""
    import threading

    with streamhouse.open(tmp_path / "race", roll_bytes=2_000, flush_check_ms=5) as client:
        client.sql("CREATE TOPIC t (n BIGINT) WITH (partitions = 1)")
        acknowledged = 0
        done = threading.Event()

        def produce() -> None:
            nonlocal acknowledged
            for i in range(300):
                client.produce_batch("t", [{"n": i}] * 20)
                acknowledged += 20
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        checks = 0
        while not done.is_set() or checks < 5:
            before = acknowledged
            count = client.sql("SELECT count(*) AS c, sum(n) AS s FROM t").column("c")[0].as_py()
            assert count >= before
            checks += 1
        producer.join()
        assert client.sql("SELECT count(*) AS c FROM t").column("c")[0].as_py() == 6_000
        assert client.describe("t").partitions[0].segments > 10


def test_job_statements_parse() -> None:
    from streamhouse.sql.statements.ddl import CreateJob, DropJob, ShowJobs

    view = parse_statement(
        "CREATE MATERIALIZED VIEW per_minute WITH ('emit' = 'final', 'dead-letter' = 'late') AS "
        "SELECT window_start, count(*) AS n FROM TUMBLE(bids, ts, INTERVAL '1' MINUTE) GROUP BY window_start"
    )
    assert view == CreateJob(
        "per_minute",
        "SELECT window_start, count(*) AS n FROM TUMBLE(bids, ts, INTERVAL '1' MINUTE) GROUP BY window_start",
        {"emit": "final", "dead-letter": "late"},
    )
    insert = parse_statement("INSERT INTO archive SELECT * FROM bids")
    assert insert == CreateJob("archive", "SELECT * FROM bids", {}, materialized=False)
    assert parse_statement("SHOW JOBS") == ShowJobs()
    assert parse_statement("DROP MATERIALIZED VIEW IF EXISTS per_minute") == DropJob("per_minute", True)
    assert parse_statement("DROP JOB archive") == DropJob("archive")
    with pytest.raises(SqlError, match="'emit' must be one of final, changes"):
        parse_statement("CREATE MATERIALIZED VIEW v WITH ('emit' = 'often') AS SELECT 1")
    with pytest.raises(SqlError, match="unknown option 'colour'"):
        parse_statement("CREATE MATERIALIZED VIEW v WITH ('colour' = 'red') AS SELECT 1")
