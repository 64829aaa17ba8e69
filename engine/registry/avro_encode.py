"""JSON data → Avro binary for a whole batch at once (REST produce by subject, issue 13): what
an AvroSerializer does per record, done column by column.

The batch's JSON objects become one Arrow array by pyarrow's own inference (C, one pass), so
every record's fields are columns; each column is checked against its Avro type (kinds, ranges,
required fields, enum symbols, unknown fields) and encoded for all records in a few numpy steps
(zigzag varints as a byte matrix, floats as one little-endian buffer, strings as length varints
joined to their bytes); a record is its fields' pieces joined element-wise by one Arrow kernel.
Checking types on the inferred column (not by converting straight to the target type) keeps
pyarrow from truncating 1.5 into an int or taking True for 1 silently.

Vectorised: null, boolean, int, long, float, double, string, enum, records (nested), unions of
null and one of these, logical date / timestamp-millis / timestamp-micros (given as numbers).
Any other schema (arrays, maps, bytes, fixed, wider unions, decimals) falls back to fastavro's
per-record `schemaless_writer` with strict=True: correct, slower (docs say how much). Data that
does not fit raises AvroDataError naming the record and the field; nothing is encoded then.

Records follow the Python serializers' convention (what confluent-kafka's AvroSerializer takes):
a union's value is given plain, not in Avro's JSON wrapping (`{"string": "x"}`); a missing or
null field of a non-null type takes the field's default when it has one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.storage.errors import InvalidInputError

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly
_EMPTY = pa.scalar(b"", pa.binary())
_INTS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class AvroDataError(InvalidInputError):
    """A record's JSON data does not fit the Avro schema; `index` is the record's position in
    the batch and `field` the dotted path of the field ("" for the record itself)."""

    def __init__(self, message: str, *, index: int, field: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class _KindError(AvroDataError):
    """A column's inferred kind does not fit: the record to blame is found record by record."""


class _Unsupported(Exception):
    """The schema needs the per-record fallback."""


@dataclass(frozen=True)
class _Ctx:
    names: Mapping[str, Any]  # full name → named type (records, enums) of the schema and its references
    where: str  # "values" / "keys": what the error messages name
    namespace: str = ""


def encode(
    schema_text: str, data: Sequence[Any], *, references: Sequence[str] = (), where: str = "values"
) -> pa.Array[Any]:
    """One Avro payload per item of `data` (binary; a None item stays null: a tombstone, as
    the serializers leave it). `references`: the texts of referenced schemas, dependencies
    first. AvroDataError names the first record (and field) that does not fit."""
    schema = json.loads(schema_text)
    names: dict[str, Any] = {}
    for text in (*references, schema_text):
        _collect(json.loads(text), "", names)
    ctx = _Ctx(names, where)
    try:
        _check_supported(schema, ctx, set())
    except _Unsupported:
        return _fallback(schema, [json.loads(t) for t in references], data, where)
    try:
        inferred = pa.array(data, from_pandas=False)
    except (pa.ArrowException, OverflowError, ValueError, TypeError):  # what JSON can make inference raise
        _locate(schema, data, ctx)  # raises AvroDataError for the first bad record
        raise
    present = _mask(inferred.is_valid())
    try:
        pieces = _encode(schema, inferred, present, "", ctx)
    except _KindError:
        _locate(schema, data, ctx)
        raise
    return cast("pa.Array[Any]", pc.if_else(pa.array(present), pieces, pa.scalar(None, pa.binary())))


def frame(payloads: pa.Array[Any], schema_id: int) -> pa.Array[Any]:
    """Confluent's wire format: magic byte 0 + the 4-byte big-endian schema id before each
    payload (nulls stay null)."""
    prefix = pa.scalar(b"\x00" + schema_id.to_bytes(4, "big"), pa.binary())
    return cast("pa.Array[Any]", pc.binary_join_element_wise(prefix, payloads, _EMPTY))


# -- schema walk ----------------------------------------------------------------------------------
def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _collect(node: Any, namespace: str, names: dict[str, Any]) -> None:
    if isinstance(node, list):
        for branch in node:
            _collect(branch, namespace, names)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _full(str(node["name"]), str(node.get("namespace", namespace)))
            names[full] = node
            inner = full.rpartition(".")[0]
            for f in node.get("fields", ()):
                _collect(f["type"], inner, names)
        elif kind in ("array", "map"):
            _collect(node.get("items", node.get("values")), namespace, names)
        elif isinstance(kind, (dict, list)):
            _collect(kind, namespace, names)


