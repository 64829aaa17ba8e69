""".proto text to a checked model: messages and enums by full name, field types resolved.

proto-schema-parser (pure Python, ANTLR grammar) gives the syntax tree without touching the disk;
protoc (grpc_tools) would need the schema and every reference written to files and is a test-only
dependency here. What protoc would also check is checked below: field numbers (range, unique,
not reserved), names, proto3 restrictions, map keys, enum zero values and aliases, and that every
named type resolves with protobuf's scoping rules (innermost scope outwards), into this file,
a reference, or a well-known type. Types from an import that was not supplied stay unresolved
(kind "named") rather than refused, as Confluent accepts such schemas too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from streamhouse.registry.compat.errors import InvalidSchemaError

SCALARS = frozenset(
    [
        "double",
        "float",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
        "bool",
        "string",
        "bytes",
    ]
)
_MAP_KEYS = SCALARS - {"double", "float", "bytes"}
_MAX_NUMBER = 536_870_911
_NESTING = 64
# Types Confluent's registry knows without a reference (google/protobuf/*.proto, well-known types).
_WELL_KNOWN = {
    **{
        f"google.protobuf.{n}": "message"
        for n in ["Any", "Timestamp", "Duration", "Empty", "Struct", "Value", "ListValue", "FieldMask"]
    },
    **{
        f"google.protobuf.{n}Value": "message"
        for n in ["Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes"]
    },
    "google.protobuf.NullValue": "enum",
    "google.type.Date": "message",
    "google.type.TimeOfDay": "message",
    "google.type.Money": "message",
    "confluent.type.Decimal": "message",
}


@dataclass(frozen=True)
class ProtoField:
    """`type` is a scalar name, a resolved full type name, or `map<key,value>`; `kind` is
    scalar | message | enum | group | map | named (an unresolved import)."""

    name: str
    number: int
    type: str
    kind: str
    label: str  # required | optional | repeated | "" (proto3 singular)
    oneof: str | None
    map_value_kind: str = ""


@dataclass(frozen=True)
class ProtoMessage:
    full_name: str
    fields: tuple[ProtoField, ...]
    oneofs: tuple[str, ...]
    reserved: tuple[tuple[int, int], ...]

    def by_number(self) -> dict[int, ProtoField]:
        return {f.number: f for f in self.fields}


@dataclass(frozen=True)
class ProtoEnum:
    full_name: str
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ProtoSchema:
    """A parsed .proto: syntax, package, messages and enums by full name (declaration order,
    parents before their nested types) and the message indexes of the wire format."""

    syntax: str
    package: str
    messages: Mapping[str, ProtoMessage]
    enums: Mapping[str, ProtoEnum]
    indexes: Mapping[str, tuple[int, ...]]

    def message_at(self, indexes: tuple[int, ...]) -> str:
        """The full name of the message a wire-format index path names ((0,): the first message)."""
        for name, path in self.indexes.items():
            if path == (indexes or (0,)):
                return name
        raise KeyError(f"no message at index path {list(indexes)}")


class _RaisingListener:
    """An ANTLR error listener: the first syntax error becomes InvalidSchemaError (the parser's
    default listener only prints). ANTLR calls these four methods by name."""

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise InvalidSchemaError("PROTOBUF", f"line {line}:{column + 1}", msg)

    def reportAmbiguity(self, *args: Any) -> None:
        return None

    def reportAttemptingFullContext(self, *args: Any) -> None:
        return None

    def reportContextSensitivity(self, *args: Any) -> None:
        return None


def _quiet(recognizer: Any) -> None:
    recognizer.removeErrorListeners()
    recognizer.addErrorListener(_RaisingListener())


def syntax_tree(text: str) -> ast.File:
    try:
        return Parser(setup_lexer=_quiet, setup_parser=_quiet).parse(text)
    except RecursionError as exc:
        raise InvalidSchemaError("PROTOBUF", "schema", "nested too deeply") from exc


def _ranges(specs: list[str], where: str) -> list[tuple[int, int]]:
    out = []
    for spec in specs:
        low, _, high = (part.strip() for part in spec.partition(" to "))
        try:
            out.append((int(low, 0), _MAX_NUMBER if high == "max" else int(high or low, 0)))
        except ValueError as exc:
            raise InvalidSchemaError("PROTOBUF", where, f"bad reserved range {spec!r}") from exc
    return out


class _Builder:
    """Two passes over one file: declare every type name, then build the resolved model."""

    def __init__(self, tree: ast.File, known: dict[str, str], imports_missing: bool) -> None:
        self.tree = tree
        self.syntax = tree.syntax or ("editions" if tree.edition else "proto2")
        if self.syntax not in ("proto2", "proto3", "editions"):
            raise InvalidSchemaError("PROTOBUF", "syntax", f"unknown syntax {self.syntax!r}")
        packages = [e.name for e in tree.file_elements if isinstance(e, ast.Package)]
        if len(packages) > 1:
            raise InvalidSchemaError("PROTOBUF", "package", "more than one package statement")
        self.package = packages[0] if packages else ""
        self.known = known
        self.imports_missing = imports_missing
        self.messages: dict[str, ProtoMessage] = {}
        self.enums: dict[str, ProtoEnum] = {}
        self.indexes: dict[str, tuple[int, ...]] = {}

    def declare(self) -> None:
        stack: list[tuple[list[Any], str, int]] = [(list(self.tree.file_elements), self.package, 0)]
        while stack:
            elements, scope, depth = stack.pop()
            if depth > _NESTING:
                raise InvalidSchemaError("PROTOBUF", scope, f"messages nested deeper than {_NESTING}")
            for e in elements:
                if isinstance(e, ast.Message | ast.Group | ast.Enum | ast.OneOf):
                    full = f"{scope}.{e.name}".lstrip(".")
                    if not isinstance(e, ast.OneOf):
                        if full in self.known:
                            raise InvalidSchemaError("PROTOBUF", full, "type declared twice")
                        self.known[full] = "enum" if isinstance(e, ast.Enum) else "message"
                    if isinstance(e, ast.Message | ast.Group):
                        stack.append((list(e.elements), full, depth + 1))
                    elif isinstance(e, ast.OneOf):
                        stack.append(([g for g in e.elements if isinstance(g, ast.Group)], scope, depth))

    def resolve(self, name: str, scope: str, where: str) -> tuple[str, str]:
        """(full name, kind) of a type reference, by protobuf's scoping (innermost scope first)."""
        if name.startswith("."):
            candidates = [name[1:]]
        else:
            first = name.split(".", 1)[0]
            parts = scope.split(".") if scope else []
            candidates = []
            for i in range(len(parts), -1, -1):
                prefix = ".".join(parts[:i])
                head = f"{prefix}.{first}".lstrip(".")
                if head in self.known or any(k.startswith(head + ".") for k in self.known):
                    candidates = [f"{prefix}.{name}".lstrip(".")]
                    break
        for full in candidates:
            if full in self.known:
                return full, self.known[full]
        full = name.lstrip(".")
        if full in _WELL_KNOWN:
            return full, _WELL_KNOWN[full]
        if self.imports_missing:
            return full, "named"
        raise InvalidSchemaError("PROTOBUF", where, f"unknown type {name!r}")

    def build(self) -> None:
        top = 0
        for e in self.tree.file_elements:
            if isinstance(e, ast.Message):
                self._message(e, self.package, (top,), 0)
                top += 1
            elif isinstance(e, ast.Enum):
                self._enum(e, self.package)

    def _enum(self, e: ast.Enum, scope: str) -> None:
        full = f"{scope}.{e.name}".lstrip(".")
        values = [(v.name, v.number) for v in e.elements if isinstance(v, ast.EnumValue)]
        if not values:
            raise InvalidSchemaError("PROTOBUF", f"enum {full}", "an enum needs at least one value")
        if self.syntax == "proto3" and values[0][1] != 0:
            raise InvalidSchemaError("PROTOBUF", f"enum {full}", "the first value of a proto3 enum must be 0")
        alias = any(isinstance(o, ast.Option) and o.name == "allow_alias" and o.value is True for o in e.elements)
        numbers = [n for _, n in values]
        if not alias and len(set(numbers)) != len(numbers):
            raise InvalidSchemaError("PROTOBUF", f"enum {full}", "two values share a number (allow_alias is off)")
        self.enums[full] = ProtoEnum(full, tuple(values))

    def _message(self, m: ast.Message | ast.Group, scope: str, index: tuple[int, ...], depth: int) -> None:
        full = f"{scope}.{m.name}".lstrip(".")
        self.indexes[full] = index
        fields: list[ProtoField] = []
        reserved: list[tuple[int, int]] = []
        reserved_names: set[str] = set()
        oneofs: list[str] = []
        nested = 0
        members: list[tuple[Any, str | None]] = [(e, None) for e in m.elements]
        for e, oneof in members:
            where = f"message {full} field {getattr(e, 'name', '')}"
            if isinstance(e, ast.OneOf):
                oneofs.append(e.name)
                members.extend((x, e.name) for x in e.elements)
            elif isinstance(e, ast.Reserved):
                reserved += _ranges(e.ranges, f"message {full} reserved")
                reserved_names.update(e.names)
            elif isinstance(e, ast.Message):
                self._message(e, full, (*index, nested), depth + 1)
                nested += 1
            elif isinstance(e, ast.Enum):
                self._enum(e, full)
            elif isinstance(e, ast.Group):
                if self.syntax == "proto3":
                    raise InvalidSchemaError("PROTOBUF", where, "groups are not allowed in proto3")
                self._message(e, full, (*index, nested), depth + 1)
                nested += 1
                label = (e.cardinality.value.lower() if e.cardinality else "") if oneof is None else ""
                fields.append(ProtoField(e.name.lower(), e.number, f"{full}.{e.name}", "group", label, oneof))
            elif isinstance(e, ast.MapField):
                key, value_kind = e.key_type, "scalar"
                if key not in _MAP_KEYS:
                    raise InvalidSchemaError("PROTOBUF", where, f"map key type {key!r} is not integral or string")
                value = e.value_type
                if value not in SCALARS:
                    value, value_kind = self.resolve(value, full, where)
                fields.append(ProtoField(e.name, e.number, f"map<{key},{value}>", "map", "repeated", None, value_kind))
            elif isinstance(e, ast.Field):
                label = e.cardinality.value.lower() if e.cardinality else ""
                if self.syntax == "proto3" and label == "required":
                    raise InvalidSchemaError("PROTOBUF", where, "required fields are not allowed in proto3")
                if e.type in SCALARS:
                    type_name, kind = e.type, "scalar"
                else:
                    type_name, kind = self.resolve(e.type, full, where)
                fields.append(ProtoField(e.name, e.number, type_name, kind, label, oneof))
        self._check_fields(full, fields, reserved, reserved_names)
        self.messages[full] = ProtoMessage(full, tuple(fields), tuple(oneofs), tuple(reserved))

    @staticmethod
    def _check_fields(full: str, fields: list[ProtoField], reserved: list[tuple[int, int]], names: set[str]) -> None:
        seen_numbers: dict[int, str] = {}
        seen_names: set[str] = set()
        for f in fields:
            where = f"message {full} field {f.name} = {f.number}"
            if not 1 <= f.number <= _MAX_NUMBER or 19_000 <= f.number <= 19_999:
                raise InvalidSchemaError("PROTOBUF", where, "field numbers are 1..536870911, not 19000..19999")
            if f.number in seen_numbers:
                raise InvalidSchemaError("PROTOBUF", where, f"number already used by {seen_numbers[f.number]!r}")
            if f.name in seen_names:
                raise InvalidSchemaError("PROTOBUF", where, "field name used twice")
            if any(low <= f.number <= high for low, high in reserved) or f.name in names:
                raise InvalidSchemaError("PROTOBUF", where, "the number or name is reserved")
            seen_numbers[f.number] = f.name
            seen_names.add(f.name)


def build(text: str, references: Mapping[str, str] | None = None) -> ProtoSchema:
    """Parse and check a .proto and its references (import path -> .proto text)."""
    known: dict[str, str] = {}
    refs = references or {}
    for name, ref_text in refs.items():
        try:
            _Builder(syntax_tree(ref_text), known, imports_missing=True).declare()
        except InvalidSchemaError as exc:
            raise InvalidSchemaError("PROTOBUF", f"reference {name!r} {exc.where}", exc.reason) from exc
    tree = syntax_tree(text)
    imports = [e.name for e in tree.file_elements if isinstance(e, ast.Import)]
    missing = any(i not in refs and not i.startswith(("google/protobuf/", "confluent/")) for i in imports)
    builder = _Builder(tree, known, imports_missing=missing)
    builder.declare()
    builder.build()
    return ProtoSchema(builder.syntax, builder.package, builder.messages, builder.enums, builder.indexes)
