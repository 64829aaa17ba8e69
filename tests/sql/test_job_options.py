"""A continuous query's options are checked when the statement is parsed: a bad value is refused
naming the option, and nothing (no job, no output topic) is created. Before, `'idle-timeout' =
'soon'` was stored and broke the job's placement on every round."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamhouse
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.job_options import JobOptions, parse_job_options


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, JobOptions()),
        ({"idle-timeout": "2 min", "checkpoint-interval": "500ms"}, JobOptions(idle_timeout_ms=120_000,
                                                                             checkpoint_interval_ms=500)),
        ({"idle-timeout": "1.5s", "checkpoint-interval": "250"}, JobOptions(idle_timeout_ms=1_500,
                                                                          checkpoint_interval_ms=250)),
        ({"emit": "CHANGES", "start": "Latest", "dead-letter": "late"}, JobOptions(emit="changes", start="latest",
                                                                                 dead_letter="late")),
    ],
)  # fmt: skip
def test_values_parse(options: dict[str, str], expected: JobOptions) -> None:
    assert parse_job_options(options) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"idle-timeout": "soon"}, "option 'idle-timeout' must be a duration such as '10s'"),
        ({"checkpoint-interval": "-1s"}, "option 'checkpoint-interval' must be a duration"),
        ({"checkpoint-interval": "0"}, "'checkpoint-interval' = '0' is out of range (10 ms to 86,400,000 ms)"),
        ({"idle-timeout": "1e99"}, "option 'idle-timeout' must be a duration"),
        ({"idle-timeout": "30d"}, "option 'idle-timeout' = '30d' is out of range"),  # days are a unit (state.ttl)
        ({"idle-timeout": "9999h"}, "'idle-timeout' = '9999h' is out of range"),
        ({"emit": "sometimes"}, "option 'emit' must be one of final, changes, not 'sometimes'"),
        ({"start": "yesterday"}, "option 'start' must be one of earliest, latest, not 'yesterday'"),
        ({"idle-timout": "1s"}, "unknown option 'idle-timout'; did you mean 'idle-timeout'?"),
    ],
)
def test_bad_values_are_refused_naming_the_option(options: dict[str, str], message: str) -> None:
    with pytest.raises(SqlError) as caught:
        parse_job_options(options, "v")
    assert str(caught.value).startswith("v: ") and message in str(caught.value)


def test_create_with_a_bad_option_creates_nothing_and_later_jobs_run(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC b (a BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)")
        topics = {t.name for t in sh.topics()}
        for option in ("'idle-timeout' = 'soon'", "'checkpoint-interval' = '-1s'", "'dead-letter' = 'late', 'x' = '1'"):
            with pytest.raises(SqlError):
                sh.sql(f"CREATE MATERIALIZED VIEW v WITH ({option}) AS SELECT a FROM b")
            with pytest.raises(SqlError):
                sh.sql(f"INSERT INTO b WITH ({option}) SELECT a, ts FROM b")
        assert {t.name for t in sh.topics()} == topics
        assert sh.jobs().num_rows == 0
        sh.sql("CREATE MATERIALIZED VIEW v WITH ('idle-timeout' = '1s') AS SELECT a FROM b")
        sh.produce("b", {"a": 7, "ts": 1_000})
        sh.wait_for_job("v", timeout=60)
        assert sh.sql("SELECT a FROM v").column("a").to_pylist() == [7]
