"""The SQL layer's one error type, and the bridge from sqlglot's parse errors to it.

Every mistake in a query the user can fix (a syntax error, a bad window argument, an unknown
table or column) is a `SqlError`. It is an `InvalidInputError`, so callers that only care
"the request was rejected before anything ran" can catch the wider class.
"""

from __future__ import annotations

from sqlglot.errors import ParseError, TokenError

from streamhouse.storage.errors import InvalidInputError

__all__ = ["SqlError", "position_at", "sql_error_from_parse"]


class SqlError(InvalidInputError):
    """A query was rejected before execution.

    `position` is the (line, column) of the offending text, both 1-based, when known; `name`
    is the table, column or function the message is about. Both are repeated in the message
    so a log line alone is enough to find the problem.
    """

    def __init__(self, message: str, *, position: tuple[int, int] | None = None, name: str | None = None) -> None:
        text = message
        if name is not None and name not in message:
            text = f"{name}: {text}"
        if position is not None:
            text = f"{text} (line {position[0]}, column {position[1]})"
        super().__init__(text)
        self.reason = message
        self.position = position
        self.name = name


def position_at(sql: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset, as an editor shows it."""
    offset = max(0, min(offset, len(sql)))
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return line, column


def sql_error_from_parse(error: ParseError | TokenError, sql: str) -> SqlError:
    """Turn sqlglot's errors into a SqlError that points at the line and column."""
    if isinstance(error, ParseError) and error.errors:
        first = error.errors[0]
        description = str(first.get("description") or "invalid syntax")
        line, col = first.get("line"), first.get("col")
        highlight = first.get("highlight")
        # sqlglot reports the column of the token's last character; point at its first.
        if isinstance(line, int) and isinstance(col, int):
            if isinstance(highlight, str) and highlight:
                col = max(1, col - len(highlight) + 1)
            near = f" near {highlight!r}" if highlight else ""
            return SqlError(f"syntax error: {description}{near}", position=(line, col))
        return SqlError(f"syntax error: {description}")
    # The tokenizer only says where the bad token started inside its message; an unterminated
    # string or quoted identifier is the usual cause, so look for the last opening quote.
    message = str(error)
    quote = max(sql.rfind("'"), sql.rfind('"'))
    position = position_at(sql, quote) if quote >= 0 else None
    return SqlError(f"syntax error: {message}", position=position)
