"""JSON data → Protobuf binary in Confluent's wire format (REST produce by subject with
`"type": "PROTOBUF"`, issue 13): what confluent-kafka's ProtobufSerializer writes, magic byte 0,
the 4-byte schema id, the message-index path (one 0 byte for the file's first message) and the
message.

The registered .proto text is parsed once (storage/schemas/protobuf_arrow.py `parse_proto`, the
model the storage decoder reads) and rebuilt as a FileDescriptorProto for google.protobuf's
dynamic messages (descriptor_pool + message_factory, no protoc). Each record is then parsed with
json_format.ParseDict (Protobuf's canonical JSON mapping: field names as declared or in
lowerCamelCase, 64-bit integers as numbers or strings, enums by name or number, Timestamps as
RFC 3339 text) and serialised: one upb call per record (about 40k records/s on the shared CI
box). A flat message (singular scalars, strings, enums) is encoded column-wise instead
(protobuf_flat_encode.py, several times faster); a batch that path cannot take (nested, repeated
or map fields, camelCase names, a bad record) comes here. Data that does not
fit raises ProtobufDataError naming the record index and the field; nothing is encoded then.

Every message is declared at the top level of the built file under a unique name: names do not
reach the wire format, so nesting need not be rebuilt. Fields are proto2 `optional` (explicit
presence), so a zero a client sends is written: decoders read it the same either way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from streamhouse.registry.protobuf_flat_encode import encode_flat
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.protobuf_arrow import TIMESTAMP_TYPE, PbField, PbMessage, parse_proto

_FIRST_MESSAGE = b"\x00"  # the index path [0], written as Confluent's serializers do: one zero byte
# How json_format names a field in its errors ("Failed to parse id field: …", "… has no field named "x"").
_BUILT = re.compile(r"\b(?:streamhouse_rest\.)?(M\d+)\b")  # a built message name in json_format's errors
_FIELD = re.compile(r'Failed to parse (\w+) field|no field named "(\w+)"')


class ProtobufDataError(InvalidInputError):
    """A record's JSON data does not fit the Protobuf message; `index` is the record's position in
    the batch and `field` the field json_format named ("" when it named none)."""

    def __init__(self, message: str, *, index: int, field: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


def _type_numbers() -> dict[str, int]:
    from google.protobuf import descriptor_pb2

    f = descriptor_pb2.FieldDescriptorProto
    return {
        "double": f.TYPE_DOUBLE,
        "float": f.TYPE_FLOAT,
        "int32": f.TYPE_INT32,
        "sint32": f.TYPE_SINT32,
        "sfixed32": f.TYPE_SFIXED32,
        "int64": f.TYPE_INT64,
        "sint64": f.TYPE_SINT64,
        "sfixed64": f.TYPE_SFIXED64,
        "uint32": f.TYPE_UINT32,
        "fixed32": f.TYPE_FIXED32,
        "uint64": f.TYPE_UINT64,
        "fixed64": f.TYPE_FIXED64,
        "bool": f.TYPE_BOOL,
        "string": f.TYPE_STRING,
        "bytes": f.TYPE_BYTES,
    }


class _Builder:
    """A FileDescriptorProto of a parsed message and everything it uses."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pb2

        self.pb2 = descriptor_pb2
        self.file = descriptor_pb2.FileDescriptorProto(
            name="streamhouse_rest.proto", package="streamhouse_rest", syntax="proto2"
        )
        self.names: dict[str, str] = {}  # a message's full name → its name in the built file
        self.types = _type_numbers()
        self.uses_timestamp = False

    def message(self, message: PbMessage, map_entry: bool = False) -> str:
        if message.full_name in self.names:
            return self.names[message.full_name]
        name = f"M{len(self.names)}"
        self.names[message.full_name] = name
        proto = self.file.message_type.add(name=name)
        if map_entry:
            proto.options.map_entry = True
        f = self.pb2.FieldDescriptorProto
        for field in message.fields:
            out = proto.field.add(name=field.name, number=field.number, json_name=_camel(field.name))
            out.label = f.LABEL_REPEATED if field.repeated else f.LABEL_OPTIONAL
            self._typed(out, field, name)
            if field.packable and not field.is_map:
                out.options.packed = True  # proto3's default, which the registered schema most likely had
        return name

    def _typed(self, out: Any, field: PbField, owner: str) -> None:
        f = self.pb2.FieldDescriptorProto
        if field.kind in self.types:
            out.type = self.types[field.kind]
        elif field.kind == "timestamp":
            out.type, out.type_name = f.TYPE_MESSAGE, f".{TIMESTAMP_TYPE}"
            self.uses_timestamp = True
        elif field.kind == "enum":
            # Each enum in a message of its own: enum symbols are scoped by the enclosing scope, so
            # two enums sharing a symbol name (both with UNKNOWN = 0, say) must not share one.
            scope = self.file.message_type.add(name=f"E{len(self.file.message_type)}")
            enum = scope.enum_type.add(name="Enum")
            for number, symbol in field.symbols:
                enum.value.add(name=symbol, number=number)
            if field.symbols:  # proto2 allows aliases only with allow_alias
                enum.options.allow_alias = len({n for n, _ in field.symbols}) < len(field.symbols)
            out.type, out.type_name = f.TYPE_ENUM, f".streamhouse_rest.{scope.name}.Enum"
        else:
            assert field.message is not None
            out.type = f.TYPE_MESSAGE
            out.type_name = f".streamhouse_rest.{self.message(field.message, map_entry=field.is_map)}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def message_class(schema_text: str) -> Any:
    """The dynamic message class of a .proto text's first message."""
    return _built(schema_text)[0]


