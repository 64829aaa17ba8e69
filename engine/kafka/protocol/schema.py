"""The field-spec language our message schemas are written in.

A schema is a few indented lines, one field each:

    name  type  [vA+ | vA-B | vA]  [null:A+ | null:A-B]  [tag:N]  [=default]

`type` is a primitive (int8 int16 int32 int64 uint16 float64 bool string bytes uuid
records), `[]T` an array of a primitive, `[]` an array of the struct whose fields follow
indented, `{}` a single such struct. Versions say in which message versions the field is
on the wire; `null:` in which it may be null; `tag:` makes it a tagged field (flexible
versions only). A field outside its versions decodes to its default, so code reading a
message never needs to know which version arrived.

Writing the schema as text keeps each API to a screenful that reads like Kafka's own
documentation, and parsing happens once, at import.
"""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass
from typing import Any

from streamhouse.kafka.protocol.primitives import ZERO_UUID

PRIMITIVES = frozenset(
    {"int8", "int16", "int32", "int64", "uint16", "float64", "bool", "string", "bytes", "uuid", "records"}
)
MAX_VERSION = 0x7FFF


@dataclass(frozen=True)
class Versions:
    lo: int
    hi: int

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.lo <= version <= self.hi

    @staticmethod
    def parse(text: str) -> Versions:
        if text.endswith("+"):
            return Versions(int(text[:-1]), MAX_VERSION)
        lo, _, hi = text.partition("-")
        return Versions(int(lo), int(hi or lo))


NEVER = Versions(1, 0)


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a primitive, "[]<primitive>", "[]" (struct array) or "{}" (struct)
    versions: Versions
    nullable: Versions = NEVER
    tag: int | None = None
    default_text: str | None = None
    fields: tuple[Field, ...] = ()

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def element(self) -> str:
        """The element type of an array ("" for a struct array)."""
        return self.type[2:]

    def default(self) -> Any:
        """The value a field has when it is not on the wire (a fresh object each call)."""
        if self.default_text == "null":
            return None
        if self.default_text is not None:
            return _parse_default(self.type, self.default_text)
        return _zero(self)


def _zero(field: Field) -> Any:
    t = field.type
    if t.startswith("[]"):
        return []
    if t == "{}":
        return {f.name: f.default() for f in field.fields}
    if t == "bool":
        return False
    if t == "string":
        return ""
    if t == "bytes":
        return b""
    if t == "records":
        return None
    if t == "uuid":
        return ZERO_UUID
    if t == "float64":
        return 0.0
    return 0


def _parse_default(type_: str, text: str) -> Any:
    if type_ == "bool":
        return text == "true"
    if type_ == "string":
        return text
    if type_ == "uuid":
        return uuid.UUID(text)
    if type_ == "float64":
        return float(text)
    return int(text, 0)


def parse_fields(text: str) -> tuple[Field, ...]:
    """Parses an indented field list (see the module docstring)."""
    lines = [line for line in textwrap.dedent(text).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    fields, rest = _parse_block(lines, 0)
    assert not rest, f"schema lines left over: {rest[:1]}"
    return fields


def _parse_block(lines: list[str], indent: int) -> tuple[tuple[Field, ...], list[str]]:
    out: list[Field] = []
    while lines:
        line = lines[0]
        depth = len(line) - len(line.lstrip())
        if depth < indent:
            break
        assert depth == indent, f"unexpected indentation: {line!r}"
        lines = lines[1:]
        children: tuple[Field, ...] = ()
        field = _parse_line(line.strip())
        if field.type in ("[]", "{}"):
            children, lines = _parse_block(lines, indent + 2)
            assert children, f"struct without fields: {line!r}"
        out.append(
            Field(field.name, field.type, field.versions, field.nullable, field.tag, field.default_text, children)
        )
    return tuple(out), lines


def _parse_line(line: str) -> Field:
    name, type_, *opts = line.split()
    element = type_[2:] if type_.startswith("[]") else type_
    assert element in PRIMITIVES or type_ in ("[]", "{}"), f"unknown type in {line!r}"
    versions = Versions(0, MAX_VERSION)
    nullable = NEVER
    tag: int | None = None
    default: str | None = None
    for opt in opts:
        if opt.startswith("v"):
            versions = Versions.parse(opt[1:])
        elif opt.startswith("null:"):
            nullable = Versions.parse(opt[5:])
        elif opt.startswith("tag:"):
            tag = int(opt[4:])
        elif opt.startswith("="):
            default = opt[1:]
        else:
            raise AssertionError(f"unknown option {opt!r} in {line!r}")
    return Field(name, type_, versions, nullable, tag, default)


@dataclass(frozen=True)
class Api:
    """One Kafka API: its key, the versions we implement and from which on it is flexible."""

    key: int
    name: str
    min_version: int
    max_version: int
    flexible_from: int
    request: tuple[Field, ...]
    response: tuple[Field, ...]

    def is_flexible(self, version: int) -> bool:
        return version >= self.flexible_from

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


def api(key: int, name: str, versions: str, flexible: int, request: str, response: str) -> Api:
    v = Versions.parse(versions)
    return Api(key, name, v.lo, v.hi, flexible, parse_fields(request), parse_fields(response))
