"""A Protobuf message's layout and its Arrow type (issue 13: Protobuf topics as typed columns).
IO-free. Built from the registered .proto text with proto-schema-parser (the engine's checker,
engine/registry/compat/protobuf_model.py, lives above storage, so the little this decoder needs is
walked here again): per message its fields by number, the scalar kind each carries, and whether an
absent field reads as null (explicit presence) or as its zero value (proto3 implicit presence).

Protobuf → Arrow:
  double float64 · float float32 · int32 sint32 sfixed32 int32 · int64 sint64 sfixed64 int64 ·
  uint32 fixed32 int64 (widened, lossless) · uint64 fixed64 decimal128(20, 0) (lossless) ·
  bool bool · string string · bytes binary · enum string (the symbol; a number the writer's
  enum lacks reads as null) · message struct · repeated T list<T> · map<K, V> map<K, V> (SQL
  MAP, `m['k']`; decoded from its repeated key=1/value=2 entries, a key given twice keeps its
  last value and an entry's missing key or value reads as its default, as protobuf does; a
  message value's default is the empty message) · google.protobuf.Timestamp timestamp[ms] (UTC;
  nanoseconds below a millisecond cut).
Refused (UnsupportedProtobufSchemaError naming the field): groups, recursive messages, types from
imports other than google/protobuf/timestamp.proto, and `editions` files.
Absent fields: proto3 fields without `optional` read as their zero value (0, "", false, the
enum's first symbol), as every Protobuf reader does; proto3 `optional`, oneof members, proto2
optional fields and messages read as null; repeated fields as an empty list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import cast

import pyarrow as pa
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from streamhouse.storage.errors import InvalidInputError

TIMESTAMP_TYPE = "google.protobuf.Timestamp"
# Scalar kind → (wire type, Arrow type).
SCALARS: dict[str, tuple[int, pa.DataType]] = {
    "double": (1, pa.float64()),
    "float": (5, pa.float32()),
    "int32": (0, pa.int32()),
    "sint32": (0, pa.int32()),
    "sfixed32": (5, pa.int32()),
    "int64": (0, pa.int64()),
    "sint64": (0, pa.int64()),
    "sfixed64": (1, pa.int64()),
    "uint32": (0, pa.int64()),
    "fixed32": (5, pa.int64()),
    "uint64": (0, pa.decimal128(20, 0)),
    "fixed64": (1, pa.decimal128(20, 0)),
    "bool": (0, pa.bool_()),
    "string": (2, pa.string()),
    "bytes": (2, pa.binary()),
}
_MAX_DEPTH = 32


class UnsupportedProtobufSchemaError(InvalidInputError):
    """A .proto the columnar decoder cannot map to Arrow (see the module docstring)."""


@dataclass(frozen=True)
class PbField:
    name: str
    number: int
    kind: str  # a SCALARS key, "enum", "message" or "timestamp"
    repeated: bool
    presence: bool  # absent reads null (else its zero value)
    message: PbMessage | None = None  # kind "message"
    symbols: tuple[tuple[int, str], ...] = ()  # kind "enum": (number, name), declaration order
    is_map: bool = False  # a map<K, V>: `message` is its key=1/value=2 entry, the column a MAP

    @property
    def wire_type(self) -> int:
        return SCALARS[self.kind][0] if self.kind in SCALARS else (0 if self.kind == "enum" else 2)

    @property
    def packable(self) -> bool:
        return self.repeated and self.wire_type != 2

    @property
    def element_type(self) -> pa.DataType:
        if self.kind == "message":
            assert self.message is not None
            return self.message.arrow_type
        if self.kind == "enum":
            return pa.string()
        if self.kind == "timestamp":
            return pa.timestamp("ms", tz="UTC")
        return SCALARS[self.kind][1]

    @property
    def arrow_type(self) -> pa.DataType:
        if self.is_map:
            assert self.message is not None
            key, value = self.message.fields
            return pa.map_(key.arrow_type, value.arrow_type)
        return pa.list_(self.element_type) if self.repeated else self.element_type


@dataclass(frozen=True)
class PbMessage:
    full_name: str
    fields: tuple[PbField, ...]

    @property
    def arrow_type(self) -> pa.StructType:
        return pa.struct([pa.field(f.name, f.arrow_type) for f in self.fields])


@dataclass(frozen=True)
class PbFile:
    """A parsed .proto: its messages by the wire format's index path ((0,) = the first)."""

    package: str
    messages: dict[tuple[int, ...], PbMessage]

    def at(self, indexes: tuple[int, ...]) -> PbMessage:
        found = self.messages.get(indexes or (0,))
        if found is None:
            raise InvalidInputError(f"the .proto has no message at index path {list(indexes)}")
        return found