@functools.lru_cache(maxsize=64)
def _built(schema_text: str) -> tuple[Any, dict[str, str]]:
    """The message class and the built names' full names in the .proto (for error messages);
    cached: a schema id's text never changes."""
    from google.protobuf import descriptor_pool, message_factory, timestamp_pb2

    message = parse_proto(schema_text).at((0,))
    builder = _Builder()
    root = builder.message(message)
    pool = descriptor_pool.DescriptorPool()
    if builder.uses_timestamp:
        builder.file.dependency.append("google/protobuf/timestamp.proto")
        pool.Add(builder.pb2.FileDescriptorProto.FromString(timestamp_pb2.DESCRIPTOR.serialized_pb))
    try:
        pool.Add(builder.file)
        descriptor = pool.FindMessageTypeByName(f"streamhouse_rest.{root}")
    except Exception as exc:  # the pool's own error types differ between the upb and Python backends
        raise InvalidInputError(f"the Protobuf schema cannot be used for REST produce: {exc}") from None
    return message_factory.GetMessageClass(descriptor), {built: full for full, built in builder.names.items()}


def encode(schema_text: str, data: Sequence[Any], *, where: str = "values") -> pa.Array[Any]:
    """One serialised message per item of `data` (binary, index path not included; None stays
    null: a tombstone). ProtobufDataError names the first record (and field) that does not fit."""
    from google.protobuf import json_format

    cls, names = _built(schema_text)
    fast = encode_flat(parse_proto(schema_text).at((0,)), data)
    if fast is not None:  # a flat message and a batch that fits it: encoded column-wise
        return fast
    out: list[bytes | None] = []
    for i, item in enumerate(data):
        if item is None:
            out.append(None)
            continue
        if not isinstance(item, dict):
            raise ProtobufDataError(f"{where}[{i}]: must be an object, not {type(item).__name__}", index=i, field="")
        try:
            out.append(json_format.ParseDict(item, cls()).SerializeToString())
        except (json_format.ParseError, ValueError, TypeError) as exc:
            reason = _BUILT.sub(lambda m: names.get(m.group(1), m.group(0)), str(exc))
            named = _FIELD.search(reason)
            field = (named.group(1) or named.group(2)) if named else ""
            label = f" field {field!r}" if field else ""
            raise ProtobufDataError(
                f"{where}[{i}]{label}: does not fit the Protobuf message: {reason}", index=i, field=field
            ) from None
    return pa.array(out, pa.binary())


def index_path() -> bytes:
    """The message-index bytes written after the schema id (the first message)."""
    return _FIRST_MESSAGE
