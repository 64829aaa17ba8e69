"""The front-end contract's job operations as the SQL statements a user would type (CREATE
MATERIALIZED VIEW, INSERT INTO, DROP, SHOW JOBS), so a job made over REST or gRPC is planned,
validated and placed exactly as one made in SQL: one path, not two. Names and option values
are quoted with the dialect's doubled quotes (sql/statements/ddl.py unquotes them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from streamhouse.api.types import JobDescription
from streamhouse.storage.errors import InvalidInputError, JobNotFoundError

SHOW_JOBS = "SHOW JOBS"


def name(text: str) -> str:
    """A quoted identifier: any name, as the dialect reads `"..."` with `""` inside."""
    if not text:
        raise InvalidInputError("a job needs a name")
    return '"' + text.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create(job: str, select: str, into: str | None, options: Mapping[str, str] | None) -> str:
    """CREATE MATERIALIZED VIEW job [WITH (...)] AS select, or INSERT INTO into [WITH (...)] select.
    Option keys take `-` or `_` (idle_timeout = idle-timeout), as the SDK's create_job does."""
    pairs = ", ".join(f"{_string(k.replace('_', '-'))} = {_string(v)}" for k, v in (options or {}).items())
    with_clause = f" WITH ({pairs})" if pairs else ""
    if into is not None:
        return f"INSERT INTO {name(into)}{with_clause} {select}"
    return f"CREATE MATERIALIZED VIEW {name(job)}{with_clause} AS {select}"


def drop(job: str, *, drop_topic: bool) -> str:
    return f"DROP {'MATERIALIZED VIEW' if drop_topic else 'JOB'} {name(job)}"


def descriptions(table: pa.Table) -> list[JobDescription]:
    """SHOW JOBS' rows as values."""
    rows: Sequence[dict[str, Any]] = table.to_pylist()
    return [JobDescription.from_row(row) for row in rows]


def one(table: pa.Table, job: str) -> JobDescription:
    """The row of SHOW JOBS naming `job`; JobNotFoundError if none does."""
    for found in descriptions(table):
        if found.name == job:
            return found
    raise JobNotFoundError(job)