class _Walk:
    def __init__(self, tree: ast.File) -> None:
        self.proto3 = tree.syntax == "proto3"
        if tree.edition:
            raise UnsupportedProtobufSchemaError("Protobuf editions files are not decoded into columns")
        packages = [e.name for e in tree.file_elements if isinstance(e, ast.Package)]
        self.package = packages[0] if packages else ""
        self.nodes: dict[str, ast.Message | ast.Enum] = {}
        self._declare(list(tree.file_elements), self.package)
        self.built: dict[str, PbMessage] = {}

    def _declare(self, elements: list[ast.FileElement | ast.MessageElement], scope: str) -> None:
        for e in elements:
            if isinstance(e, ast.Message | ast.Enum):
                full = f"{scope}.{e.name}".lstrip(".")
                self.nodes[full] = e
                if isinstance(e, ast.Message):
                    self._declare(list(e.elements), full)

    def resolve(self, name: str, scope: str, where: str) -> str:
        """A type reference's full name, innermost scope first (protobuf's rule)."""
        if name.startswith("."):
            candidates = [name[1:]]
        else:
            parts = scope.split(".") if scope else []
            candidates = [f"{'.'.join(parts[:i])}.{name}".lstrip(".") for i in range(len(parts), -1, -1)]
        for full in candidates:
            if full in self.nodes:
                return full
        if name.lstrip(".") == TIMESTAMP_TYPE:
            return TIMESTAMP_TYPE
        raise UnsupportedProtobufSchemaError(
            f"{where}: type {name!r} is not declared in the .proto (imports other "
            "than google/protobuf/timestamp.proto are not decoded into columns)"
        )

    def message(self, full: str, stack: tuple[str, ...]) -> PbMessage:
        if full in stack:
            raise UnsupportedProtobufSchemaError(f"message {full}: recursive messages have no fixed column type")
        if len(stack) > _MAX_DEPTH:
            raise UnsupportedProtobufSchemaError(f"message {full}: nested deeper than {_MAX_DEPTH}")
        if full in self.built:
            return self.built[full]
        node = self.nodes[full]
        assert isinstance(node, ast.Message)
        fields: list[PbField] = []
        members: list[tuple[ast.MessageElement, bool]] = [(e, False) for e in node.elements]
        for e, in_oneof in members:
            if isinstance(e, ast.OneOf):
                members.extend((cast(ast.MessageElement, x), True) for x in e.elements)
            elif isinstance(e, ast.Group):
                raise UnsupportedProtobufSchemaError(f"message {full} group {e.name}: groups are not decoded")
            elif isinstance(e, ast.MapField):
                fields.append(self._map(e, full, (*stack, full)))
            elif isinstance(e, ast.Field):
                fields.append(self._field(e, full, in_oneof, (*stack, full)))
        built = PbMessage(full, tuple(fields))
        self.built[full] = built
        return built

    def _typed(self, name: str, type_name: str, scope: str, stack: tuple[str, ...]) -> tuple[str, dict[str, object]]:
        where = f"message {scope} field {name}"
        if type_name in SCALARS:
            return type_name, {}
        full = self.resolve(type_name, scope, where)
        if full == TIMESTAMP_TYPE:
            return "timestamp", {}
        node = self.nodes[full]
        if isinstance(node, ast.Enum):
            values = tuple((v.number, v.name) for v in node.elements if isinstance(v, ast.EnumValue))
            return "enum", {"symbols": values}
        return "message", {"message": self.message(full, stack)}

    def _field(self, e: ast.Field, scope: str, in_oneof: bool, stack: tuple[str, ...]) -> PbField:
        label = e.cardinality.value.lower() if e.cardinality else ""
        kind, extra = self._typed(e.name, e.type, scope, stack)
        implicit = self.proto3 and label == "" and not in_oneof and kind not in ("message", "timestamp")
        presence = not implicit and label != "required"
        return PbField(e.name, e.number, kind, label == "repeated", presence, **extra)  # type: ignore[arg-type]

    def _map(self, e: ast.MapField, scope: str, stack: tuple[str, ...]) -> PbField:
        key_kind, _ = self._typed(e.name, e.key_type, scope, stack)
        value_kind, extra = self._typed(e.name, e.value_type, scope, stack)
        entry = PbMessage(
            f"{scope}.{e.name}Entry",
            (
                PbField("key", 1, key_kind, False, False),
                # No presence: a missing value is its default, an empty message included.
                PbField("value", 2, value_kind, False, False, **extra),  # type: ignore[arg-type]
            ),
        )
        return PbField(e.name, e.number, "message", True, False, message=entry, is_map=True)


@functools.lru_cache(maxsize=256)
def parse_proto(text: str) -> PbFile:
    """The messages of a .proto text by index path (cached: schema texts are immutable per id).
    InvalidInputError for a text that does not parse; UnsupportedProtobufSchemaError for a
    message that has no column type (only if it is one of the file's messages at all)."""
    try:
        tree = Parser().parse(text)
    except Exception as exc:
        raise InvalidInputError(f"the Protobuf schema does not parse: {exc}") from None
    walk = _Walk(tree)
    messages: dict[tuple[int, ...], PbMessage] = {}
    _index(walk, list(tree.file_elements), walk.package, (), messages)
    return PbFile(walk.package, messages)


def _index(
    walk: _Walk,
    elements: list[ast.FileElement | ast.MessageElement],
    scope: str,
    path: tuple[int, ...],
    out: dict[tuple[int, ...], PbMessage],
) -> None:
    i = 0
    for e in elements:
        if isinstance(e, ast.Message):
            full = f"{scope}.{e.name}".lstrip(".")
            try:
                out[(*path, i)] = walk.message(full, ())
            except UnsupportedProtobufSchemaError:
                if not path and i == 0:
                    raise  # the first message is what topics use: say why it has no columns
            _index(walk, list(e.elements), full, (*path, i), out)
            i += 1