def _resolve(node: Any, ctx: _Ctx) -> Any:
    if isinstance(node, str) and node not in _PRIMITIVES:
        named = ctx.names.get(node) or ctx.names.get(_full(node, ctx.namespace))
        if named is None:
            raise InvalidInputError(f"the Avro schema names an unknown type {node!r}")
        return named
    if isinstance(node, dict) and isinstance(node.get("type"), (dict, list)):
        return node["type"]
    return node


_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_LOGICAL = {("int", "date"), ("long", "timestamp-millis"), ("long", "timestamp-micros")}


def _base(node: Any) -> tuple[str, str | None]:
    """(Avro type name, logical type) of a resolved node."""
    if isinstance(node, str):
        return node, None
    if isinstance(node, list):
        return "union", None
    return str(node.get("type")), node.get("logicalType")


def _check_supported(node: Any, ctx: _Ctx, seen: set[str]) -> None:
    node = _resolve(node, ctx)
    kind, logical = _base(node)
    if logical is not None and (kind, logical) not in _LOGICAL:
        raise _Unsupported
    if kind == "union":
        others = [b for b in node if b != "null"]
        if len(node) != 2 or len(others) != 1:
            raise _Unsupported
        _check_supported(others[0], ctx, seen)
    elif kind in ("record", "error"):
        full = _full(str(node["name"]), str(node.get("namespace", ctx.namespace)))
        if full in seen:
            return  # a recursive type: its fields are checked once
        seen.add(full)
        inner = _Ctx(ctx.names, ctx.where, full.rpartition(".")[0])  # names inside resolve in its namespace
        for f in node["fields"]:
            _check_supported(f["type"], inner, seen)
    elif kind not in ("null", "boolean", "int", "long", "float", "double", "string", "enum"):
        raise _Unsupported


# -- vectorised encoders ----------------------------------------------------------------------
def _binary(data: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any]) -> pa.Array[Any]:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise InvalidInputError("a produce batch may encode to at most 2 GiB; split it")
    return pa.Array.from_buffers(
        pa.binary(),
        len(lengths),
        [None, pa.py_buffer(offsets.astype(np.int32).tobytes()), pa.py_buffer(data.tobytes())],
    )


def varints(values: np.ndarray[Any, Any]) -> pa.Array[Any]:
    """Avro's zigzag varints of int64 values."""
    v = values.astype(np.int64)
    return unsigned_varints(((v << 1) ^ (v >> 63)).view(np.uint64))


