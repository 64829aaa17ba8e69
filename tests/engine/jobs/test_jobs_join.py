"""A window join of two topics as a job on the embedded engine (issue 17): its view equals the
ad-hoc query over the closed windows, its watermark waits for both topics, late rows of each
topic reach the dead-letter topic naming their source, and a restart from a checkpoint taken
mid-window continues exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.sql.errors import SqlError
from streamhouse.storage.errors import PartitionCountError
from tests.engine.jobs.embedded import rows, wait_for

T0 = 1_700_000_000_000  # a multiple of 10 s
CLICKS = (
    "CREATE TOPIC clicks (user_id BIGINT, page VARCHAR, ts TIMESTAMP(3), "
    "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (partitions = 2)"
)
VIEWS = (
    "CREATE TOPIC views (uid BIGINT, ad VARCHAR, vt TIMESTAMP(3), "
    "WATERMARK FOR vt AS vt - INTERVAL '2' SECOND) WITH (partitions = 1)"
)
JOIN = (
    "SELECT c.window_start AS ws, c.user_id AS user_id, c.page AS page, v.ad AS ad "
    "FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) c "
    "JOIN TABLE(TUMBLE(TABLE views, DESCRIPTOR(vt), INTERVAL '10' SECOND)) v "
    "ON c.window_start = v.window_start AND c.window_end = v.window_end AND c.user_id = v.uid"
)
VIEW = "SELECT ws, user_id, page, ad FROM joined"


def click_rows(start: int, stop: int) -> list[dict[str, object]]:
    return [{"user_id": i % 4, "page": f"p{i}", "ts": T0 + i * 1000} for i in range(start, stop)]


def view_rows(start: int, stop: int) -> list[dict[str, object]]:
    return [{"uid": i % 4, "ad": f"a{i}", "vt": T0 + i * 1000 + 500} for i in range(start, stop, 3)]


def closed(end_s: int) -> str:
    """The ad-hoc join's rows of the windows ending by T0 + `end_s`."""
    last_start = datetime.fromtimestamp((T0 + (end_s - 10) * 1000) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"SELECT ws, user_id, page, ad FROM ({JOIN}) WHERE ws <= TIMESTAMP '{last_start}'"


def test_a_join_view_equals_the_adhoc_query_and_late_rows_name_their_topic(sh: Client) -> None:
    sh.sql(CLICKS)
    sh.sql(VIEWS)
    sh.produce_batch("clicks", click_rows(0, 60))
    sh.produce_batch("views", view_rows(0, 60))
    sh.sql("CREATE MATERIALIZED VIEW joined WITH ('dead-letter' = 'late', 'checkpoint-interval' = '100ms') AS " + JOIN)
    # clicks reach 59 s − 1 s, views 57.5 s − 2 s: the views hold the watermark at 55.5 s, so the
    # windows up to [40 s, 50 s) have closed — not [50 s, 60 s), which clicks alone would close.
    expected = rows(sh, closed(50))
    assert expected and len(expected) < len(rows(sh, JOIN))
    wait_for(lambda: rows(sh, VIEW) == expected)
    wait_for(lambda: sh.sql("SHOW JOBS").column("watermark")[0].as_py() == "2023-11-14T22:14:15.500+00:00")
    sh.produce("clicks", {"user_id": 1, "page": "late click", "ts": T0 + 3_000})
    sh.produce("views", {"uid": 2, "ad": "late view", "vt": T0 + 13_000})
    wait_for(lambda: sh.sql("SELECT count(*) AS n FROM late").column("n")[0].as_py() == 2)
    late = rows(sh, "SELECT source_topic, user_id, page, uid, ad FROM late")
    assert late == [("clicks", 1, "late click", None, None), ("views", None, None, 2, "late view")]
    assert rows(sh, VIEW) == expected  # late rows changed nothing that closed


def test_a_restart_mid_window_continues_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with streamhouse.open(data) as sh:
        sh.sql(CLICKS)
        sh.sql(VIEWS)
        sh.produce_batch("clicks", click_rows(0, 35))
        sh.produce_batch("views", view_rows(0, 35))
        sh.sql(f"CREATE MATERIALIZED VIEW joined WITH ('checkpoint-interval' = '100ms') AS {JOIN}")
        first = rows(sh, closed(30))  # watermark min(34 − 1, 33.5 − 2) s: [30 s, 40 s) is open with rows
        wait_for(lambda: rows(sh, VIEW) == first)
        # A checkpoint that holds every row read: the open window's rows are in its state.
        read = 35 + len(view_rows(0, 35))
        wait_for(lambda: sh.sql("SHOW JOBS").column("rows_in")[0].as_py() == read)
    with streamhouse.open(data) as sh:
        sh.produce_batch("clicks", click_rows(35, 70))
        sh.produce_batch("views", view_rows(35, 70))
        expected = rows(sh, closed(60))
        wait_for(lambda: rows(sh, VIEW) == expected)
        assert len(expected) == len(set(expected)) > len(first)
        stats = sh.sql("SHOW JOBS").to_pylist()[0]
        assert stats["rows_in"] == 70 + len(view_rows(0, 70)) and stats["late_rows"] == 0


def test_explain_shows_the_join_kind_and_its_state_and_creates_nothing(sh: Client) -> None:
    sh.sql(CLICKS)
    sh.sql(VIEWS)
    plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW joined AS {JOIN}").to_pylist()
    assert [row["plan_type"] for row in plan] == ["job", "query"]
    job = plan[0]["plan"]
    assert job.startswith("window join: TUMBLE size 10000 ms")
    assert "state clicks: rows of open windows (user_id, page, ts)" in job
    assert "state views: rows of open windows (uid, ad, vt)" in job
    assert "__sh_join_side0" in plan[1]["plan"]
    single = sh.sql(
        "EXPLAIN CREATE MATERIALIZED VIEW per_window AS SELECT window_start, window_end, count(*) AS n "
        "FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end"
    ).to_pylist()
    assert "one row of partial aggregates per pane and key" in single[0]["plan"]
    assert sh.sql("SHOW JOBS").num_rows == 0 and "joined" not in [t["topic"] for t in sh.sql("SHOW TOPICS").to_pylist()]
    with pytest.raises(SqlError, match="topic 'clicks' is read without a window"):
        sh.sql(
            "EXPLAIN CREATE MATERIALIZED VIEW bad AS SELECT c.user_id FROM clicks c JOIN views v ON c.user_id = v.uid"
        )


def test_adding_partitions_to_either_joined_topic_is_refused(sh: Client) -> None:
    sh.sql(CLICKS)
    sh.sql(VIEWS)
    sh.sql(f"CREATE MATERIALIZED VIEW joined AS {JOIN}")
    for topic in ("clicks", "views"):
        with pytest.raises(PartitionCountError, match="joined read this topic"):
            sh.sql(f"ALTER TOPIC {topic} ADD PARTITIONS 1")
    assert [t["partitions"] for t in sh.sql("SHOW TOPICS").to_pylist() if t["topic"] in ("clicks", "views")] == [2, 1]


def test_an_interval_join_view_equals_the_adhoc_join(sh: Client) -> None:
    sh.sql(CLICKS)
    sh.sql(VIEWS)
    interval = (
        "SELECT c.user_id AS user_id, c.page AS page, v.ad AS ad FROM clicks c JOIN views v "
        "ON c.user_id = v.uid AND c.ts BETWEEN v.vt - INTERVAL '3' SECOND AND v.vt + INTERVAL '1' SECOND"
    )
    sh.sql(f"CREATE MATERIALIZED VIEW near WITH ('checkpoint-interval' = '100ms') AS {interval}")
    sh.produce_batch("clicks", click_rows(0, 40))
    sh.produce_batch("views", view_rows(0, 40))
    expected = rows(sh, interval)
    assert len(expected) > 5
    wait_for(lambda: rows(sh, "SELECT user_id, page, ad FROM near") == expected)
    plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW other AS {interval}").to_pylist()
    assert plan[0]["plan"].startswith("interval join: clicks.ts - views.vt in [-3000, 1000] ms")
