"""SQL errors: one class a caller can act on, saying what and where."""

from __future__ import annotations

from streamhouse.storage.errors import InvalidInputError


class SqlError(InvalidInputError):
    """Bad SQL: a syntax error (with line and column), an unknown topic or column (by name),
    a type error. Nothing was read or written."""

    def __init__(self, message: str, *, position: tuple[int, int] | None = None, name: str | None = None) -> None:
        where = f" (line {position[0]}, column {position[1]})" if position else ""
        super().__init__(message + where)
        self.position = position
        self.name = name