def unsigned_varints(u: np.ndarray[Any, np.dtype[np.uint64]]) -> pa.Array[Any]:
    """Base-128 varints of uint64 values (Avro's after zigzag, Protobuf's as they are): a
    (n, 10) byte matrix, its used bytes kept."""
    lengths = np.ones(len(u), np.int64)
    rest = u >> np.uint64(7)
    while rest.any():  # at most 9 rounds (64 bits / 7), one per byte position, not per record
        lengths += rest > 0
        rest >>= np.uint64(7)
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(7)
    matrix = ((u[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    position = np.arange(10)
    matrix |= np.where(position < (lengths[:, None] - 1), np.uint8(0x80), np.uint8(0))
    return _binary(matrix[position < lengths[:, None]], lengths)


def _fixed_width(values: np.ndarray[Any, Any], dtype: str) -> pa.Array[Any]:
    raw = np.ascontiguousarray(values.astype(dtype)).view(np.uint8)
    return _binary(raw, np.full(len(values), np.dtype(dtype).itemsize, np.int64))


def _fail(mask: np.ndarray[Any, Any], path: str, ctx: _Ctx, why: str, *, kind: bool = False) -> AvroDataError:
    """The error for the first record in `mask`; kind=True: a whole column's kind is wrong, so
    `encode` finds the record to blame first."""
    index = int(np.argmax(mask))
    field = f" field {path!r}" if path else ""
    return (_KindError if kind else AvroDataError)(f"{ctx.where}[{index}]{field}: {why}", index=index, field=path)


def _mask(flags: Any) -> np.ndarray[Any, Any]:
    return np.asarray(flags.to_numpy(zero_copy_only=False), dtype=bool)


def _empties(n: int) -> pa.Array[Any]:
    return _binary(np.zeros(0, np.uint8), np.zeros(n, np.int64))


def _numbers(arr: pa.Array[Any]) -> np.ndarray[Any, Any]:
    filler = pa.scalar(False) if pa.types.is_boolean(arr.type) else pa.scalar(0, arr.type)
    return np.asarray(arr.fill_null(filler).to_numpy(zero_copy_only=False))


def _encode(node: Any, arr: pa.Array[Any], live: np.ndarray[Any, Any], path: str, ctx: _Ctx) -> pa.Array[Any]:
    """`arr` (inferred from JSON) encoded as `node` for the records in `live` (others: b"")."""
    if not live.any():
        return _empties(len(arr))
    out = _encode_live(node, arr, live, path, ctx)
    return out if live.all() else cast("pa.Array[Any]", pc.if_else(pa.array(live), out, _EMPTY))


def _encode_live(node: Any, arr: pa.Array[Any], live: np.ndarray[Any, Any], path: str, ctx: _Ctx) -> pa.Array[Any]:
    """`_encode` for the records in `live`; what it gives for the others is dropped."""
    node = _resolve(node, ctx)
    kind, _logical = _base(node)
    kind_of = arr.type
    null_typed = pa.types.is_null(kind_of)
    valid = live & (np.zeros(len(arr), bool) if null_typed else _mask(arr.is_valid()))
    if kind == "union":
        null_at = node.index("null")
        other = node[1 - null_at]
        branch = varints(np.where(valid, 1 - null_at, null_at))
        if not valid.any():
            return branch
        return cast("pa.Array[Any]", pc.binary_join_element_wise(branch, _encode(other, arr, valid, path, ctx), _EMPTY))
    if kind == "null":
        if valid.any():
            raise _fail(valid, path, ctx, "must be null")
        return _empties(len(arr))
    missing = live & ~valid
    if missing.any():
        raise _fail(missing, path, ctx, f"is missing or null, but its type {kind} is not nullable")
    if kind in ("record", "error"):
        return _record(node, arr, live, path, ctx)
    if null_typed:  # only reached with nothing live
        return _empties(len(arr))
    if kind == "boolean":
        if not pa.types.is_boolean(kind_of):
            raise _fail(live, path, ctx, f"must be true or false, not {kind_of}", kind=True)
        return _fixed_width(_numbers(arr), "u1")
    if kind in _INTS:
        if not pa.types.is_integer(kind_of):
            raise _fail(live, path, ctx, f"must be an integer ({kind}), not {kind_of}", kind=True)
        values = _numbers(arr)
        low, high = _INTS[kind]
        out = live & ((values < low) | (values > high))
        if out.any():
            raise _fail(out, path, ctx, f"is out of the {kind} range")
        return varints(np.where(live, values, 0))
    if kind in ("float", "double"):
        if not (pa.types.is_integer(kind_of) or pa.types.is_floating(kind_of)):
            raise _fail(live, path, ctx, f"must be a number ({kind}), not {kind_of}", kind=True)
        return _fixed_width(_numbers(arr).astype(np.float64), "<f4" if kind == "float" else "<f8")
    if kind in ("string", "enum"):
        if not pa.types.is_string(kind_of):
            raise _fail(live, path, ctx, f"must be a string ({kind}), not {kind_of}", kind=True)
        strings = arr.fill_null("")
        if kind == "enum":
            symbols = pa.array([str(s) for s in node["symbols"]], pa.string())
            index = pc.index_in(strings, value_set=symbols)
            unknown = live & ~_mask(index.is_valid())
            if unknown.any():
                raise _fail(unknown, path, ctx, f"is not a symbol of enum {node['name']!r}")
            return varints(np.asarray(index.fill_null(0).to_numpy(zero_copy_only=False)))
        raw = strings.cast(pa.binary())
        lengths = np.asarray(pc.binary_length(raw).to_numpy(zero_copy_only=False), dtype=np.int64)
        return cast("pa.Array[Any]", pc.binary_join_element_wise(varints(lengths), raw, _EMPTY))
    raise _Unsupported  # _check_supported let nothing else through


def _record(node: Any, arr: pa.Array[Any], live: np.ndarray[Any, Any], path: str, ctx: _Ctx) -> pa.Array[Any]:
    if not pa.types.is_struct(arr.type):
        raise _fail(live, path, ctx, f"must be an object (record {node['name']!r}), not {arr.type}", kind=True)
    full = _full(str(node["name"]), str(node.get("namespace", ctx.namespace)))
    inner = _Ctx(ctx.names, ctx.where, full.rpartition(".")[0])
    struct = cast(pa.StructArray, arr)
    given = {struct.type.field(i).name: i for i in range(struct.type.num_fields)}
    declared = {str(f["name"]) for f in node["fields"]}
    for name in given:
        if name not in declared:
            column = struct.field(given[name])
            used = live & _mask(column.is_valid())
            if used.any():  # a key present in some record (inference unions every record's keys)
                raise _fail(used, _join(path, name), inner, f"is not a field of record {node['name']!r}")
    pieces: list[pa.Array[Any]] = []
    for f in node["fields"]:
        name = str(f["name"])
        column = struct.field(given[name]) if name in given else pa.nulls(len(struct))
        if "default" in f and not _nullable(f["type"], inner):
            column = _with_default(column, f["default"], live, _join(path, name), inner)
        pieces.append(_encode(f["type"], column, live, _join(path, name), inner))
    if not pieces:
        return _empties(len(arr))
    return cast("pa.Array[Any]", pc.binary_join_element_wise(*pieces, _EMPTY))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _nullable(node: Any, ctx: _Ctx) -> bool:
    node = _resolve(node, ctx)
    return node == "null" or (isinstance(node, list) and "null" in node)


def _with_default(
    column: pa.Array[Any], default: Any, live: np.ndarray[Any, Any], path: str, ctx: _Ctx
) -> pa.Array[Any]:
    """Null / missing entries filled with the field's default (as the serializers do)."""
    if column.null_count == 0 or default is None:
        return column
    try:
        filler = pa.array([default], from_pandas=False)
        if pa.types.is_null(column.type):
            return cast("pa.Array[Any]", pa.repeat(filler[0], len(column)))
        return cast("pa.Array[Any]", column.fill_null(filler[0].cast(column.type)))
    except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
        missing = live & _mask(column.is_null())
        raise _fail(missing, path, ctx, f"its default does not fit the given values: {exc}") from None


# -- the error path and the fallback ----------------------------------------------------------
def _locate(schema: Any, data: Sequence[Any], ctx: _Ctx) -> None:
    """Inference failed for the batch (mixed kinds in one field): find the record that does not
    fit by encoding records alone (the error path only, so a loop is fine)."""
    for i, item in enumerate(data):
        try:
            _encode(schema, pa.array([item], from_pandas=False), np.array([item is not None]), "", ctx)
        except AvroDataError as exc:
            message = str(exc).replace(f"{ctx.where}[0]", f"{ctx.where}[{i}]", 1)
            raise AvroDataError(message, index=i, field=exc.field) from None
        except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
            raise AvroDataError(f"{ctx.where}[{i}]: {exc}", index=i, field="") from None
    # Every record fits alone, but not together (a field's kind differs between records).
    raise AvroDataError(f"{ctx.where}: a field holds values of different kinds in different records", index=0, field="")


def _fallback(schema: Any, references: Sequence[Any], data: Sequence[Any], where: str) -> pa.Array[Any]:
    """fastavro per record (schemas the vectorised path does not cover)."""
    import fastavro
    import fastavro.validation

    named: dict[str, Any] = {}
    for ref in references:
        fastavro.parse_schema(ref, named_schemas=named)
    parsed = fastavro.parse_schema(schema, named_schemas=named)
    out: list[bytes | None] = []
    buffer = io.BytesIO()
    for i, item in enumerate(data):
        if item is None:
            out.append(None)
            continue
        buffer.seek(0)
        buffer.truncate()
        try:
            fastavro.schemaless_writer(buffer, parsed, item, strict=True)
        except Exception as exc:  # whatever fastavro raises, the record does not fit the schema
            reason = str(exc)
            try:
                fastavro.validation.validate(item, parsed, raise_errors=True)
            except fastavro.validation.ValidationError as invalid:  # names the field, when it can
                reason = "; ".join(str(x) for x in invalid.errors)[:500] or reason
            except Exception:  # the writer's own message stands
                pass
            raise AvroDataError(f"{where}[{i}]: does not fit the Avro schema: {reason}", index=i, field="") from None
        out.append(buffer.getvalue())
    return pa.array(out, pa.binary())
