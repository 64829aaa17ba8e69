"""Topic DDL and metadata statements, Flink style (docs/DESIGN.md §7): CREATE TOPIC with declared
columns, a WATERMARK and WITH options; ALTER TOPIC SET/RESET/ADD PARTITIONS; DROP TOPIC; SHOW
TOPICS; DESCRIBE; EXPLAIN. Topic settings are judged by storage/topic_config.py. A small
tokenizer and recursive descent: sqlglot knows neither TOPIC nor WATERMARK."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlglot import exp

from streamhouse.sql.errors import SqlError, position_at
from streamhouse.sql.intervals import IntervalError, interval_ms
from streamhouse.sql.statements.job_options import parse_job_options
from streamhouse.storage import topic_config
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.values.schema import REGISTRY_FORMATS, Column, ValueSchema, Watermark

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`)
      | (?P<number>\d+)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<symbol>[(),=;*-])
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


@dataclass(frozen=True)
class CreateTopic:
    name: str
    partitions: int = 1
    schema: ValueSchema | None = None
    config: dict[str, str] = field(default_factory=dict)
    if_not_exists: bool = False


@dataclass(frozen=True)
class AlterTopic:
    """`ALTER TOPIC name SET ('k' = 'v', …)`, `RESET ('k', …)` or `ADD PARTITIONS n` (n more
    partitions). Only the syntax is checked here: the agent judges the settings against the
    topic as it is (storage/topic_config.alter_change)."""

    name: str
    set_config: Mapping[str, str] = field(default_factory=dict)
    reset: tuple[str, ...] = ()
    add_partitions: int | None = None


@dataclass(frozen=True)
class DropTopic:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class ShowTopics:
    pass


@dataclass(frozen=True)
class Describe:
    name: str
    partitions: bool = False  # DESCRIBE TOPIC t: per partition (log start, end, size, …), not columns


@dataclass(frozen=True)
class Explain:
    query: str


@dataclass(frozen=True)
class CreateJob:
    """`CREATE MATERIALIZED VIEW name [WITH (…)] AS SELECT …` (output: a new topic `name`) or
    `INSERT INTO topic [WITH (…)] SELECT …` (an existing topic)."""

    name: str
    select: str
    options: dict[str, str] = field(default_factory=dict)
    materialized: bool = True  # False: INSERT INTO an existing topic


@dataclass(frozen=True)
class DropJob:
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class ShowJobs:
    pass


Statement = CreateTopic | AlterTopic | DropTopic | ShowTopics | Describe | Explain | CreateJob | DropJob | ShowJobs


def parse_statement(sql: str) -> Statement | None:
    """A DDL/metadata statement, or None when `sql` is a query for DataFusion."""
    text = sql.strip().rstrip(";").strip()
    head = text.split(None, 2)
    words = [w.upper() for w in head[:2]]
    if not words:
        raise SqlError("empty statement")
    if words[0] == "EXPLAIN":
        return Explain(text[len(head[0]) :].strip())
    if words[0] == "SHOW" and words[1:] == ["TOPICS"] and len(head) == 2:
        return ShowTopics()
    if words[0] in ("DESCRIBE", "DESC"):
        return _Parser(text).describe()
    if words[:2] == ["CREATE", "TOPIC"]:
        return _Parser(text).create_topic()
    if words[:2] == ["DROP", "TOPIC"]:
        return _Parser(text).drop_topic()
    if words[:2] == ["ALTER", "TOPIC"]:
        return _Parser(text).alter_topic()
    if words[0] == "SHOW" and words[1:] == ["JOBS"] and len(head) == 2:
        return ShowJobs()
    upper = " ".join(text.split()[:3]).upper()
    if upper.startswith("CREATE MATERIALIZED VIEW"):
        return _Parser(text).create_job(materialized=True)
    if words[:2] == ["INSERT", "INTO"]:
        return _Parser(text).create_job(materialized=False)
    if upper.startswith("DROP MATERIALIZED VIEW") or words[:2] == ["DROP", "JOB"]:
        return _Parser(text).drop_job()
    return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise self._error(f"unexpected character {text[position]!r}", position)
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append(Token(kind, match.group(kind), match.start(kind)))
            position = match.end()
        self.i = 0

    # -- helpers --------------------------------------------------------------------------------
    def _error(self, message: str, position: int | None = None) -> SqlError:
        if position is None:
            position = self.tokens[self.i].position if self.i < len(self.tokens) else len(self.text)
        return SqlError(message, position=position_at(self.text, position))

    def _peek(self, word: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        token = self.tokens[self.i]
        return word is None or token.text.upper() == word

    def _take(self, word: str | None = None, what: str = "") -> Token:
        if self.i >= len(self.tokens) or (word is not None and self.tokens[self.i].text.upper() != word):
            found = self.tokens[self.i].text if self.i < len(self.tokens) else "end of statement"
            raise self._error(f"expected {word or what}, found {found!r}")
        self.i += 1
        return self.tokens[self.i - 1]

    def _accept(self, *words: str) -> bool:
        start = self.i
        for word in words:
            if not self._peek(word):
                self.i = start
                return False
            self.i += 1
        return True

    def _name(self) -> str:
        token = self._take(what="a name")
        if token.kind == "quoted":
            return token.text[1:-1].replace('""', '"')
        if token.kind != "word":
            raise self._error(f"expected a name, found {token.text!r}", token.position)
        return token.text

    def _end(self) -> None:
        if self.i < len(self.tokens):
            raise self._error(f"unexpected {self.tokens[self.i].text!r} after the end of the statement")

    # -- statements -----------------------------------------------------------------------------
    def describe(self) -> Describe:
        self._take()
        partitions = self._accept("TOPIC")
        name = self._name()
        self._end()
        return Describe(name, partitions)

    def drop_topic(self) -> DropTopic:
        self._take("DROP")
        self._take("TOPIC")
        if_exists = self._accept("IF", "EXISTS")
        name = self._name()
        self._end()
        return DropTopic(name, if_exists)

    def alter_topic(self) -> AlterTopic:
        self._take("ALTER")
        self._take("TOPIC")
        name = self._name()
        if self._accept("SET"):
            statement = AlterTopic(name, set_config=self._options())
        elif self._accept("RESET"):
            statement = AlterTopic(name, reset=tuple(self._keys()))
        elif self._accept("ADD"):
            if not self._accept("PARTITIONS") and not self._accept("PARTITION"):
                raise self._error("expected PARTITIONS n after ADD")
            negative = self._accept("-")
            count = self._take(what="the number of partitions to add")
            if count.kind != "number":
                raise self._error(f"ADD PARTITIONS needs a whole number, found {count.text!r}", count.position)
            statement = AlterTopic(name, add_partitions=-int(count.text) if negative else int(count.text))
        else:
            found = self.tokens[self.i].text if self.i < len(self.tokens) else "end of statement"
            raise self._error(
                f"expected SET (…), RESET (…) or ADD PARTITIONS n after ALTER TOPIC {name}, found {found!r}"
            )
        self._end()
        return statement

    def create_topic(self) -> CreateTopic:
        self._take("CREATE")
        self._take("TOPIC")
        if_not_exists = self._accept("IF", "NOT", "EXISTS")
        name = self._name()
        columns: list[Column] = []
        watermark: Watermark | None = None
        if self._accept("("):
            while True:
                if self._peek("WATERMARK"):
                    watermark = self._watermark()
                else:
                    columns.append(self._column())
                if self._accept(")"):
                    break
                self._take(",")
        raw_options = self._options() if self._accept("WITH") else {}
        self._end()
        registered = self._registered(name, raw_options, columns)
        if registered is not None:
            options = topic_config.parse_options(raw_options, f"CREATE TOPIC {name}")
            partitions = options.pop("partitions", "1")
            try:
                registry_schema = ValueSchema((), watermark, *registered)
            except InvalidInputError as exc:
                raise SqlError(f"CREATE TOPIC {name}: {exc}") from None
            return CreateTopic(name, int(partitions), registry_schema, options, if_not_exists)
        options = topic_config.parse_options(raw_options, f"CREATE TOPIC {name}")
        partitions = options.pop("partitions", "1")
        fmt = options.pop("format", "json" if columns else "")
        try:
            schema = ValueSchema(tuple(columns), watermark, fmt) if columns else None
        except InvalidInputError as exc:
            raise SqlError(f"CREATE TOPIC {name}: {exc}") from None
        if fmt and not columns and fmt != "raw":
            raise SqlError(f"CREATE TOPIC {name}: format {fmt!r} needs declared columns")
        if watermark is not None and not columns:
            raise SqlError(f"CREATE TOPIC {name}: a WATERMARK needs declared columns")
        return CreateTopic(name, int(partitions), schema, options, if_not_exists)

    def _registered(self, name: str, raw_options: dict[str, str], columns: list[Column]) -> tuple[str, str] | None:
        """`format = 'avro' | 'protobuf' | 'json-schema'` (issue 13): takes `format` and `subject`
        out of `raw_options` and returns (format, subject) (default `<name>-value`, the
        TopicNameStrategy); the subject's latest schema gives the columns when the agent creates
        the topic. None otherwise."""
        keys = {k.lower(): k for k in raw_options}
        fmt_key = keys.get("format")
        fmt = raw_options[fmt_key].strip().lower() if fmt_key else ""
        if fmt not in REGISTRY_FORMATS:
            if "subject" in keys:
                needs = " | ".join(map(repr, REGISTRY_FORMATS))
                raise SqlError(f"CREATE TOPIC {name}: 'subject' needs format = {needs}")
            return None
        if columns:
            raise SqlError(f"CREATE TOPIC {name}: a {fmt} topic's columns come from its subject's schema; declare none")
        assert fmt_key is not None
        del raw_options[fmt_key]
        subject_key = keys.get("subject")
        subject = raw_options.pop(subject_key).strip() if subject_key else f"{name}-value"
        if not subject:
            raise SqlError(f"CREATE TOPIC {name}: subject must not be empty")
        return fmt, subject

    def create_job(self, *, materialized: bool) -> CreateJob:
        if materialized:
            for word in ("CREATE", "MATERIALIZED", "VIEW"):
                self._take(word)
        else:
            self._take("INSERT")
            self._take("INTO")
        name = self._name()
        options = self._options() if self._accept("WITH") else {}
        if materialized:
            self._take("AS")
        if not self._peek("SELECT") and not self._peek("WITH"):
            raise self._error("expected the SELECT the job runs")
        select = self.text[self.tokens[self.i].position :].strip()
        parse_job_options(options, name)  # refused here, before anything exists
        return CreateJob(name, select, {k: v for k, v in options.items()}, materialized)

    def drop_job(self) -> DropJob:
        self._take("DROP")
        if self._accept("MATERIALIZED"):
            self._take("VIEW")
        else:
            self._take("JOB")
        if_exists = self._accept("IF", "EXISTS")
        name = self._name()
        self._end()
        return DropJob(name, if_exists)

    def _column(self) -> Column:
        name = self._name()
        start = self.i
        depth = 0
        # The type runs to the next top-level comma or the closing parenthesis.
        while self.i < len(self.tokens):
            text = self.tokens[self.i].text
            if depth == 0 and text in (",", ")"):
                break
            depth += {"(": 1, ")": -1, "<": 1, ">": -1}.get(text, 0)
            self.i += 1
        if self.i == start:
            raise self._error(f"column {name}: expected a type")
        first, last = self.tokens[start], self.tokens[self.i - 1]
        sql_type = self.text[first.position : last.position + len(last.text)]
        sql_type = re.sub(r"\s+NOT\s+NULL$|\s+NULL$", "", sql_type, flags=re.I)
        try:
            Column(name, sql_type).arrow_type  # noqa: B018 - reports a bad type at its position
        except InvalidInputError as exc:
            raise self._error(f"column {name}: {exc}", first.position) from None
        return Column(name, sql_type)

    def _watermark(self) -> Watermark:
        self._take("WATERMARK")
        self._take("FOR")
        column = self._name()
        self._take("AS")
        again = self._name()
        if again.lower() != column.lower():
            raise self._error(f"WATERMARK FOR {column} AS {again} - …: the expression must use {column}")
        delay = 0
        if self._accept("-"):
            self._take("INTERVAL")
            amount = self._take(what="an interval like '5'")
            unit = self._take(what="an interval unit")
            literal = exp.Interval(this=exp.Literal.string(amount.text.strip("'")), unit=exp.var(unit.text))
            try:
                delay = interval_ms(literal)
            except IntervalError as exc:
                raise self._error(
                    f"WATERMARK delay INTERVAL {amount.text} {unit.text}: {exc}", amount.position
                ) from None
        return Watermark(column, delay)

    def _options(self) -> dict[str, str]:
        self._take("(")
        options: dict[str, str] = {}
        while True:
            key = self._take(what="an option name")
            self._take("=")
            value = self._take(what="an option value")
            options[_unquote(key.text).lower()] = _unquote(value.text)
            if self._accept(")"):
                return options
            self._take(",")

    def _keys(self) -> list[str]:
        """`('k', …)`: the setting names of a RESET."""
        self._take("(")
        keys: list[str] = []
        while True:
            keys.append(_unquote(self._take(what="a setting name").text).lower())
            if self._accept(")"):
                return keys
            self._take(",")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return text[1:-1].replace(text[0] * 2, text[0])
    return text
