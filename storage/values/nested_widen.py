"""Nested schema evolution (issue 13): a registry-format topic's ROW column (also one inside an
ARRAY or a MAP's values) grows by the fields a newer writer schema adds inside the record, the
way the topic grows by top-level fields. The grown type keeps every field the column had, in
place and with its type (a field a later version removed stays, and its new rows read NULL), and
appends the new ones; anything else (a leaf retyped beyond Avro's lossless promotions, a ROW
becoming an ARRAY, a MAP key changing) is no widening, and the caller refuses it as a retype.

Old data is widened on read by a pyarrow cast: a struct cast matches fields by name and fills
the ones the source lacks with nulls, recursing into list and map values, all in C++ (one
vectorised pass, no per-row Python). Everything that reads segments or buffered rows conforms
them with storage/segment/decode.py `with_null_columns`, which calls `widen_column` here. IO-free.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

# Avro's own promotions (int → long/float/double, long/float → double): a writer schema may use
# the narrower type of a column declared from a later version, and the decode widens it losslessly.
PROMOTIONS: frozenset[tuple[pa.DataType, pa.DataType]] = frozenset(
    {
        (pa.int32(), pa.int64()),
        (pa.int32(), pa.float32()),
        (pa.int32(), pa.float64()),
        (pa.int64(), pa.float64()),
        (pa.float32(), pa.float64()),
    }
)


def merged(declared: pa.DataType, writer: pa.DataType) -> pa.DataType | None:
    """`declared` grown by the nested fields `writer` adds (`declared` itself if `writer` adds
    none, including when it lacks some of `declared`'s fields or uses a narrower promotable
    leaf), or None if `writer` retypes something `declared` holds."""
    if declared == writer or (writer, declared) in PROMOTIONS:
        return declared
    if pa.types.is_struct(declared) and pa.types.is_struct(writer):
        fields: list[pa.Field[Any]] = list(declared)
        for field in writer:
            index = declared.get_field_index(field.name)
            if index < 0:
                fields.append(pa.field(field.name, field.type))  # a new child: older rows read NULL
                continue
            inner = merged(declared.field(index).type, field.type)
            if inner is None:
                return None
            fields[index] = fields[index].with_type(inner)
        return pa.struct(fields)
    if pa.types.is_map(declared) and pa.types.is_map(writer):
        if declared.key_type != writer.key_type:
            return None
        item = merged(declared.item_type, writer.item_type)
        return None if item is None else pa.map_(declared.key_type, item)
    if pa.types.is_list(declared) and pa.types.is_list(writer):
        value = merged(declared.value_type, writer.value_type)
        return None if value is None else pa.list_(declared.value_field.with_type(value))
    return None


def conflict(declared: pa.DataType, writer: pa.DataType, path: str) -> str:
    """Where `writer` retypes `declared` (for which `merged` gave None): the innermost field
    path whose types differ, e.g. "address.city" or "stops[].zip" (`path` names the column)."""
    if pa.types.is_struct(declared) and pa.types.is_struct(writer):
        for field in writer:
            index = declared.get_field_index(field.name)
            if index >= 0 and merged(declared.field(index).type, field.type) is None:
                return conflict(declared.field(index).type, field.type, f"{path}.{field.name}")
    elif pa.types.is_map(declared) and pa.types.is_map(writer):
        if declared.key_type == writer.key_type:
            return conflict(declared.item_type, writer.item_type, f"{path}{{}}")
    elif pa.types.is_list(declared) and pa.types.is_list(writer):
        return conflict(declared.value_type, writer.value_type, f"{path}[]")
    return path


def widens(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether a column stored as `old` reads as `new` with nothing lost: equal, or `new` only
    adds nested fields to `old`'s records (at any depth)."""
    return old == new or (_nested(old) and merged(new, old) == new)


def widen_column(array: pa.ChunkedArray[Any] | pa.Array[Any], new: pa.DataType) -> Any:
    """`array` (stored as an older type that `widens` to `new`) as `new`: children it lacks are
    nulls, every present value kept. One C++ cast, zero-copy for the children it has. Also
    narrows (`new` widens to the stored type): the children `new` lacks are left out."""
    return array if array.type == new else array.cast(new)


def _nested(arrow: pa.DataType) -> bool:
    return pa.types.is_struct(arrow) or pa.types.is_list(arrow) or pa.types.is_map(arrow)
