"""Protobuf schemas sent as a base64 FileDescriptorProto, as confluent-kafka's ProtobufSerializer
registers them (`_schema_to_str`: the message's file descriptor, serialised and base64-encoded;
Confluent's registry accepts both that and .proto text). Turned into .proto text before anything
else looks at it, so the registry stores, compares, normalises and serves one form, and the
storage decoder (storage/schemas/protobuf_arrow.py) reads it like any registered .proto.

Rendered: syntax, package, imports, messages (nested), enums, fields with labels (proto3
`optional` from `proto3_optional`), oneofs, map fields (from their map-entry types), and the
`packed` option when it differs from the syntax's default. Options other than those, extensions
and services are left out: they do not change the wire format or the compatibility rules here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError
from proto_schema_parser import ast

from streamhouse.registry.compat.protobuf_model import syntax_tree

_F = descriptor_pb2.FieldDescriptorProto
_SCALAR_NAMES = {
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_INT32: "int32",
    _F.TYPE_FIXED64: "fixed64",
    _F.TYPE_FIXED32: "fixed32",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_SFIXED32: "sfixed32",
    _F.TYPE_SFIXED64: "sfixed64",
    _F.TYPE_SINT32: "sint32",
    _F.TYPE_SINT64: "sint64",
}


def file_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """The FileDescriptorProto a schema text encodes, or None if it is not one (.proto text has
    characters base64 never does: spaces, braces, semicolons)."""
    stripped = text.strip()
    if not stripped or any(c in stripped for c in " {};\n\t"):
        return None
    try:
        raw = base64.b64decode(stripped, validate=True)
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        return None
    return fd if fd.message_type or fd.enum_type or fd.name else None


def proto_text(text: str) -> str:
    """`text` as .proto text: itself, or the .proto a base64 FileDescriptorProto describes."""
    fd = file_descriptor(text)
    return text if fd is None else render(fd)


def _type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return _SCALAR_NAMES.get(field.type) or field.type_name


def _enum(e: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {e.name} {{"]
    if e.options.allow_alias:
        lines.append(f"{indent}  option allow_alias = true;")
    lines += [f"{indent}  {v.name} = {v.number};" for v in e.value]
    return [*lines, f"{indent}}}"]


def _message(m: descriptor_pb2.DescriptorProto, indent: str, proto3: bool) -> list[str]:
    lines = [f"{indent}message {m.name} {{"]
    inner = indent + "  "
    entries = {t.name: t for t in m.nested_type if t.options.map_entry}
    oneofs: dict[int, list[str]] = {}
    for f in m.field:
        entry_name = f.type_name.rsplit(".", 1)[-1]
        if f.label == _F.LABEL_REPEATED and f.type == _F.TYPE_MESSAGE and entry_name in entries:
            key, value = entries[entry_name].field[0], entries[entry_name].field[1]
            lines.append(f"{inner}map<{_type(key)}, {_type(value)}> {f.name} = {f.number};")
            continue
        options = ""
        if f.options.HasField("packed") and f.options.packed != proto3:
            options = f" [packed = {'true' if f.options.packed else 'false'}]"
        if f.HasField("oneof_index") and not f.proto3_optional:
            oneofs.setdefault(f.oneof_index, []).append(f"{inner}  {_type(f)} {f.name} = {f.number}{options};")
            continue
        label = {_F.LABEL_REPEATED: "repeated ", _F.LABEL_REQUIRED: "required "}.get(f.label, "")
        if f.label == _F.LABEL_OPTIONAL and (f.proto3_optional or not proto3):
            label = "optional "
        lines.append(f"{inner}{label}{_type(f)} {f.name} = {f.number}{options};")
    for index, members in oneofs.items():
        lines += [f"{inner}oneof {m.oneof_decl[index].name} {{", *members, f"{inner}}}"]
    for nested in m.nested_type:
        if not nested.options.map_entry:
            lines += _message(nested, inner, proto3)
    for e in m.enum_type:
        lines += _enum(e, inner)
    for r in m.reserved_range:
        lines.append(f"{inner}reserved {r.start} to {r.end - 1};")
    return [*lines, f"{indent}}}"]


def render(fd: descriptor_pb2.FileDescriptorProto) -> str:
    proto3 = fd.syntax == "proto3"
    lines = [f'syntax = "{fd.syntax or "proto2"}";']
    if fd.package:
        lines.append(f"package {fd.package};")
    lines += [f'import "{d}";' for d in fd.dependency]
    for m in fd.message_type:
        lines += _message(m, "", proto3)
    for e in fd.enum_type:
        lines += _enum(e, "")
    return "\n".join(lines) + "\n"


# -- .proto text → FileDescriptorProto (GET …?format=serialized, what ProtobufSerializer's
# use.latest.version and the deserializers ask for) -------------------------------------------

_SCALAR_TYPES = {name: number for number, name in _SCALAR_NAMES.items()}
_LABELS = {"repeated": _F.LABEL_REPEATED, "required": _F.LABEL_REQUIRED}


def _camel(name: str) -> str:
    """protoc's map-entry type name: `map_field` → `MapFieldEntry`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_")) + "Entry"


