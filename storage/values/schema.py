"""A topic's declared value columns (docs/DESIGN.md §7): names and SQL types, the watermark, and
their Arrow types. Stored as JSON text in TopicInfo.value_schema; the segment writer decodes
JSON values into these columns once, and SQL reads them as typed table columns."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.values.types import TIMESTAMP, arrow_type

__all__ = ["COLUMN_PREFIX", "TIMESTAMP", "Column", "ValueSchema", "Watermark", "arrow_type", "parse_value_schema"]

# Segment column names of declared columns: prefixed, so a column called "value" or "offset"
# cannot collide with the record columns (DuckDB sees them as "v.auction", …).
COLUMN_PREFIX = "v."
FORMATS = ("json", "avro", "protobuf", "json-schema")
# Formats whose columns come from a schema-registry subject (storage/values/registry_format.py).
REGISTRY_FORMATS = ("avro", "protobuf", "json-schema")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str

    @property
    def arrow_type(self) -> pa.DataType:
        return arrow_type(self.sql_type)

    @property
    def segment_name(self) -> str:
        return COLUMN_PREFIX + self.name


@dataclass(frozen=True)
class Watermark:
    """`WATERMARK FOR column AS column - INTERVAL …`: event time and its allowed delay."""

    column: str
    delay_ms: int


@dataclass(frozen=True)
class ValueSchema:
    columns: tuple[Column, ...]
    watermark: Watermark | None = None
    format: str = "json"
    # Avro topics (issue 13): the registry subject whose latest schema gave the columns, and
    # that schema's version under it (raised by schema evolution; None: not recorded).
    subject: str | None = None
    version: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidInputError(f"format {self.format!r} is not supported; use one of {', '.join(FORMATS)}")
        if self.format in REGISTRY_FORMATS and not self.subject:
            raise InvalidInputError(f"a {self.format} value schema needs its registry subject")
        if not self.columns and self.format not in REGISTRY_FORMATS:
            raise InvalidInputError("a value schema needs at least one column")
        seen: set[str] = set()
        for column in self.columns:
            if not _NAME.match(column.name):
                raise InvalidInputError(
                    f"bad column name {column.name!r}: letters, digits and _, not starting with a digit"
                )
            if column.name.startswith("_"):
                raise InvalidInputError(f"column {column.name!r}: names starting with _ are the system columns'")
            if column.name.lower() in seen:
                raise InvalidInputError(f"column {column.name!r} is declared twice")
            seen.add(column.name.lower())
            column.arrow_type  # noqa: B018 - validates the type now, not at the first flush
        # An Avro topic's columns are filled in from its subject when it is created
        # (engine/registry/produce_check.py resolve): its watermark is checked then.
        if self.watermark is not None and self.columns:
            event = self.column(self.watermark.column)
            if event is None or event.arrow_type != TIMESTAMP:
                raise InvalidInputError(f"WATERMARK FOR {self.watermark.column}: not a declared TIMESTAMP(3) column")
            if self.watermark.delay_ms < 0:
                raise InvalidInputError("a watermark delay cannot be negative")

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)

    @property
    def event_time(self) -> str | None:
        return self.watermark.column if self.watermark else None

    def arrow_schema(self) -> pa.Schema:
        """Declared columns as SQL sees them (all nullable: a JSON field may be missing)."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    def segment_schema(self) -> pa.Schema:
        """The same columns as the segment stores them, beside the record columns."""
        return pa.schema([pa.field(c.segment_name, c.arrow_type) for c in self.columns])

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "format": self.format,
            "columns": [{"name": c.name, "type": c.sql_type} for c in self.columns],
        }
        if self.subject is not None:
            doc["subject"] = self.subject
        if self.version is not None:
            doc["version"] = self.version
        if self.watermark is not None:
            doc["watermark"] = {"column": self.watermark.column, "delay_ms": self.watermark.delay_ms}
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ValueSchema:
        try:
            doc = json.loads(text)
            columns = tuple(Column(str(c["name"]), str(c["type"])) for c in doc["columns"])
            mark = doc.get("watermark")
            watermark = Watermark(str(mark["column"]), int(mark["delay_ms"])) if mark else None
            subject, version = doc.get("subject"), doc.get("version")
            return cls(
                columns,
                watermark,
                str(doc.get("format", "json")),
                None if subject is None else str(subject),
                None if version is None else int(version),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"bad value schema {text[:200]!r}: {exc}") from None


def parse_value_schema(text: str | None) -> ValueSchema | None:
    """A topic's schema from TopicInfo.value_schema (None for raw-bytes topics)."""
    return ValueSchema.from_json(text) if text else None
