"""Nexmark q3 (persons × auctions, a regular join) as a job on the embedded engine (issue 17):
refused without a state TTL naming the option; with `'state.ttl'` its view equals the ad-hoc
query and the pure-Python reference; EXPLAIN names the regular join and its TTL; ALTER TOPIC ADD PARTITIONS on
a source is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamhouse.bench.sql import fill_nexmark
from streamhouse.datagen.nexmark import generate
from streamhouse.datagen.nexmark_queries import Q3
from streamhouse.sql.errors import SqlError
from streamhouse.storage.errors import PartitionCountError
from tests import nexmark_reference
from tests.engine.jobs.embedded import open_engine, rows, wait_for

EVENTS = {"events": 10_000, "seed": 3, "events_per_second": 200}


def test_nexmark_q3_view_equals_the_adhoc_query_and_the_reference(tmp_path: Path) -> None:
    with open_engine(tmp_path) as sh:
        fill_nexmark(sh, partitions=2, chunk=2_500, **EVENTS)
        with pytest.raises(SqlError, match=r"WITH \('state\.ttl' = '1 h'\)"):
            sh.sql(f"CREATE MATERIALIZED VIEW q3 AS {Q3}")
        assert "q3" not in str(sh.sql("SHOW TOPICS").to_pylist())  # the refusal created nothing
        sh.sql(f"CREATE MATERIALIZED VIEW q3 WITH ('state.ttl' = '1 h', 'checkpoint-interval' = '100ms') AS {Q3}")
        expected = rows(sh, Q3)
        assert len(expected) > 5
        assert expected == sorted(nexmark_reference.q3(generate(**EVENTS)))
        wait_for(lambda: rows(sh, "SELECT name, city, state, id FROM q3") == expected)
        plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW other WITH ('state.ttl' = '30 min') AS {Q3}").to_pylist()
        assert plan[0]["plan"].startswith("regular join: state TTL 1800000 ms of event time")
        with pytest.raises(PartitionCountError, match="q3 read this topic"):  # planned with its TTL
            sh.sql("ALTER TOPIC person ADD PARTITIONS 1")
