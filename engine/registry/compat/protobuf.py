"""Protobuf parsing and BACKWARD compatibility (Confluent's Protobuf rules, wire-level).

`check(new, old)` asks whether a reader compiled from `new` can decode bytes written with `old`.
Messages are matched by name (relative to the package, so a package change is reported once) and
fields by number, because the wire carries numbers. Incompatible, as in Confluent's ProtobufSchema
diff: PACKAGE_CHANGED, MESSAGE_REMOVED (a rename is a removal), FIELD_KIND_CHANGED (scalar vs
message vs enum vs map), FIELD_SCALAR_KIND_CHANGED outside a wire-compatible group,
FIELD_NAMED_TYPE_CHANGED, REQUIRED_FIELD_ADDED/REMOVED (proto2), ONEOF_FIELD_REMOVED,
MULTIPLE_FIELDS_MOVED_TO_ONEOF and FIELD_MOVED_TO_EXISTING_ONEOF. One rule from Buf's WIRE set is
added: a packable scalar switching between repeated and singular (packed bytes are not readable as
one value). Compatible: fields added or removed, renamed fields, enum values added/removed/renamed
(the wire carries numbers; proto3 enums are open), syntax changes, messages added or reordered
(the message indexes of the wire format name the writer's message, resolved with its schema).
With `require_reserved=True` (Buf's FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED) a removed field's number
must be reserved in the new schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from proto_schema_parser import ast
from proto_schema_parser.generator import Generator

from streamhouse.registry.compat.protobuf_model import ProtoField, ProtoMessage, ProtoSchema, build, syntax_tree

__all__ = ["ProtoSchema", "check", "compare", "normalise", "parse"]

# Scalars whose encodings decode as one another (values may be truncated or reinterpreted, which
# Protobuf's own guide accepts as compatible); anything else reads garbage or fails.
_GROUPS = (
    frozenset({"int32", "uint32", "int64", "uint64", "bool"}),
    frozenset({"sint32", "sint64"}),
    frozenset({"string", "bytes"}),
    frozenset({"fixed32", "sfixed32"}),
    frozenset({"fixed64", "sfixed64"}),
)
_UNPACKABLE = frozenset({"string", "bytes"})


def parse(text: str, references: Mapping[str, str] | None = None) -> ProtoSchema:
    """Parse and check a .proto text; references map import paths to .proto texts. Raises
    InvalidSchemaError naming the line:column, message or field."""
    return build(text, references)


def _without_comments(node: Any) -> Any:
    """A copy of a syntax tree without its comments (they carry no meaning)."""
    if isinstance(node, list):
        return [_without_comments(x) for x in node if not isinstance(x, ast.Comment)]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: _without_comments(getattr(node, f.name)) for f in dataclasses.fields(node)}
        return dataclasses.replace(node, **changes)
    return node


def normalise(text: str, references: Mapping[str, str] | None = None) -> str:
    """A canonical spelling of a valid .proto (comments dropped, one layout), so two spellings of
    one schema can share a registry id. The printer is proto-schema-parser's; where it would lose
    something (it drops map-field options), the reprint no longer parses to the same tree and the
    text is kept as given (trimmed) instead. Raises InvalidSchemaError like `parse`."""
    build(text, references)
    tree = _without_comments(syntax_tree(text))
    printed: str = Generator().generate(tree).strip()
    return printed if _without_comments(syntax_tree(printed)) == tree else text.strip()


def check(
    new: str,
    old: str,
    references: Mapping[str, str] | None = None,
    old_references: Mapping[str, str] | None = None,
    *,
    require_reserved: bool = False,
) -> list[str]:
    """Incompatibilities found when a reader using `new` reads data written with `old` (empty:
    compatible). `references` serve `new`, and `old` unless `old_references` is given."""
    new_schema = parse(new, references)
    old_schema = parse(old, references if old_references is None else old_references)
    return compare(new_schema, old_schema, require_reserved=require_reserved)


def _relative(schema: ProtoSchema, full: str) -> str:
    prefix = f"{schema.package}." if schema.package else ""
    return full[len(prefix) :] if prefix and full.startswith(prefix) else full


def compare(new: ProtoSchema, old: ProtoSchema, *, require_reserved: bool = False) -> list[str]:
    """`check` on parsed schemas."""
    out: list[str] = []
    if new.package != old.package:
        out.append(f"PACKAGE_CHANGED at package: {old.package!r} became {new.package!r}")
    new_messages = {_relative(new, name): m for name, m in new.messages.items()}
    for name, old_message in old.messages.items():
        rel = _relative(old, name)
        new_message = new_messages.get(rel)
        if new_message is None:
            out.append(f"MESSAGE_REMOVED at {rel}: the new schema has no message {rel!r}")
            continue
        out += _message(new, old, new_message, old_message, rel, require_reserved)
    return out


def _type_name(schema: ProtoSchema, f: ProtoField) -> str:
    return f.type if f.kind == "scalar" else _relative(schema, f.type)


def _field_type(new: ProtoSchema, old: ProtoSchema, nf: ProtoField, of: ProtoField, path: str) -> list[str]:
    new_type, old_type = _type_name(new, nf), _type_name(old, of)
    if nf.kind == "map" and of.kind == "map":
        new_key, new_value = new_type[4:-1].split(",", 1)
        old_key, old_value = old_type[4:-1].split(",", 1)
        out = _scalar(new_key, old_key, f"{path}.key")
        if nf.map_value_kind == "scalar" and of.map_value_kind == "scalar":
            return out + _scalar(new_value, old_value, f"{path}.value")
        if nf.map_value_kind != of.map_value_kind:
            return [*out, f"FIELD_KIND_CHANGED at {path}.value: {old_value} became {new_value}"]
        new_rel, old_rel = _relative(new, new_value), _relative(old, old_value)
        if new_rel != old_rel:
            out.append(f"FIELD_NAMED_TYPE_CHANGED at {path}.value: {old_rel} became {new_rel}")
        return out
    kinds = {nf.kind, of.kind}
    if nf.kind == "scalar" and of.kind == "scalar":
        return _scalar(new_type, old_type, path)
    # Groups are framed with start/end tags, messages with a length: not interchangeable.
    if len(kinds) > 1 and not any(kinds <= {k, "named"} for k in ("message", "group", "enum")):
        return [f"FIELD_KIND_CHANGED at {path}: {of.kind} {old_type} became {nf.kind} {new_type}"]
    if new_type != old_type:
        return [f"FIELD_NAMED_TYPE_CHANGED at {path}: {old_type} became {new_type}"]
    return []


def _scalar(new_type: str, old_type: str, path: str) -> list[str]:
    if new_type == old_type or any(new_type in g and old_type in g for g in _GROUPS):
        return []
    return [f"FIELD_SCALAR_KIND_CHANGED at {path}: {old_type} became {new_type} (not wire-compatible)"]


def _message(
    new: ProtoSchema, old: ProtoSchema, nm: ProtoMessage, om: ProtoMessage, rel: str, require_reserved: bool
) -> list[str]:
    out: list[str] = []
    new_fields, old_fields = nm.by_number(), om.by_number()
    for number, of in old_fields.items():
        path = f"{rel}.{of.name} (field {number})"
        nf = new_fields.get(number)
        if nf is None:
            if of.label == "required":
                out.append(f"REQUIRED_FIELD_REMOVED at {path}: old data always carries it")
            if require_reserved and not any(low <= number <= high for low, high in nm.reserved):
                out.append(f"FIELD_REMOVED_WITHOUT_RESERVE at {path}: reserve number {number} so it is never reused")
            continue
        out += _field_type(new, old, nf, of, path)
        if of.label == "required" and nf.label != "required":
            out.append(f"REQUIRED_FIELD_REMOVED at {path}: no longer required")
        if nf.label == "required" and of.label != "required":
            out.append(f"REQUIRED_FIELD_ADDED at {path}: now required; old data may lack it")
        packable = nf.kind in ("scalar", "enum") and nf.type not in _UNPACKABLE
        if packable and nf.kind == of.kind and (nf.label == "repeated") != (of.label == "repeated"):
            out.append(f"FIELD_CARDINALITY_CHANGED at {path}: {of.label or 'singular'} became {nf.label or 'singular'}")
    for number, nf in new_fields.items():
        if number not in old_fields and nf.label == "required":
            out.append(f"REQUIRED_FIELD_ADDED at {rel}.{nf.name} (field {number}): old data lacks it")
    out += _oneofs(nm, om, rel)
    return out


def _oneofs(nm: ProtoMessage, om: ProtoMessage, rel: str) -> list[str]:
    out: list[str] = []
    new_fields, old_fields = nm.by_number(), om.by_number()
    for oneof in om.oneofs:
        if oneof not in nm.oneofs:
            continue  # Confluent's ONEOF_REMOVED: compatible, its fields go the way fields go
        for f in om.fields:
            if f.oneof == oneof and f.number not in new_fields:
                out.append(f"ONEOF_FIELD_REMOVED at {rel}.{oneof}: field {f.name} = {f.number} left the oneof")
    for oneof in nm.oneofs:
        moved = [
            f for f in nm.fields if f.oneof == oneof and f.number in old_fields and old_fields[f.number].oneof is None
        ]
        if moved and oneof in om.oneofs:
            names = ", ".join(f"{f.name} = {f.number}" for f in moved)
            out.append(f"FIELD_MOVED_TO_EXISTING_ONEOF at {rel}.{oneof}: {names} joined an existing oneof")
        elif len(moved) > 1:
            names = ", ".join(f"{f.name} = {f.number}" for f in moved)
            out.append(f"MULTIPLE_FIELDS_MOVED_TO_ONEOF at {rel}.{oneof}: {names} (old data may set several)")
    return out