class _Descriptors:
    """Two passes, as protoc: every type's full name and kind first, then the descriptors with
    each field's type name resolved by protobuf's scoping (innermost scope outwards)."""

    def __init__(self, tree: ast.File) -> None:
        self.tree = tree
        self.proto3 = tree.syntax == "proto3"
        packages = [e.name for e in tree.file_elements if isinstance(e, ast.Package)]
        self.package = packages[0] if packages else ""
        self.kinds: dict[str, int] = {}
        self._declare(list(tree.file_elements), self.package)

    def _declare(self, elements: list[Any], scope: str) -> None:
        for e in elements:
            if isinstance(e, ast.Message | ast.Enum):
                full = f"{scope}.{e.name}".lstrip(".")
                self.kinds[full] = _F.TYPE_ENUM if isinstance(e, ast.Enum) else _F.TYPE_MESSAGE
                if isinstance(e, ast.Message):
                    self._declare(list(e.elements), full)

    def resolve(self, name: str, scope: str) -> tuple[int, str]:
        if name.startswith("."):
            candidates = [name[1:]]
        else:
            parts = scope.split(".") if scope else []
            candidates = [f"{'.'.join(parts[:i])}.{name}".lstrip(".") for i in range(len(parts), -1, -1)]
        for full in candidates:
            if full in self.kinds:
                return self.kinds[full], f".{full}"
        full = name.lstrip(".")  # an import's type: a message, but for protobuf's one enum
        return (_F.TYPE_ENUM if full == "google.protobuf.NullValue" else _F.TYPE_MESSAGE), f".{full}"

    def enum(self, e: ast.Enum) -> descriptor_pb2.EnumDescriptorProto:
        out = descriptor_pb2.EnumDescriptorProto(name=e.name)
        for v in e.elements:
            if isinstance(v, ast.EnumValue):
                out.value.add(name=v.name, number=v.number)
            elif isinstance(v, ast.Option) and v.name == "allow_alias" and v.value is True:
                out.options.allow_alias = True
        return out

    def _field(self, out: descriptor_pb2.FieldDescriptorProto, type_name: str, scope: str) -> None:
        if type_name in _SCALAR_TYPES:
            out.type = _SCALAR_TYPES[type_name]
        else:
            kind, full = self.resolve(type_name, scope)
            out.type, out.type_name = kind, full  # type: ignore[assignment]

    def message(self, m: ast.Message, scope: str) -> descriptor_pb2.DescriptorProto:
        full = f"{scope}.{m.name}".lstrip(".")
        out = descriptor_pb2.DescriptorProto(name=m.name)
        synthetic: list[descriptor_pb2.FieldDescriptorProto] = []
        members: list[tuple[Any, int | None]] = [(e, None) for e in m.elements]
        for e, oneof in members:
            if isinstance(e, ast.OneOf):
                out.oneof_decl.add(name=e.name)
                members.extend((x, len(out.oneof_decl) - 1) for x in e.elements)
            elif isinstance(e, ast.Message):
                out.nested_type.append(self.message(e, full))
            elif isinstance(e, ast.Enum):
                out.enum_type.append(self.enum(e))
            elif isinstance(e, ast.Reserved):
                for spec in e.ranges:
                    low, _, high = (p.strip() for p in spec.partition(" to "))
                    top = 536_870_911 if high == "max" else int(high or low, 0)
                    out.reserved_range.add(start=int(low, 0), end=top + 1)
                out.reserved_name.extend(e.names)
            elif isinstance(e, ast.MapField):
                entry = out.nested_type.add(name=_camel(e.name))
                entry.options.map_entry = True
                for number, (name, type_name) in enumerate((("key", e.key_type), ("value", e.value_type)), 1):
                    self._field(entry.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL), type_name, full)
                out.field.add(
                    name=e.name,
                    number=e.number,
                    label=_F.LABEL_REPEATED,
                    type=_F.TYPE_MESSAGE,
                    type_name=f".{full}.{entry.name}",
                )
            elif isinstance(e, ast.Field):
                label = e.cardinality.value.lower() if e.cardinality else ""
                field = out.field.add(name=e.name, number=e.number, label=_LABELS.get(label, _F.LABEL_OPTIONAL))
                self._field(field, e.type, full)
                if oneof is not None:
                    field.oneof_index = oneof
                elif self.proto3 and label == "optional":
                    field.proto3_optional = True
                    synthetic.append(field)
                for option in e.options:
                    if option.name == "packed" and isinstance(option.value, bool):
                        field.options.packed = option.value
        for field in synthetic:  # proto3 `optional`: a oneof of its own, after the real ones
            out.oneof_decl.add(name=f"_{field.name}")
            field.oneof_index = len(out.oneof_decl) - 1
        return out

    def file(self) -> descriptor_pb2.FileDescriptorProto:
        out = descriptor_pb2.FileDescriptorProto(name="default", package=self.package)
        if self.tree.syntax:
            out.syntax = self.tree.syntax
        for e in self.tree.file_elements:
            if isinstance(e, ast.Import):
                out.dependency.append(e.name)
            elif isinstance(e, ast.Message):
                out.message_type.append(self.message(e, self.package))
            elif isinstance(e, ast.Enum):
                out.enum_type.append(self.enum(e))
        return out


def serialized(text: str) -> str:
    """A registered .proto as Confluent serves it for `?format=serialized`: its FileDescriptorProto,
    serialised and base64-encoded (the text was checked when it was registered)."""
    fd = _Descriptors(syntax_tree(text)).file()
    return base64.b64encode(fd.SerializeToString()).decode("ascii")
