"""REST SQL (JSON rows and Arrow IPC by Accept) and jobs (create, paged list, describe, drop)
on a real agent, with the error body for bad statements and unknown jobs."""

from __future__ import annotations

import pyarrow as pa

from tests.agent_process import wait_until
from tests.engine.rest.conftest import Rest, assert_error

ARROW = "application/vnd.apache.arrow.stream"


def test_sql_json_and_arrow(rest: Rest) -> None:
    ddl = rest.post(
        "/v1/sql",
        {"statement": "CREATE TOPIC bids (auction BIGINT, price DOUBLE, ts TIMESTAMP(3)) WITH (partitions = 2)"},
    )
    assert ddl.status == 200, ddl.body
    rows = [{"auction": i % 3, "price": i * 1.5, "ts": "2026-01-01T00:00:00Z"} for i in range(30)]
    assert rest.post("/v1/topics/bids/records?acks=durable", {"values": rows}).status == 200

    query = {
        "statement": "SELECT auction, count(*) AS n, sum(price) AS total FROM bids GROUP BY auction ORDER BY auction"
    }
    answer = rest.post("/v1/sql", query)
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert [c["name"] for c in body["columns"]] == ["auction", "n", "total"]
    assert body["row_count"] == 3
    assert body["rows"][0] == {"auction": 0, "n": 10, "total": sum(i * 1.5 for i in range(0, 30, 3))}

    arrow = rest.post("/v1/sql", query, headers={"Accept": ARROW})
    assert arrow.status == 200 and arrow.headers["content-type"] == ARROW
    table = pa.ipc.open_stream(arrow.body).read_all()
    assert table.column_names == ["auction", "n", "total"]
    assert table.column("n").to_pylist() == [10, 10, 10]

    # Types with no JSON form (here: raw bytes that are not UTF-8) say to ask for Arrow.
    assert rest.post("/v1/topics/raw/records", {"values": ["AP8="], "value_type": "BINARY"}).status == 404
    assert rest.post("/v1/topics", {"topic_name": "raw"}).status == 201
    assert rest.post("/v1/topics/raw/records", {"values": ["AP8="], "value_type": "BINARY"}).status == 200
    refused = assert_error(rest.post("/v1/sql", {"statement": "SELECT _value FROM raw"}), 400)
    assert "value_column" in refused["message"] or "UTF-8" in refused["message"]
    raw = rest.post("/v1/sql", {"statement": "SELECT _value FROM raw"}, headers={"Accept": ARROW})
    assert pa.ipc.open_stream(raw.body).read_all().column(0).to_pylist() == [b"\x00\xff"]

    assert_error(rest.post("/v1/sql", {"statement": "SELEC 1"}), 400)
    assert_error(rest.post("/v1/sql", {"statement": "SELECT * FROM no_such_topic"}), 400)
    assert_error(rest.post("/v1/sql", {"statement": ""}), 422)
    assert_error(rest.post("/v1/sql", {"statement": "SELECT 1", "settings": {"statement_timeout": "soon"}}), 400)


def test_jobs(rest: Rest) -> None:
    assert rest.post("/v1/sql", {"statement": "CREATE TOPIC trades (sym TEXT, qty BIGINT)"}).status == 200
    select = "SELECT sym, qty FROM trades WHERE qty >= 10"
    created = rest.post(
        "/v1/jobs", {"name": "big-trades", "select": select, "options": {"checkpoint_interval": "100ms"}}
    )
    assert created.status == 201, created.body
    job = created.json()
    assert (job["name"], job["output_topic"], job["sql"]) == ("big-trades", "big-trades", select)
    assert job["options"] == {"checkpoint-interval": "100ms"}
    assert_error(rest.post("/v1/jobs", {"name": "big-trades", "select": select}), 409)
    assert_error(rest.post("/v1/jobs", {"name": "bad", "select": select, "options": {"idle_timeout": "soon"}}), 400)

    rest.post("/v1/topics/trades/records", {"values": [{"sym": "A", "qty": 5}, {"sym": "B", "qty": 50}]})
    described = wait_until(
        lambda: (j := rest.get("/v1/jobs/big-trades").json())["rows_out"] >= 1 and j,
        timeout_s=30,
        what="the job's first output row",
    )
    assert described["rows_in"] >= 2
    listed = rest.get("/v1/jobs?page_size=1").json()
    assert [j["name"] for j in listed["data"]] == ["big-trades"] and listed["next_page_token"] is None
    assert rest.call("DELETE", "/v1/jobs/big-trades?drop_topic=true").status == 204
    assert_error(rest.get("/v1/jobs/big-trades"), 404, "job_not_found")
    assert_error(rest.call("DELETE", "/v1/jobs/big-trades"), 404)
    assert_error(rest.get("/v1/topics/big-trades"), 404)
