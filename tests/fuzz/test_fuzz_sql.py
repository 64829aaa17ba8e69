"""Fuzz of SQL text (sql/engine.py and the statement parsers it calls): valid statements of every
kind with tokens deleted, duplicated, swapped or replaced, and bytes damaged. Statement parsing
(SET, admin, DDL, jobs) refuses with SqlError or another InvalidInputError (a topic setting);
queries run on an embedded engine over a typed topic, under a statement timeout, and come back
as a table or SqlError (or a query limit error), never any other exception."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import streamhouse
from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.limits import parse_set
from streamhouse.sql.statements.admin import parse_admin
from streamhouse.sql.statements.ddl import CreateJob, CreateTopic, parse_statement
from streamhouse.storage.errors import InvalidInputError, QueryLimitError, StreamHouseError
from tests.fuzz.budget import bounded, fuzz
from tests.strategies import mutations

STATEMENTS = (
    "CREATE TOPIC IF NOT EXISTS t2 (a BIGINT, b STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)"
    " WITH (partitions = 2, 'retention.ms' = '1000')",
    "CREATE TOPIC r (x ROW<a INT, b ARRAY<STRING>>, m MAP<STRING, DOUBLE>, d DECIMAL(10, 2)) WITH (format = 'json')",
    "CREATE TOPIC a1 WITH (format = 'avro', subject = 's')",
    "ALTER TOPIC ev SET ('retention.ms' = '5000')",
    "ALTER TOPIC ev RESET ('retention.ms')",
    "ALTER TOPIC ev ADD PARTITIONS 3",
    "DROP TOPIC IF EXISTS t2",
    "SHOW TOPICS",
    "DESCRIBE ev",
    "DESCRIBE PARTITIONS ev",
    "SET statement_timeout = '10s'",
    "SET query_memory = '64MB'",
    "RESET ALL",
    "CREATE MATERIALIZED VIEW mv AS SELECT name, count(*) AS n FROM ev GROUP BY name",
    "CREATE JOB j WITH ('checkpoint.interval' = '1s') AS INSERT INTO out SELECT * FROM ev",
    "DROP MATERIALIZED VIEW IF EXISTS mv",
    "SHOW JOBS",
    "CREATE ORG acme",
    "CREATE API KEY k FOR acme",
    "GRANT READ ON TOPIC ev TO acme",
    "SHOW ACLS",
)
QUERIES = (
    "SELECT * FROM ev",
    "SELECT id, name, price * 2 AS p FROM ev WHERE id > 1 AND name LIKE 'a%' ORDER BY id DESC LIMIT 5",
    "SELECT name, count(*), sum(price), avg(price) FROM ev GROUP BY name HAVING count(*) > 0",
    "SELECT _offset, _partition, _timestamp, _key, _value FROM ev WHERE _offset BETWEEN 0 AND 3",
    "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '10' SECOND))"
    " GROUP BY window_start",
    "SELECT * FROM TABLE(HOP(TABLE ev, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '5' SECOND))",
    "WITH x AS (SELECT id FROM ev) SELECT count(*) FROM x JOIN ev USING (id)",
    "SELECT tags[1], attrs['k'], CAST(price AS BIGINT), COALESCE(name, 'none') FROM ev",
    "EXPLAIN SELECT * FROM ev WHERE ts > TIMESTAMP '2024-01-01 00:00:00'",
    "SELECT * FROM latest.ev",
    "SELECT id FROM ev UNION ALL SELECT id FROM ev",
)
VOCABULARY = (
    "SELECT", "FROM", "WHERE", "(", ")", ",", "*", "'", '"', "--", "/*", ";", "TABLE", "TUMBLE", "HOP",
    "DESCRIPTOR", "INTERVAL", "'1'", "SECOND", "GROUP", "BY", "ORDER", "LIMIT", "-1", "99999999999999999999",
    "NULL", "CAST", "AS", "ROW<", ">", "ARRAY<", "MAP<", "WITH", "=", "EXPLAIN", "latest.", "ev", "ts",
    "_offset", "JOIN", "ON", "UNION", "OVER", "PARTITION", "SET", "\x00", "ü", "1e400", "0x", "[", "]", ".",
)  # fmt: skip
_CHANGES = ("DROP", "ALTE", "CREA", "SET ", "RESE", "GRAN", "REVO")
_TOKENS = re.compile(r"'[^']*'|\w+|\s+|.")


@st.composite
def token_mutations(draw: st.DrawFn, corpus: tuple[str, ...]) -> str:
    tokens = _TOKENS.findall(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(0, len(tokens) - 1)))
        op = draw(st.sampled_from(("delete", "duplicate", "replace", "insert", "swap")))
        if op == "delete" and tokens:
            del tokens[at]
        elif op == "duplicate" and tokens:
            tokens.insert(at, tokens[at])
        elif op == "replace" and tokens:
            tokens[at] = draw(st.sampled_from(VOCABULARY))
        elif op == "insert":
            tokens.insert(at, " " + draw(st.sampled_from(VOCABULARY)) + " ")
        elif op == "swap" and len(tokens) > 1:
            other = draw(st.integers(0, len(tokens) - 1))
            tokens[at], tokens[other] = tokens[other], tokens[at]
    return "".join(tokens)


def _texts(corpus: tuple[str, ...]) -> st.SearchStrategy[str]:
    damaged = mutations(st.sampled_from(corpus).map(str.encode), max_ops=2).map(
        lambda b: b.decode("utf-8", errors="replace")
    )
    return st.one_of(st.sampled_from(corpus), token_mutations(corpus), damaged)


@fuzz(300)
@given(_texts(STATEMENTS + QUERIES))
def test_statement_parsing_refuses_with_sql_errors_only(text: str) -> None:
    with bounded():
        try:
            parse_set(text)
            parse_admin(text)
            statement = parse_statement(text)
        except InvalidInputError as exc:  # SqlError, or a topic setting refused at parse
            event(type(exc).__name__)
            return
    event(type(statement).__name__)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[streamhouse.Client]:
    sh = streamhouse.open(str(tmp_path_factory.mktemp("sql-fuzz") / "data"))
    try:
        sh.sql(
            "CREATE TOPIC ev (id BIGINT, name STRING, price DOUBLE, ts TIMESTAMP(3), tags ARRAY<STRING>, "
            "attrs MAP<STRING, BIGINT>, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (partitions = 2)"
        )
        rows = [
            b'{"id": 1, "name": "a", "price": 1.5, "ts": 1700000000000, "tags": ["x"], "attrs": {"k": 1}}',
            b'{"id": 2, "name": null, "price": -0.0, "ts": "2024-01-01T00:00:00Z", "tags": [], "attrs": {}}',
            b'{"id": 3, "name": "\xc3\xbc", "price": 1e300, "ts": 0}',
        ]
        sh.produce_batch("ev", rows)
        sh.sql("SET statement_timeout = '10s'")  # a query that would run away is stopped, typed
        yield sh
    finally:
        sh.close()


@fuzz(150)
@given(text=_texts(QUERIES))
def test_queries_return_rows_or_sql_errors(engine: streamhouse.Client, text: str) -> None:
    try:
        changes = parse_set(text) is not None or parse_admin(text) is not None
        statement = parse_statement(text)
    except InvalidInputError:
        changes, statement = False, None
    if changes or isinstance(statement, CreateTopic | CreateJob) or text.lstrip()[:4].upper() in _CHANGES:
        return  # a mutation that turned into DDL or SET: parsed above, not run against the shared engine
    try:
        table = engine.sql(text)
    except (SqlError, QueryLimitError) as exc:
        event(type(exc).__name__)
        return
    except StreamHouseError as exc:
        raise AssertionError(f"{type(exc).__name__} is not a SQL error: {exc}") from exc
    assert isinstance(table, pa.Table)
    event("rows")
