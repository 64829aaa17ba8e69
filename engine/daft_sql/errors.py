"""The errors of the Daft engine path: both are user-fixable refusals, raised before any data
is read, so a refused statement changes nothing."""

from __future__ import annotations

from streamhouse.sql.errors import SqlError
from streamhouse.storage.errors import InvalidInputError

__all__ = ["DaftNotInstalledError", "UnsupportedOnDaftError"]


class UnsupportedOnDaftError(SqlError):
    """The query uses something our SQL has and Daft's does not, and no rewrite covers it
    (engine/daft_sql/dialect.py lists them); the message says what, and that the same query
    runs on the agent's engine (without --engine)."""


class DaftNotInstalledError(InvalidInputError):
    """`--engine daft` or `ray://…` without the optional dependency: pip install 'streamhouse[daft]'."""
