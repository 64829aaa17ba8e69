"""Nexmark q9 (each auction's winning bid inside its life), q4 (the average final price per
category, an updating aggregate over closed auctions) and q6 (a seller's average over its last
auctions, an OVER across auctions) as jobs on the embedded engine (issue 17):
once the job has read everything, its view equals the ad-hoc query over the auctions whose
`expires` the job's watermark has passed (q4's and q6's views folded as the changelogs they are)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.datagen.nexmark_queries import Q4, Q4_PER_AUCTION, Q6, Q9
from streamhouse.sql.errors import SqlError
from tests.engine.jobs.embedded import open_engine, rows, wait_for

EVENTS = {"events": 10_000, "seed": 9, "events_per_second": 100}
COLUMNS = "id, auction, bidder, price, bid_date_time"


def read_all(sh: Client, counts: dict[str, int]) -> str:
    """Once the job has read every auction and bid: its watermark as a SQL timestamp literal's
    text (the auctions whose `expires` is at or before it are closed), checking nothing was late."""
    total = counts["auction"] + counts["bid"]
    wait_for(lambda: sh.sql("SHOW JOBS").to_pylist()[0]["rows_in"] == total)
    [job] = sh.sql("SHOW JOBS").to_pylist()
    assert job["late_rows"] == 0
    return datetime.fromisoformat(job["watermark"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_nexmark_q9_view_equals_the_adhoc_query_over_closed_auctions(tmp_path: Path) -> None:
    with open_engine(tmp_path) as sh:
        counts = fill_nexmark(sh, partitions=2, chunk=2_500, **EVENTS)
        sh.sql(f"CREATE MATERIALIZED VIEW q9 WITH ('checkpoint-interval' = '100ms') AS {Q9}")
        mark = read_all(sh, counts)
        expected = rows(sh, f"SELECT {COLUMNS} FROM ({Q9}) W WHERE expires <= TIMESTAMP '{mark}'")
        assert len(expected) > 20
        wait_for(lambda: rows(sh, f"SELECT {COLUMNS} FROM q9") == expected)
        plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW other AS {Q9}").to_pylist()
        assert plan[0]["plan"].startswith("lifetime join: bid.date_time within [auction.date_time, auction.expires]")


def test_nexmark_q4_as_one_job_emits_changes_that_fold_to_the_adhoc_q4(tmp_path: Path) -> None:
    """q4 whole (the AVG per category over every closed auction) as one job: its view is a
    changelog; folding it gives the ad-hoc q4 over the auctions the watermark closed."""
    with open_engine(tmp_path) as sh:
        counts = fill_nexmark(sh, partitions=2, chunk=2_500, **EVENTS)
        with pytest.raises(SqlError, match=r"must emit changes"):
            sh.sql(f"CREATE MATERIALIZED VIEW q4f AS {Q4}")
        sh.sql(f"CREATE MATERIALIZED VIEW q4 WITH ('checkpoint-interval' = '100ms', 'emit' = 'changes') AS {Q4}")
        mark = read_all(sh, counts)
        closed = Q4_PER_AUCTION.replace("GROUP BY", f"AND A.expires <= TIMESTAMP '{mark}' GROUP BY")
        expected = rows(sh, f"SELECT Q.category, AVG(Q.final) FROM ({closed}) Q GROUP BY Q.category")
        assert len(expected) >= 3

        def folded() -> list[tuple[object, ...]]:
            latest: dict[object, object] = {}
            for change in sh.sql("SELECT op, category, avg_final FROM q4 ORDER BY _offset").to_pylist():
                if change["op"] == "-U":
                    assert latest.pop(change["category"]) == change["avg_final"]
                else:
                    latest[change["category"]] = change["avg_final"]
            return sorted(latest.items())

        wait_for(lambda: [(k, pytest.approx(v)) for k, v in folded()] == expected)
        plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW other WITH ('emit' = 'changes') AS {Q4}").to_pylist()
        assert "updating GROUP BY category" in plan[0]["plan"]


def test_nexmark_q6_as_one_job_emits_changes_that_fold_to_the_adhoc_q6(tmp_path: Path) -> None:
    """q6 (a seller's average over its last auctions, an OVER across auctions that close out
    of order) as one job: its folded changelog is the ad-hoc q6 over the closed auctions."""
    with open_engine(tmp_path) as sh:
        counts = fill_nexmark(sh, partitions=2, chunk=2_500, **EVENTS)
        sh.sql(f"CREATE MATERIALIZED VIEW q6 WITH ('checkpoint-interval' = '100ms', 'emit' = 'changes') AS {Q6}")
        mark = read_all(sh, counts)
        closed = Q6.replace("GROUP BY A.id", f"AND A.expires <= TIMESTAMP '{mark}' GROUP BY A.id")
        expected = sorted(Counter(tuple(r.values()) for r in sh.sql(closed).to_pylist()).elements())
        assert len(expected) > 20

        def folded() -> list[tuple[object, ...]]:
            live: Counter[tuple[object, ...]] = Counter()
            for change in sh.sql("SELECT op, seller, avg_final FROM q6 ORDER BY _offset").to_pylist():
                row = (change["seller"], change["avg_final"])
                live[row] += -1 if change["op"] == "-U" else 1
            assert all(n >= 0 for n in live.values())
            return sorted((+live).elements())

        wait_for(lambda: folded() == expected)
