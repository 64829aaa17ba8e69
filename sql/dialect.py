"""The SQL dialect StreamHouse reads: PostgreSQL plus Flink's window table-valued functions.

sqlglot has neither a Flink nor a DataFusion dialect (docs/DESIGN.md §7). This one is Postgres with:
- SESSION an ordinary word, so `SESSION(...)` parses as a function call;
- TUMBLE / HOP / CUMULATE / SESSION calls whose arguments may be `TABLE t [PARTITION BY k]`,
  `DESCRIPTOR(col)` or `name => value`, parsed into a `WindowCall` node the rewrite replaces;
  `TABLE(<window call>)` (Flink's spelling) parses to the same node;
- every argument remembering the text the user wrote, so errors can quote it;
- function calls kept as written: sqlglot would otherwise rename DataFusion functions into
  Postgres spellings (MEDIAN becomes PERCENTILE_CONT, TO_TIMESTAMP gains a format…), so only
  the aggregates the window rewrite inspects are parsed into typed nodes.
Generation is Postgres's (DataFusion reads it) plus `RawSql`, a node printed verbatim.
"""

from __future__ import annotations

import re
import typing as t

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.generators.postgres import PostgresGenerator
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.tokenizer_core import Token, TokenType

from streamhouse.sql.errors import SqlError, position_at, sql_error_from_parse

__all__ = [
    "WINDOW_FUNCTIONS",
    "Descriptor",
    "RawSql",
    "StreamHouseDialect",
    "TableArg",
    "WindowCall",
    "ident_name",
    "node_position",
    "node_text",
    "parse_query",
    "quote_ident",
    "to_sql",
]

WINDOW_FUNCTIONS = ("TUMBLE", "HOP", "CUMULATE", "SESSION")

# Aggregates stay typed so the HOP/CUMULATE pane rewrite can recognise them.
_TYPED_FUNCTIONS = ("COUNT", "SUM", "MIN", "MAX", "AVG")

_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN, TokenType.VALUES, TokenType.TABLE, TokenType.FROM}

_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")


class WindowCall(exp.Expression):
    """A window TVF call as written; `this` is the function name, `expressions` its arguments."""

    arg_types: t.ClassVar[dict[str, bool]] = {"this": True, "expressions": False}


class TableArg(exp.Expression):
    """`TABLE t [PARTITION BY k]`: `this` is an exp.Table or exp.Subquery."""

    arg_types: t.ClassVar[dict[str, bool]] = {"this": True, "partition": False}


class Descriptor(exp.Expression):
    """`DESCRIPTOR(col)`: the columns it names."""

    arg_types: t.ClassVar[dict[str, bool]] = {"expressions": True}


class RawSql(exp.Expression):
    """SQL text the rewrite produced; printed exactly as given. `tables` (never printed) keeps
    the table references the text reads, so scope and schema lookups still find them."""

    arg_types: t.ClassVar[dict[str, bool]] = {"this": True, "tables": False}


def _remember(parser: WindowParser, node: exp.Expr, start: Token) -> exp.Expr:
    """Record where a node's text starts and what it says, for error messages."""
    end = parser._prev
    node.meta["offset"] = start.start
    if end is not None and end.end >= start.start:
        node.meta["text"] = parser.sql[start.start : end.end + 1]
    return node


def _window_call_parser(name: str) -> t.Callable[[WindowParser], exp.Expr]:
    def parse(parser: WindowParser) -> exp.Expr:
        return parser._parse_window_call(name)

    return parse


