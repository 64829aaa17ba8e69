"""Vectorised Protobuf encoding of flat messages (REST produce by subject, issue 13): when every
field of the message is a singular scalar, string or enum (the common event shape), a batch of
JSON objects is encoded column by column, as avro_encode.py does for Avro: pyarrow infers one
struct column from the JSON (C, one pass), each field becomes its tag bytes and its value's
bytes for the records that hold it (varints as a byte matrix, fixed-width numbers as one buffer,
strings as length varints joined to their bytes), and a record is its fields joined element-wise
in field-number order, byte for byte what google.protobuf's serializer writes.

Anything else returns None and protobuf_encode.py takes the record-by-record path: repeated,
map and message fields, a field name given in lowerCamelCase, an integer given as a string, an
enum given by number, a value of the wrong kind or out of range. The per-record path also
finds and names the bad record, so the error messages are the same on both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.registry.avro_encode import _binary, unsigned_varints  # the binary column builder, varints
from streamhouse.storage.schemas.protobuf_arrow import PbField, PbMessage

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly
_EMPTY = pa.scalar(b"", pa.binary())
_VARINT_INTS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "uint32": (0, 2**32 - 1)}
_ZIGZAG_INTS = {"sint32": (-(2**31), 2**31 - 1), "sint64": (-(2**63), 2**63 - 1)}
_FLAT = {*_VARINT_INTS, *_ZIGZAG_INTS, "bool", "string", "double", "float", "enum"}


class _Fallback(Exception):
    """The batch needs the record-by-record path."""


def flat(message: PbMessage) -> bool:
    """Whether the vectorised path can encode the message at all."""
    return all(f.kind in _FLAT and not f.repeated and not f.is_map for f in message.fields)


def varints(values: np.ndarray[Any, Any]) -> pa.Array[Any]:
    """Protobuf base-128 varints of uint64 values."""
    return unsigned_varints(values.astype(np.uint64))


def _tag(field: PbField) -> pa.Scalar[Any]:
    key = varints(np.array([(field.number << 3) | field.wire_type], np.uint64))
    return cast("pa.Scalar[Any]", key[0])


def _numbers(arr: pa.Array[Any]) -> np.ndarray[Any, Any]:
    filler = pa.scalar(False) if pa.types.is_boolean(arr.type) else pa.scalar(0, arr.type)
    return np.asarray(arr.fill_null(filler).to_numpy(zero_copy_only=False))


def _payload(field: PbField, arr: pa.Array[Any], present: np.ndarray[Any, Any]) -> pa.Array[Any]:
    t = arr.type
    kind = field.kind
    if kind in _VARINT_INTS or kind in _ZIGZAG_INTS:
        if not pa.types.is_integer(t):
            raise _Fallback
        values = _numbers(arr)
        low, high = _VARINT_INTS.get(kind) or _ZIGZAG_INTS[kind]
        if (present & ((values < low) | (values > high))).any():
            raise _Fallback
        v = np.where(present, values, 0).astype(np.int64)
        if kind in _ZIGZAG_INTS:
            return varints(((v << 1) ^ (v >> 63)).view(np.uint64))
        return varints(v.view(np.uint64))  # negatives: two's complement, ten bytes (as protobuf)
    if kind == "bool":
        if not pa.types.is_boolean(t):
            raise _Fallback
        return varints(_numbers(arr).astype(np.uint64))
    if kind in ("double", "float"):
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise _Fallback
        dtype = "<f8" if kind == "double" else "<f4"
        if kind == "float" and (present & (np.abs(_numbers(arr)) > np.finfo(np.float32).max)).any():
            raise _Fallback  # json_format refuses it, naming the field
        raw = np.ascontiguousarray(_numbers(arr).astype(dtype)).view(np.uint8)
        return _binary(raw, np.full(len(arr), np.dtype(dtype).itemsize, np.int64))
    if not pa.types.is_string(t):  # string and enum (by symbol name)
        raise _Fallback
    strings = arr.fill_null("")
    if kind == "enum":
        symbols = pa.array([name for _, name in field.symbols], pa.string())
        index = pc.index_in(strings, value_set=symbols)
        if (present & ~np.asarray(index.is_valid().to_numpy(zero_copy_only=False), bool)).any():
            raise _Fallback
        numbers = np.array([n for n, _ in field.symbols], np.int64)
        picked = numbers[np.asarray(index.fill_null(0).to_numpy(zero_copy_only=False), np.int64)]
        return varints(picked.view(np.uint64))
    text = strings.cast(pa.binary())
    lengths = np.asarray(pc.binary_length(text).to_numpy(zero_copy_only=False), dtype=np.uint64)
    return cast("pa.Array[Any]", pc.binary_join_element_wise(varints(lengths), text, _EMPTY))


def encode_flat(message: PbMessage, data: Sequence[Any]) -> pa.Array[Any] | None:
    """The serialised messages of `data` (None items stay null), or None when the batch needs the
    record-by-record path (module docstring)."""
    if not flat(message) or not data:
        return None
    try:
        inferred = pa.array(data, from_pandas=False)
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        return None
    if not pa.types.is_struct(inferred.type):
        return None
    struct = cast(pa.StructArray, inferred)
    given = {struct.type.field(i).name: i for i in range(struct.type.num_fields)}
    by_name = {f.name: f for f in message.fields}
    if any(name not in by_name for name in given):
        return None  # an unknown or camelCase name: json_format decides
    records = np.asarray(struct.is_valid().to_numpy(zero_copy_only=False), bool)
    pieces: list[pa.Array[Any]] = []
    try:
        for field in sorted(message.fields, key=lambda f: f.number):
            if field.name not in given:
                continue
            column = struct.field(given[field.name])
            if pa.types.is_null(column.type):
                continue
            present = records & np.asarray(column.is_valid().to_numpy(zero_copy_only=False), bool)
            if not present.any():
                continue
            encoded = pc.binary_join_element_wise(_tag(field), _payload(field, column, present), _EMPTY)
            pieces.append(pc.if_else(pa.array(present), encoded, _EMPTY))
    except _Fallback:
        return None
    joined = pc.binary_join_element_wise(*pieces, _EMPTY) if pieces else pa.repeat(_EMPTY, len(data))
    return cast("pa.Array[Any]", pc.if_else(pa.array(records), joined, pa.scalar(None, pa.binary())))
