"""Continuous queries on the embedded engine: a materialized view's output equals the ad-hoc
query over the windows that closed, late rows go to the dead-letter topic, a restart resumes
from the checkpoint without duplicates, and SHOW JOBS / DROP manage them."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamhouse
from streamhouse.client.client import Client
from tests.engine.jobs.embedded import rows, wait_for

T0 = 1_700_000_000_000  # a multiple of 10 s
BIDS = (
    "CREATE TOPIC bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), "
    "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (partitions = 2)"
)
PER_WINDOW = (
    "SELECT window_start, window_end, auction, count(*) AS n, sum(price) AS total "
    "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
    "GROUP BY window_start, window_end, auction"
)


def bids(start: int, stop: int) -> list[dict[str, int]]:
    return [{"auction": i % 3, "price": i, "ts": T0 + i * 500} for i in range(start, stop)]


def test_a_view_equals_the_ad_hoc_query_over_closed_windows(sh: Client) -> None:
    sh.sql(BIDS)
    sh.produce_batch("bids", bids(0, 200))
    sh.sql(f"CREATE MATERIALIZED VIEW per_window WITH ('checkpoint-interval' = '100ms') AS {PER_WINDOW}")
    # Watermark = 99.5 s − 1 s: windows ending at or before 90 s have closed.
    closed = f"SELECT * FROM ({PER_WINDOW}) WHERE window_end <= TIMESTAMP '2023-11-14 22:14:50'"
    expected = rows(sh, closed)
    view = "SELECT window_start, window_end, auction, n, total FROM per_window"
    wait_for(lambda: len(rows(sh, view)) == len(expected))
    assert rows(sh, view) == expected
    jobs = sh.sql("SHOW JOBS").to_pylist()
    assert [(j["job"], j["rows_in"], j["late_rows"], j["source_lag"]) for j in jobs] == [("per_window", 200, 0, 0)]
    # More data closes more windows; nothing is emitted twice.
    sh.produce_batch("bids", bids(200, 300))
    wait_for(lambda: len(rows(sh, view)) > len(expected))
    later = f"SELECT * FROM ({PER_WINDOW}) WHERE window_end <= TIMESTAMP '2023-11-14 22:15:40'"
    wait_for(lambda: rows(sh, view) == rows(sh, later))


def test_late_rows_go_to_the_dead_letter_topic(sh: Client) -> None:
    sh.sql(BIDS.replace("partitions = 2", "partitions = 1"))
    sh.sql(
        "CREATE MATERIALIZED VIEW counts WITH ('dead-letter' = 'late_bids', 'checkpoint-interval' = '100ms') AS "
        "SELECT window_start, window_end, count(*) AS n "
        "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end"
    )
    sh.produce_batch("bids", [{"auction": 1, "price": 1, "ts": T0 + s * 1000} for s in (1, 3, 8)])
    wait_for(lambda: sh.sql("SELECT count(*) AS n FROM counts").column("n")[0].as_py() == 1)
    sh.produce("bids", {"auction": 1, "price": 4, "ts": T0 + 4_000})  # [0 s, 5 s) has fired: late
    wait_for(lambda: sh.sql("SELECT count(*) AS n FROM late_bids").column("n")[0].as_py() == 1)
    assert sh.sql("SELECT price FROM late_bids").to_pylist() == [{"price": 4}]
    assert sh.sql("SELECT n FROM counts").to_pylist() == [{"n": 2}]  # the late row is not in it
    wait_for(lambda: sh.sql("SHOW JOBS").column("late_rows")[0].as_py() == 1)


def test_a_restart_resumes_from_the_checkpoint_without_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    view = "SELECT window_start, auction, n FROM per_window"
    with streamhouse.open(data) as sh:
        sh.sql(BIDS)
        sh.produce_batch("bids", bids(0, 120))
        sh.sql(f"CREATE MATERIALIZED VIEW per_window WITH ('checkpoint-interval' = '100ms') AS {PER_WINDOW}")
        wait_for(lambda: len(rows(sh, view)) == 15)  # five closed 10 s windows × 3 auctions
    with streamhouse.open(data) as sh:
        sh.produce_batch("bids", bids(120, 240))
        closed = (
            f"SELECT window_start, auction, n FROM ({PER_WINDOW}) WHERE window_end <= TIMESTAMP '2023-11-14 22:15:10'"
        )
        expected = rows(sh, closed)
        wait_for(lambda: rows(sh, view) == expected)
        assert len(expected) == len(set(expected)) == 33


def test_drop_removes_the_job_and_its_topic(sh: Client) -> None:
    sh.sql(BIDS)
    sh.sql(f"CREATE MATERIALIZED VIEW v AS {PER_WINDOW}")
    assert "v" in sh.sql("SHOW TOPICS").column("topic").to_pylist()
    with pytest.raises(streamhouse.StreamHouseError):
        sh.sql(f"CREATE MATERIALIZED VIEW v AS {PER_WINDOW}")
    sh.sql("DROP MATERIALIZED VIEW v")
    assert sh.sql("SHOW JOBS").num_rows == 0
    assert "v" not in sh.sql("SHOW TOPICS").column("topic").to_pylist()
    sh.sql("DROP MATERIALIZED VIEW IF EXISTS v")
    with pytest.raises(streamhouse.StreamHouseError, match="nowhere"):
        sh.sql("CREATE MATERIALIZED VIEW w AS SELECT * FROM nowhere")


def test_sdk_and_cli_manage_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from streamhouse.cli.main import main

    data = tmp_path / "data"
    with streamhouse.open(data) as sh:
        sh.sql(BIDS)
        sh.create_job("per_window", PER_WINDOW, checkpoint_interval="100ms", emit="final")
        sh.sql("CREATE TOPIC archive (auction BIGINT, price BIGINT) WITH (partitions = 1)")
        sh.create_job("archive", "SELECT auction, price FROM bids WHERE price >= 30", into="archive")
        assert sh.jobs().column("job").to_pylist() == ["archive", "per_window"]
        sh.produce_batch("bids", bids(0, 40))
        # The view's first results exist before subscribing, so next() cannot wait forever.
        wait_for(lambda: sh.sql("SELECT count(*) AS n FROM per_window").column("n")[0].as_py() > 0)
        updates = sh.subscribe("per_window", start="earliest")
        first = next(updates)
        assert first.json()["auction"] in (0, 1, 2)
        updates.close()
        wait_for(lambda: sh.sql("SELECT count(*) AS n FROM archive").column("n")[0].as_py() == 10)
        assert rows(sh, "SELECT price FROM archive") == [(p,) for p in range(30, 40)]
    assert main(["job", "list", "--data-dir", str(data), "--format", "json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [j["job"] for j in listed] == ["archive", "per_window"]
    assert main(["job", "describe", "per_window", "--data-dir", str(data)]) == 0
    assert "TUMBLE" in capsys.readouterr().out
    assert main(["job", "describe", "nope", "--data-dir", str(data)]) == 1
    assert main(["job", "drop", "per_window", "--data-dir", str(data)]) == 0
    with streamhouse.open(data) as sh:
        assert sh.jobs().column("job").to_pylist() == ["archive"]


def test_emit_changes_writes_an_update_stream(sh: Client) -> None:
    sh.sql(BIDS.replace("partitions = 2", "partitions = 1"))
    sh.sql(
        "CREATE MATERIALIZED VIEW live WITH ('emit' = 'changes', 'checkpoint-interval' = '100ms') AS "
        "SELECT window_start, window_end, auction, count(*) AS n "
        "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, auction"
    )
    sh.produce("bids", {"auction": 1, "price": 1, "ts": T0})
    wait_for(lambda: sh.sql("SELECT count(*) AS c FROM live").column("c")[0].as_py() == 1)
    sh.produce("bids", {"auction": 1, "price": 2, "ts": T0 + 1_000})  # window still open: an update
    wait_for(lambda: sh.sql("SELECT count(*) AS c FROM live").column("c")[0].as_py() == 3)
    changes = sh.sql("SELECT op, auction, n FROM live ORDER BY _offset").to_pylist()
    assert changes == [
        {"op": "+I", "auction": 1, "n": 1},
        {"op": "-U", "auction": 1, "n": 1},
        {"op": "+U", "auction": 1, "n": 2},
    ]
