"""Avro payloads → Arrow columns for a whole batch at once (issue 13: the segment writer turns
each schema id's rows into typed columns once). IO-free; numpy only, no Python loop per record.

Avro's binary encoding has no per-record index, but a batch's records all follow one writer
schema, so their fields come in the same order: every record keeps a cursor, and each field is
read for all records in one numpy step (a varint in one round per byte, a string as one gather
of all its bytes). Unions with null choose per record by mask; a record nests as a struct.
Supported: null, boolean, int, long, float, double, bytes, string, enum (as string), fixed,
records, arrays (list), maps (map<string, T>), unions (of null and one type: that type, nullable;
of several types: a struct with a field per branch, avro_collections.py), logical date /
timestamp-millis / timestamp-micros and decimal (bytes or fixed, precision <= 38, as
decimal128), at any nesting. A recursive schema raises UnsupportedAvroSchemaError (the caller
keeps the bytes); a payload that does not fit its schema raises AvroDecodeError naming the
record and the field path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.avro_collections import read_array, read_map, read_union
from streamhouse.storage.schemas.avro_cursor import Cursor, mask
from streamhouse.storage.schemas.errors import SchemaNotFoundError, UnsupportedAvroSchemaError
from streamhouse.storage.schemas.wire import Array, buffers, numpy_buffer, split, valid_mask

_PRIMITIVE = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_MAX_DEPTH = 64  # nesting levels; Arrow types cannot be recursive, so a recursive schema stops here
_LOGICAL = {
    ("int", "date"): pa.date32(),
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
}


def _decimal(schema: Any, offsets: Array, body: Array, live: Array, cur: Cursor, path: str) -> pa.Array[Any]:
    """Avro decimals (big-endian two's complement, per record) as Arrow decimal128 (16 bytes,
    little-endian), whole arrays: each byte placed by index arithmetic, the sign extended."""
    precision, scale = int(schema.get("precision", 0)), int(schema.get("scale", 0))
    if not 1 <= precision <= 38 or not 0 <= scale <= precision:
        raise UnsupportedAvroSchemaError(f"{path}: decimal({precision}, {scale}) is outside DECIMAL(1..38, 0..p)")
    n = len(live)
    lengths = np.diff(offsets)
    cur.fail(lengths > 16, lambda k: f"a decimal of {int(lengths[k])} bytes at {path}")
    j = np.arange(16)
    inside = j[None, :] < lengths[:, None]
    source = offsets[:-1, None] + lengths[:, None] - 1 - j[None, :]
    out = np.zeros((n, 16), dtype=np.uint8)
    out[inside] = body[source[inside]]
    first = body[np.minimum(offsets[:-1], max(len(body) - 1, 0))] if len(body) else np.zeros(n, np.uint8)
    negative = (lengths > 0) & ((first & 0x80) != 0)
    out[negative[:, None] & ~inside] = 0xFF
    return pa.Array.from_buffers(pa.decimal128(precision, scale), n, [mask(live), numpy_buffer(out.reshape(-1))])


def _read(schema: Any, cur: Cursor, live: Array, names: dict[str, Any], path: str) -> pa.Array[Any]:
    n = len(live)
    if sum(map(path.count, ".[{")) > _MAX_DEPTH:
        raise UnsupportedAvroSchemaError(f"{path}: nested over {_MAX_DEPTH} levels deep (a recursive schema?)")
    if isinstance(schema, str) and schema in names:
        schema = names[schema]
    if isinstance(schema, list):
        return read_union(schema, cur, live, names, path, _read)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, (dict, list)):
        return _read(kind, cur, live, names, path)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if kind == "null":
        return pa.nulls(n)
    if kind == "boolean":
        flags = cur.fixed(live, 1, path)[:, 0]
        return pa.array(flags != 0, type=pa.bool_(), mask=~live)
    if kind in ("int", "long"):
        values = cur.varints(live, path)
        target = _LOGICAL.get((kind, logical), _PRIMITIVE[kind]) if logical else _PRIMITIVE[kind]
        base: pa.Array[Any] = pa.array(values.astype(np.int32 if kind == "int" else np.int64), mask=~live)
        typed: pa.Array[Any] = base.cast(target) if target != base.type else base
        return typed
    if kind in ("float", "double"):
        width = 4 if kind == "float" else 8
        raw = cur.fixed(live, width, path)
        return pa.array(raw.reshape(-1).view("<f4" if width == 4 else "<f8"), type=_PRIMITIVE[kind], mask=~live)
    if kind in ("bytes", "string"):
        offsets, body = cur.gather(live, cur.varints(live, f"{path} length"), path)
        if logical == "decimal":
            return _decimal(schema, offsets, body, live, cur, path)
        out = pa.Array.from_buffers(pa.large_binary(), n, [mask(live), numpy_buffer(offsets), numpy_buffer(body)]).cast(
            pa.binary()
        )
        return _utf8(out, cur, path) if kind == "string" else out
    if kind == "fixed":
        names[_full_name(schema)] = schema
        size = int(schema["size"])
        raw = cur.fixed(live, size, path)
        if logical == "decimal":
            fixed_offsets = np.arange(n + 1, dtype=np.int64) * size
            return _decimal(schema, fixed_offsets, raw.reshape(-1), live, cur, path)
        return pa.Array.from_buffers(pa.binary(size), n, [mask(live), numpy_buffer(raw.reshape(-1))])
    if kind == "enum":
        names[_full_name(schema)] = schema
        symbols = pa.array(schema["symbols"], type=pa.string())
        index = cur.varints(live, path)
        bad = live & ((index < 0) | (index >= len(symbols)))
        cur.fail(bad, lambda k: f"enum index {int(index[k])} out of range at {path}")
        picks: pa.Array[Any] = pa.array(np.where(live, index, 0).astype(np.int64), type=pa.int64(), mask=~live)
        return symbols.take(picks)
    if kind == "record":
        names[_full_name(schema)] = schema
        fields = schema.get("fields", [])
        children = [_read(f["type"], cur, live, names, f"{path}.{f['name']}") for f in fields]
        if not fields:
            return pa.StructArray.from_arrays([], fields=[], mask=pa.array(~live))
        return pa.StructArray.from_arrays(children, names=[f["name"] for f in fields], mask=pa.array(~live))
    if kind == "array":
        return read_array(schema, cur, live, names, path, _read)
    if kind == "map":
        return read_map(schema, cur, live, names, path, _read)
    raise UnsupportedAvroSchemaError(f"{path}: Avro type {kind!r} is not decoded into columns")


def _utf8(raw: pa.Array[Any], cur: Cursor, path: str) -> pa.Array[Any]:
    """`raw` as strings (the cast checks UTF-8); invalid bytes name their first record, found by
    halving the array (log n casts, only on the error path)."""
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        lo, hi = 0, len(raw)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                raw.slice(lo, mid - lo).cast(pa.string())
                lo = mid
            except pa.ArrowInvalid:
                hi = mid
        bad = np.zeros(len(raw), dtype=bool)
        bad[lo] = True
        cur.fail(bad, f"invalid UTF-8 in the string at {path}")
        raise


def _full_name(schema: dict[str, Any]) -> str:
    name = str(schema["name"])
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


def decode(payloads: pa.Array[Any], schema_json: str, source: str = "value column") -> pa.Array[Any]:
    """Every payload (Avro binary, the framing already split off by wire.split) decoded with the
    writer's schema: a struct column for a record schema, else a column of that type; nulls
    stay null. AvroDecodeError names the first bad record; nothing is half-decoded."""
    schema = json.loads(schema_json)
    starts, ends, data = buffers(payloads)
    live = valid_mask(payloads)
    cur = Cursor(data if len(data) else np.zeros(1, np.uint8), starts.copy(), ends, source)
    column = _read(schema, cur, live, {}, "$")
    cur.fail(
        live & (cur.pos != ends),
        lambda k: f"{int(ends[k] - cur.pos[k])} bytes left after the schema's fields (another writer schema?)",
    )
    return column


def decode_framed(values: pa.Array[Any], schemas: Mapping[int, str], source: str = "value column") -> pa.StructArray:
    """A column of Confluent-framed Avro values written with several schema ids (an evolving
    subject) as one struct column: each id's rows decoded once with its writer schema, then
    lined up by field name (a field an older schema lacks reads as null; int/long and
    float/double widen as Arrow's permissive promotion does). Null values (tombstones) are null
    rows. `schemas`: id → writer schema text. SchemaNotFoundError for an id not given;
    UnsupportedAvroSchemaError if two ids give one field types that cannot be unified."""
    framed = split(values, source)
    ids = framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)
    present = valid_mask(framed.schema_ids)
    parts: list[tuple[Array, pa.StructArray]] = []
    for schema_id in (int(i) for i in np.unique(ids[present])):  # one decode per distinct id
        text = schemas.get(schema_id)
        if text is None:
            first = int(np.argmax(present & (ids == schema_id)))
            raise SchemaNotFoundError(f"record {first} of {source}: schema id {schema_id} was not given")
        rows = np.flatnonzero(present & (ids == schema_id))
        column = decode(framed.payloads.take(rows), text, source)
        if not isinstance(column, pa.StructArray):  # a bare value: one field named after it
            column = pa.StructArray.from_arrays([column], names=["value"])
        parts.append((rows, column))
    try:
        unified = pa.unify_schemas([pa.schema(list(c.type)) for _, c in parts], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UnsupportedAvroSchemaError(f"{source}: the schema ids' fields do not unify: {exc}") from None
    n = len(values)
    order = np.concatenate([rows for rows, _ in parts]) if parts else np.zeros(0, np.int64)
    children = []
    for field in unified:
        pieces = [
            c.field(field.name).cast(field.type)
            if c.type.get_field_index(field.name) >= 0
            else pa.nulls(len(c), field.type)
            for _, c in parts
        ]
        stacked = pa.concat_arrays(pieces) if pieces else pa.array([], field.type)
        # Back to the column's order: the rows of id k sit at `order`; tombstones are null.
        position = np.full(n, -1, dtype=np.int64)
        position[order] = np.arange(len(order))
        picks: pa.Array[Any] = pa.array(position, type=pa.int64(), mask=position < 0)
        children.append(stacked.take(picks))
    mask = pa.array(~valid_mask(values))
    if not children:
        return pa.StructArray.from_arrays([], fields=[], mask=mask)
    return pa.StructArray.from_arrays(children, fields=list(unified), mask=mask)
