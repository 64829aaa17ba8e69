"""Nexmark q9 (each auction's winning bid inside its life) as a job on the embedded engine
(issue 17): once the job has read everything, its view equals the ad-hoc q9 over the auctions
whose `expires` the job's watermark has passed."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import streamhouse
from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.datagen.nexmark_queries import Q9

EVENTS = {"events": 10_000, "seed": 9, "events_per_second": 100}
COLUMNS = "id, auction, bidder, price, bid_date_time"


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def rows(sh: Client, sql: str) -> list[tuple[object, ...]]:
    return sorted(tuple(r.values()) for r in sh.sql(sql).to_pylist())


def test_nexmark_q9_view_equals_the_adhoc_query_over_closed_auctions(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "data", renew_interval_ms=200, lease_ttl_ms=2_000) as sh:
        counts = fill_nexmark(sh, partitions=2, chunk=2_500, **EVENTS)
        sh.sql(f"CREATE MATERIALIZED VIEW q9 WITH ('checkpoint-interval' = '100ms') AS {Q9}")
        total = counts["auction"] + counts["bid"]
        wait_for(lambda: sh.sql("SHOW JOBS").to_pylist()[0]["rows_in"] == total)
        [job] = sh.sql("SHOW JOBS").to_pylist()
        assert job["late_rows"] == 0
        mark = datetime.fromisoformat(job["watermark"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        expected = rows(sh, f"SELECT {COLUMNS} FROM ({Q9}) W WHERE expires <= TIMESTAMP '{mark}'")
        assert len(expected) > 20
        wait_for(lambda: rows(sh, f"SELECT {COLUMNS} FROM q9") == expected)
        plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW other AS {Q9}").to_pylist()
        assert plan[0]["plan"].startswith("lifetime join: bid.date_time within [auction.date_time, auction.expires]")
