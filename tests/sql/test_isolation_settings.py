"""Which rows of Kafka transactions our readers ask for (issue 18): the SQL session setting
(`SET isolation_level`, or Kafka's spelling `isolation.level`), a job's `'isolation.level'`
option and the per-request level, each read_committed unless asked otherwise and refusing any
other value with a typed error that names it."""

from __future__ import annotations

import pytest

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.limits import QueryLimits, parse_set, session_limits
from streamhouse.sql.statements.job_options import parse_job_options
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.isolation import READ_COMMITTED, READ_UNCOMMITTED, parse_isolation, reading, requested

AGENT = QueryLimits(60.0, 1 << 30)


def test_sql_session_setting() -> None:
    assert session_limits({}, AGENT).isolation == READ_COMMITTED
    for text in ("SET isolation_level = 'read_uncommitted'", "SET isolation.level TO 'READ_UNCOMMITTED'"):
        setting = parse_set(text)
        assert setting is not None and setting.name == "isolation_level"
        assert setting.value is not None
        assert session_limits({setting.name: setting.value}, AGENT).isolation == READ_UNCOMMITTED
    reset = parse_set("RESET isolation.level")
    assert reset is not None and (reset.name, reset.value) == ("isolation_level", None)
    with pytest.raises(InvalidInputError, match="isolation_level must be 'read_committed' or 'read_uncommitted'"):
        session_limits({"isolation_level": "serializable"}, AGENT)
    with pytest.raises(InvalidInputError, match="did you mean isolation_level"):
        parse_set("SET isolation_levl = 'read_committed'")


def test_job_option() -> None:
    assert parse_job_options({}).isolation == READ_COMMITTED
    assert parse_job_options({"isolation.level": "Read_Uncommitted"}).isolation == READ_UNCOMMITTED
    with pytest.raises(SqlError, match=r"'isolation\.level' must be one of read_committed, read_uncommitted"):
        parse_job_options({"isolation.level": "dirty"}, "v")


def test_request_level() -> None:
    assert requested() == READ_COMMITTED
    with reading(" read_uncommitted "):
        assert requested() == READ_UNCOMMITTED
    assert requested() == READ_COMMITTED and parse_isolation(None) == READ_COMMITTED
    with pytest.raises(InvalidInputError, match="isolation must be"):
        parse_isolation("none", "isolation")