class WindowParser(PostgresParser):
    FUNCTIONS: t.ClassVar[dict[str, t.Callable[..., exp.Expr]]] = {
        name: PostgresParser.FUNCTIONS[name] for name in _TYPED_FUNCTIONS
    }

    FUNCTION_PARSERS: t.ClassVar[dict[str, t.Callable[..., exp.Expr | None]]] = {
        **PostgresParser.FUNCTION_PARSERS,
        **{name: _window_call_parser(name) for name in WINDOW_FUNCTIONS},
        "TABLE": lambda self: self._parse_table_call(),
    }

    def _parse_window_call(self, name: str) -> exp.Expr:
        start = self._tokens[self._index - 2]
        args = self._parse_csv(self._parse_window_arg)
        call = self.expression(WindowCall(this=exp.var(name), expressions=[a for a in args if a is not None]))
        call.meta["offset"] = start.start
        return call

    def _parse_window_arg(self) -> exp.Expr | None:
        start = self._curr
        if start is None or start.token_type == TokenType.R_PAREN:
            return None
        name: str | None = None
        if self._next is not None and self._next.token_type == TokenType.FARROW:
            name = start.text.upper()
            self._advance(2)
        value: exp.Expr | None
        if self._match(TokenType.TABLE):
            relation = self._parse_window_relation()
            value = self.expression(TableArg(this=relation))
        elif (
            self._curr is not None
            and self._curr.text.upper() == "DESCRIPTOR"
            and self._next is not None
            and self._next.token_type == TokenType.L_PAREN
        ):
            self._advance(2)
            columns = self._parse_csv(self._parse_column)
            self._match_r_paren()
            value = self.expression(Descriptor(expressions=columns))
        else:
            value = self._parse_assignment()
        if value is not None and self._match(TokenType.PARTITION_BY):
            # Flink: one column bare, several in parentheses (a bare list would swallow the
            # following arguments).
            if self._curr is not None and self._curr.token_type == TokenType.L_PAREN:
                keys = self._parse_wrapped_csv(self._parse_column)
            else:
                key = self._parse_column()
                keys = [key] if key is not None else []
            if not isinstance(value, TableArg):
                value = self.expression(TableArg(this=value))
            value.set("partition", [key for key in keys if key is not None])
        if value is None:
            self.raise_error("Expected a window function argument")
            return None
        if name is not None:
            value = self.expression(exp.Kwarg(this=exp.var(name), expression=value))
        return _remember(self, value, start)

    def _parse_window_relation(self) -> exp.Expr | None:
        if self._curr is not None and self._curr.token_type == TokenType.L_PAREN:
            return self._parse_select(table=True)
        return self._parse_table_parts()

    def _parse_table_call(self) -> exp.Expr | None:
        """`TABLE(<window call>)` is the window call itself; any other TABLE(...) stays as is."""
        start = self._tokens[self._index - 2]
        args = self._parse_csv(self._parse_assignment)
        if len(args) == 1 and isinstance(args[0], WindowCall):
            # The caller consumes the closing parenthesis.
            args[0].meta["offset"] = start.start
            return args[0]
        return self.expression(exp.Anonymous(this="TABLE", expressions=args))


class DataFusionGenerator(PostgresGenerator):
    # Postgres has no TRY_CAST and prints it as CAST, which DataFusion would make fail on bad
    # input; without the entry the base generator prints TRY_CAST, which DataFusion has.
    TRANSFORMS: t.ClassVar[dict[type[exp.Expr], t.Callable[..., str]]] = {
        **{k: v for k, v in PostgresGenerator.TRANSFORMS.items() if k is not exp.TryCast},
        RawSql: lambda self, e: e.name,
    }


class StreamHouseDialect(Postgres):
    # Function names are printed as written: DataFusion folds them itself.
    NORMALIZE_FUNCTIONS = False

    class Tokenizer(Postgres.Tokenizer):
        KEYWORDS: t.ClassVar[dict[str, TokenType]] = {
            k: v for k, v in Postgres.Tokenizer.KEYWORDS.items() if k != "SESSION"
        }

    Parser = WindowParser
    Generator = DataFusionGenerator


_DIALECT = StreamHouseDialect()


def parse_query(sql: str) -> exp.Query:
    """Parse one SELECT / WITH query; anything else, or bad syntax, is a SqlError."""
    try:
        statements = [tree for tree in _DIALECT.parse(sql) if tree is not None]
    except ParseError as error:
        raise _misspelled_start(sql) or sql_error_from_parse(error, sql) from error
    except TokenError as error:
        raise sql_error_from_parse(error, sql) from error
    if len(statements) != 1:
        raise SqlError(f"expected exactly one query, got {len(statements)} statements")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise SqlError(f"expected a SELECT or WITH query, got {tree.key.upper()}")
    return tree


def _misspelled_start(sql: str) -> SqlError | None:
    """sqlglot's message for `SELEC * FROM t` is about a multiplication; say what is wrong."""
    try:
        tokens = _DIALECT.tokenize(sql)
    except TokenError:
        return None
    if not tokens or tokens[0].token_type in _QUERY_STARTS:
        return None
    first = tokens[0]
    return SqlError(
        f"expected a query starting with SELECT or WITH, got {first.text!r}",
        position=position_at(sql, first.start),
    )


def to_sql(node: exp.Expr) -> str:
    """DataFusion SQL for a tree; identifiers keep the spelling and quoting the user chose."""
    return _DIALECT.generate(node)


def ident_name(node: exp.Expr) -> str:
    """The name DataFusion resolves an identifier to: unquoted names fold to lower case."""
    ident = node.this if isinstance(node, exp.Column) else node
    if isinstance(ident, exp.Identifier):
        return ident.name if ident.quoted else ident.name.lower()
    return node.name.lower()


def quote_ident(name: str) -> str:
    """`name` as a DataFusion identifier, quoted only when folding or a keyword would change it."""
    if _PLAIN_IDENT.match(name) and name.upper() not in StreamHouseDialect.Tokenizer.KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def node_text(node: exp.Expr) -> str:
    """The text the user wrote for an argument, else its regenerated SQL."""
    text = node.meta.get("text") if node.meta else None
    return text if isinstance(text, str) else to_sql(node)


def node_position(node: exp.Expr, sql: str) -> tuple[int, int] | None:
    """(line, column) of a node the window parser marked, else of its nearest marked ancestor."""
    current: exp.Expr | None = node
    while current is not None:
        offset = current.meta.get("offset") if current._meta else None
        if isinstance(offset, int):
            return position_at(sql, offset)
        current = current.parent
    return None
