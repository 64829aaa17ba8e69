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

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

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
