"""The rewrite to Daft's SQL (engine/daft_sql/dialect.py) without running anything: what is
refused and how, and the rewrites whose result DataFusion cannot check (it has no MOD). The
rewrites that run are compared with DataFusion in test_daft_sql.py (on the session's Ray). Also,
in a subprocess: the lazy import, and `--engine daft` on Daft's native runner."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from streamhouse.client.client import Client
from streamhouse.daft_sql.dialect import to_daft_sql
from streamhouse.daft_sql.errors import UnsupportedOnDaftError
from streamhouse.sql.errors import SqlError
from streamhouse.storage.errors import InvalidInputError
from tests.engine.daft_sql.tables import schema_of


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("SELECT * FROM events e LEFT JOIN other o ON e.k = o.k AND e.v > o.lo", "LEFT JOIN with conditions"),
        ("SELECT sum(v) FILTER (WHERE k = 1) FROM events", "FILTER"),
        ("SELECT * FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' HOUR))", "3600"),
    ],
)
def test_refusals_name_what_daft_cannot_run(sql: str, what: str) -> None:
    with pytest.raises(UnsupportedOnDaftError, match=what) as caught:
        to_daft_sql(sql, schema_of)
    assert "without --engine" in str(caught.value) and isinstance(caught.value, SqlError)


def test_an_unknown_engine_is_refused_before_anything_runs() -> None:
    from streamhouse.cli.sql_engine import executor

    with pytest.raises(InvalidInputError, match="unknown --engine 'spark'"):
        executor(argparse.Namespace(engine="spark"), cast(Client, None))


def test_mod_becomes_the_operator() -> None:
    assert to_daft_sql("SELECT MOD(v, 3) AS m FROM events", schema_of).sql == "SELECT (v % 3) AS m FROM events"


def test_bad_window_calls_are_the_same_sql_errors() -> None:
    with pytest.raises(SqlError, match="nope"):
        to_daft_sql("SELECT * FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(nope), INTERVAL '1' SECOND))", schema_of)


_NATIVE = """
import sys
import streamhouse, streamhouse.cli.main, streamhouse.daft_sql.run
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("daft", "ray"))
assert not loaded, f"importing streamhouse imported {loaded}"
with streamhouse.open(sys.argv[1]) as client:
    client.sql("CREATE TOPIC t (n BIGINT, at TIMESTAMP(3)) WITH (partitions = 2)")
    client.produce_batch("t", [{"n": i, "at": f"2026-01-01T00:00:{i:02d}"} for i in range(30)])
sys.exit(streamhouse.cli.main.main(["sql", "--data-dir", sys.argv[1], "--engine", "daft", "--format", "csv",
    "SELECT window_start, count(*) AS c FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(at), INTERVAL '10' SECOND))"
    " GROUP BY window_start ORDER BY window_start"]))
"""


def test_daft_is_imported_only_when_asked_and_runs_natively(tmp_path: Path) -> None:
    """In a fresh process (Daft's runner is per process; the other tests hold Ray's): importing
    streamhouse, its CLI and this package imports neither Daft nor Ray, and `--engine daft` runs
    the query on Daft's native runner."""
    done = subprocess.run(
        [sys.executable, "-c", _NATIVE, str(tmp_path / "d")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-3:] == [
        "2026-01-01 00:00:00.000,10",
        "2026-01-01 00:00:10.000,10",
        "2026-01-01 00:00:20.000,10",
    ]


_NATIVE_THEN_RAY = """
import daft
from streamhouse.daft_sql.run import EngineChoiceError, _choose_runner
daft.from_pydict({"n": [1]}).collect()  # infers and sets the native runner
try:
    _choose_runner(daft, "ray")
except EngineChoiceError as exc:
    print(exc)
"""


def test_asking_for_ray_after_daft_ran_natively_is_refused() -> None:
    """Daft's set_runner_ray(noop_if_initialized=True) keeps a native runner without a word: the
    query would run natively while --engine ray was asked for; it is refused instead."""
    done = subprocess.run([sys.executable, "-c", _NATIVE_THEN_RAY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already runs Daft on its native runner; --engine ray needs a new process" in done.stdout
