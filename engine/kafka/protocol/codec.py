"""One encoder and one decoder for every message: they walk a schema (schema.py).

Flexible versions switch strings, bytes and arrays to their compact forms and end every
struct with a tagged-field section; unknown tags are skipped by their declared size, which
is how newer clients stay readable. Decoding never loops more often than the frame has
bytes and never recurses deeper than the schema, so any input terminates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streamhouse.kafka.protocol.primitives import Reader, Writer
from streamhouse.kafka.protocol.schema import Field

Struct = dict[str, Any]


def decode_struct(r: Reader, fields: Sequence[Field], version: int, flexible: bool, path: str = "") -> Struct:
    out: Struct = {}
    for f in fields:
        if f.tag is not None or version not in f.versions:
            out[f.name] = f.default()
        else:
            out[f.name] = _decode_value(r, f, version, flexible, path)
    if flexible:
        _decode_tagged(r, fields, version, out, path)
    return out


def _decode_tagged(r: Reader, fields: Sequence[Field], version: int, out: Struct, path: str) -> None:
    where = f"{path}<tagged fields>"
    count = r.uvarint(where)
    if count > r.remaining:
        raise r.error(f"{count} tagged fields with {r.remaining} bytes left", where)
    by_tag = {f.tag: f for f in fields if f.tag is not None and version in f.versions}
    for _ in range(count):
        tag = r.uvarint(where)
        size = r.uvarint(where)
        start = r.pos
        r.raw(size, where)  # bounds-checks and skips; a known tag is re-read below
        f = by_tag.get(tag)
        if f is None:
            continue
        sub = Reader(r.buf, api=r.api, version=r.version, start=start, end=start + size)
        out[f.name] = _decode_value(sub, f, version, True, path)


def _decode_value(r: Reader, f: Field, version: int, flexible: bool, path: str) -> Any:
    name = path + f.name
    nullable = version in f.nullable
    if f.is_array:
        start = r.pos
        n = r.array_length(name, compact=flexible)
        if n < 0:
            if not nullable:
                raise r.error("null array in a non-nullable field", name, start)
            return None
        element = f.element
        if not element:
            child = f"{name}[]."
            return [decode_struct(r, f.fields, version, flexible, child) for _ in range(n)]
        return [_decode_primitive(r, element, name, flexible, False) for _ in range(n)]
    if f.type == "{}":
        return decode_struct(r, f.fields, version, flexible, f"{name}.")
    return _decode_primitive(r, f.type, name, flexible, nullable)


def _decode_primitive(r: Reader, type_: str, name: str, flexible: bool, nullable: bool) -> Any:
    if type_ == "int32":
        return r.int32(name)
    if type_ == "int16":
        return r.int16(name)
    if type_ == "int64":
        return r.int64(name)
    if type_ == "int8":
        return r.int8(name)
    if type_ == "bool":
        return r.boolean(name)
    if type_ == "uint16":
        return r.uint16(name)
    if type_ == "float64":
        return r.float64(name)
    if type_ == "uuid":
        return r.uuid(name)
    start = r.pos
    value: Any = r.string(name, compact=flexible) if type_ == "string" else r.bytes_(name, compact=flexible)
    if value is None and not nullable:
        raise r.error(f"null {type_} in a non-nullable field", name, start)
    return value


def encode_struct(w: Writer, fields: Sequence[Field], value: Mapping[str, Any], version: int, flexible: bool) -> None:
    tagged: list[Field] = []
    for f in fields:
        if version not in f.versions:
            continue
        if f.tag is not None:
            tagged.append(f)
            continue
        _encode_value(w, f, value.get(f.name, f.default()), version, flexible)
    if not flexible:
        return
    present = [(f, value[f.name]) for f in tagged if f.name in value and value[f.name] != f.default()]
    w.uvarint(len(present))
    for f, v in sorted(present, key=lambda fv: fv[0].tag or 0):
        sub = Writer()
        _encode_value(sub, f, v, version, True)
        data = sub.getvalue()
        w.uvarint(f.tag or 0)
        w.uvarint(len(data))
        w.raw(data)


def _encode_value(w: Writer, f: Field, v: Any, version: int, flexible: bool) -> None:
    if v is None and version not in f.nullable and f.type != "records":
        raise ValueError(f"field {f.name} is not nullable in version {version}")
    if f.is_array:
        if v is None:
            w.length(-1, compact=flexible, wide=True)
            return
        w.length(len(v), compact=flexible, wide=True)
        element = f.element
        for item in v:
            if element:
                _encode_primitive(w, element, item, flexible)
            else:
                encode_struct(w, f.fields, item, version, flexible)
        return
    if f.type == "{}":
        encode_struct(w, f.fields, v, version, flexible)
        return
    _encode_primitive(w, f.type, v, flexible)


def _encode_primitive(w: Writer, type_: str, v: Any, flexible: bool) -> None:
    if type_ == "int32":
        w.int32(v)
    elif type_ == "int16":
        w.int16(v)
    elif type_ == "int64":
        w.int64(v)
    elif type_ == "int8":
        w.int8(v)
    elif type_ == "bool":
        w.boolean(v)
    elif type_ == "uint16":
        w.uint16(v)
    elif type_ == "float64":
        w.float64(v)
    elif type_ == "uuid":
        w.uuid(v)
    elif type_ == "string":
        w.string(v, compact=flexible)
    else:  # bytes, records
        w.bytes_(v, compact=flexible)
