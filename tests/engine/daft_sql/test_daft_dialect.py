"""The rewrite to Daft's SQL (engine/daft_sql/dialect.py) without running anything: what is
refused and how, and the rewrites whose result DataFusion cannot check (it has no MOD). The
rewrites that run are compared with DataFusion in test_daft_sql.py (on the session's Ray)."""

from __future__ import annotations

import pytest

from streamhouse.daft_sql.dialect import to_daft_sql
from streamhouse.daft_sql.errors import UnsupportedOnDaftError
from streamhouse.sql.errors import SqlError
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


def test_mod_becomes_the_operator() -> None:
    assert to_daft_sql("SELECT MOD(v, 3) AS m FROM events", schema_of).sql == "SELECT (v % 3) AS m FROM events"


def test_bad_window_calls_are_the_same_sql_errors() -> None:
    with pytest.raises(SqlError, match="nope"):
        to_daft_sql("SELECT * FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(nope), INTERVAL '1' SECOND))", schema_of)
