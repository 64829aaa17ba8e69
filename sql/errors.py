"""The SQL layer's one error type, and the bridge from sqlglot's parse errors to it.

Every mistake in a query the user can fix (a syntax error, a bad window argument, an unknown
table or column) is a `SqlError`. It is an `InvalidInputError`, so callers that only care
"the request was rejected before anything ran" can catch the wider class.
"""

from __future__ import annotations

import re

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
        highlight = first.get("highlight")
        near = highlight if isinstance(highlight, str) and highlight else None
        description = _plain(str(first.get("description") or "invalid syntax"), near)
        line, col = first.get("line"), first.get("col")
        # sqlglot reports the column of the token's last character; point at its first.
        if isinstance(line, int) and isinstance(col, int):
            if near:
                col = max(1, col - len(near) + 1)
            return SqlError(f"syntax error: {description}", position=(line, col))
        return SqlError(f"syntax error: {description}")
    # The tokenizer only says where the bad token started inside its message; an unterminated
    # string or quoted identifier is the usual cause, so look for the last opening quote.
    quote = max(sql.rfind("'"), sql.rfind('"'))
    if quote >= 0:
        return SqlError(
            f"syntax error: unterminated {'string' if sql[quote] == chr(39) else 'quoted name'} starting here",
            position=position_at(sql, quote),
        )
    return SqlError(f"syntax error: cannot split the statement into tokens ({_plain(str(error), None)})")


# sqlglot's messages name its own classes and token reprs; users need the SQL words.
_REQUIRED = re.compile(r"Required keyword: '(\w+)' missing for <class '[\w.]*?(\w+)'>")
_TOKEN = re.compile(r"<Token token_type: TokenType\.(\w+), text: (.*?), line: \d+, col: \d+.*?>")
_CLASS = re.compile(r"<class '[\w.]*?(\w+)'>")


def _plain(description: str, near: str | None) -> str:
    """sqlglot's description of a parse error in the user's terms, with where it happened."""
    after = f" after {near!r}" if near else ""
    if _REQUIRED.search(description):
        return f"expected an expression{after}"
    if description.startswith("Invalid expression / Unexpected token"):
        return f"unexpected {near!r}" if near else "unexpected token"
    if description.startswith("Expecting "):
        return f"expected {description.removeprefix('Expecting ')!r}{after}"

    def token(match: re.Match[str]) -> str:
        kind, text = match.group(1), match.group(2)
        return "the end of the statement" if kind == "SENTINEL" else repr(text)

    text = _CLASS.sub(lambda m: m.group(1), _TOKEN.sub(token, description))
    text = text[:1].lower() + text[1:]
    expected, sep, got = text.partition(" but got ")
    if sep:
        return f"{expected}{after}, got {got}"
    if not near or near in text:
        return text
    return f"{text} (near {near!r})" if " after " in text else f"{text}{after}"
