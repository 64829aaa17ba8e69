"""JSON values of composite columns (ROW, ARRAY, MAP, BYTES) as pyarrow's JSON reader reads them
and how they become the declared Arrow types, whole arrays at a time (issue 13: MAP columns).

The reader has no map and no binary type. A MAP is read in one of two spellings, tried in turn
for a whole run of values (storage/values/json_decode.py `_decode`):
  objects: a plain JSON object `{"a": 1, "b": 2}`, what Flink's JSON format and DuckDB read.
    The reader is given an empty struct and infers its fields (one per key seen in the run),
    on a copy of the values holding only the map columns (storage/values/json_members.py);
    `objects_to_map` turns that struct into map entries with numpy over a validity matrix
    (fields × rows): no Python loop per record or entry, one cast per inferred value type.
    Object keys are strings; MAP<INT, …> and other key types cast them ("1" → 1). A key whose
    value is JSON null reads as absent (the inferred struct cannot tell the two apart).
  entries: an array of {"key": …, "value": …} objects (Arrow's own map layout, the spelling
    whose keys may be any JSON type), kept working as documented before.
A run mixing the two spellings in one column fails both; the caller's bisection decodes each
spelling's runs on their own. Inference makes the struct as wide as the run has distinct keys,
so object-spelled runs are decoded `OBJECT_RUN_ROWS` values at a time (bounded width per run,
else many distinct keys would cost rows × keys).
BYTES is read as a string (its UTF-8 bytes).

Anything that does not fit raises one of pyarrow's errors (ArrowInvalid, …), which the decoder
treats as "this run does not fit"."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OBJECTS = "objects"
ENTRIES = "entries"
SPELLINGS = (OBJECTS, ENTRIES)
OBJECT_RUN_ROWS = 1_024


def has_map(target: pa.DataType) -> bool:
    if pa.types.is_map(target):
        return True
    if pa.types.is_struct(target):
        return any(has_map(f.type) for f in target)
    if pa.types.is_list(target):
        return has_map(target.value_type)
    return False


def read_type(target: pa.DataType, spelling: str = ENTRIES) -> pa.DataType:
    """What the JSON reader reads a composite column as (`spelling`: how MAPs are read)."""
    if pa.types.is_map(target):
        if spelling == OBJECTS:
            return pa.struct([])  # fields inferred by the reader: one per key
        entry = pa.struct(
            [
                pa.field("key", read_type(target.key_type, spelling)),
                pa.field("value", read_type(target.item_type, spelling)),
            ]
        )
        return pa.list_(entry)
    if pa.types.is_struct(target):
        return pa.struct([pa.field(f.name, read_type(f.type, spelling)) for f in target])
    if pa.types.is_list(target):
        return pa.list_(read_type(target.value_type, spelling))
    if pa.types.is_binary(target):
        return pa.string()
    return target


def to_target(array: pa.Array[Any], target: pa.DataType) -> pa.Array[Any]:
    """`array` as read by `read_type(target, …)` rebuilt as `target`, whole arrays at a time."""
    if array.type == target:
        if _holds_strings(target):
            array.validate(full=True)  # the reader does not check UTF-8 (e.g. ARRAY<STRING> items)
        return array
    mask = array.is_null() if array.null_count else None
    if pa.types.is_map(target):
        if pa.types.is_struct(array.type):
            return objects_to_map(cast(pa.StructArray, array), target)
        entries = cast(Any, array).flatten()  # the list's entries, the slice applied
        offsets = pc.subtract(cast(Any, array).offsets, cast(Any, array).offsets[0])
        keys = to_target(entries.field("key"), target.key_type)
        if keys.null_count:
            raise pa.ArrowInvalid("a MAP key is null")
        items = to_target(entries.field("value"), target.item_type)
        return _map(offsets, keys, items, target, mask)
    if pa.types.is_struct(target):
        children = [to_target(cast(Any, array).field(f.name), f.type) for f in target]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target):
        offsets = pc.subtract(cast(Any, array).offsets, cast(Any, array).offsets[0])
        values = to_target(cast(Any, array).flatten(), target.value_type)
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=mask)
    if pa.types.is_string(array.type):
        array.validate(full=True)  # the reader does not check UTF-8
    return array.cast(target)


def _holds_strings(type_: pa.DataType) -> bool:
    if pa.types.is_string(type_):
        return True
    return pa.types.is_nested(type_) and any(_holds_strings(type_.field(i).type) for i in range(type_.num_fields))


def _map(offsets: Any, keys: pa.Array[Any], items: pa.Array[Any], target: pa.DataType, mask: Any) -> pa.Array[Any]:
    build: Any = pa.MapArray.from_arrays  # the stubs' overloads miss keys + items + type
    return cast("pa.Array[Any]", build(offsets, keys, items, type=target, mask=mask))


def objects_to_map(array: pa.StructArray, map_type: pa.DataType) -> pa.Array[Any]:
    """Plain JSON objects, read as a struct whose fields the reader inferred (one per key),
    as a MAP column: row r's entries are the fields valid in row r, in the struct's field order."""
    target: Any = map_type  # a pa.MapType (the stubs' DataType lacks key_type / item_type)
    n = len(array)
    names = [f.name for f in array.type]
    children = array.flatten()  # the struct's nulls applied to each field
    # One cast per inferred type (a run's keys usually share one): fields of a type side by side.
    by_type: dict[pa.DataType, list[int]] = {}
    for i, child in enumerate(children):
        if not pa.types.is_null(child.type):  # a key only ever null: read as absent
            by_type.setdefault(child.type, []).append(i)
    parts: list[pa.Array[Any]] = []
    field_of: list[int] = []
    for fields in by_type.values():
        parts.append(conform(pa.concat_arrays([children[i] for i in fields]), target.item_type))
        field_of.extend(fields)
    if parts:
        values = pa.concat_arrays(parts)
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool).reshape(len(field_of), n)
        # (row, field) of every entry, row-major: row r's entries are contiguous.
        rows, block = np.nonzero(valid.T)
        keys_all = pa.array([names[i] for i in field_of], pa.string())
        keys = _keys(keys_all.take(pa.array(block, pa.int64())), target.key_type)
        items = values.take(pa.array(block * n + rows, pa.int64()))
        counts = np.bincount(rows, minlength=n)
    else:
        keys = pa.array([], target.key_type)
        items = pa.array([], target.item_type)
        counts = np.zeros(n, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    mask = array.is_null() if array.null_count else None
    return _map(pa.array(offsets, pa.int32()), keys, items, target, mask)


def _keys(names: pa.Array[Any], key_type: pa.DataType) -> pa.Array[Any]:
    """Object keys (strings) as the MAP's key type: MAP<INT, …> reads {"1": …} as key 1."""
    if pa.types.is_string(key_type):
        return names
    if pa.types.is_binary(key_type):
        return names.cast(pa.binary())
    if pa.types.is_boolean(key_type):
        lowered: Any = pc.utf8_lower(cast(Any, names))
        if not pc.all(pc.is_in(lowered, pa.array(["true", "false"]))).as_py():
            raise pa.ArrowInvalid("a MAP<BOOLEAN, …> key is not true or false")
        return cast("pa.Array[Any]", pc.equal(lowered, pa.scalar("true")))
    return names.cast(key_type)


def conform(array: pa.Array[Any], target: pa.DataType) -> pa.Array[Any]:
    """A value the reader inferred the type of (inside an object-spelled MAP) as `target`, held
    to what the declared type would accept from the reader: a string only from a JSON string, a
    number within range, a ROW's fields by name (missing ones null, others ignored)."""
    if pa.types.is_null(array.type):
        return cast("pa.Array[Any]", pa.nulls(len(array), cast(Any, target)))
    if array.type == target and not pa.types.is_string(target):
        return array
    mask = array.is_null() if array.null_count else None
    source = array.type
    if pa.types.is_map(target):
        if not pa.types.is_struct(source):
            raise pa.ArrowInvalid(f"a {source} where a MAP is declared")
        return objects_to_map(cast(pa.StructArray, array), target)
    if pa.types.is_struct(target):
        if not pa.types.is_struct(source):
            raise pa.ArrowInvalid(f"a {source} where a ROW is declared")
        struct = cast(pa.StructArray, array)
        have = {f.name for f in source}
        children = [
            conform(struct.field(f.name), f.type) if f.name in have else conform(pa.nulls(len(array)), f.type)
            for f in target
        ]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_list(target):
        if not pa.types.is_list(source):
            raise pa.ArrowInvalid(f"a {source} where an ARRAY is declared")
        offsets = pc.subtract(cast(Any, array).offsets, cast(Any, array).offsets[0])
        values = conform(cast(Any, array).flatten(), target.value_type)
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=mask)
    if pa.types.is_string(target) or pa.types.is_binary(target):
        if not pa.types.is_string(source):
            raise pa.ArrowInvalid(f"a {source} where a string is declared")
        array.validate(full=True)  # the reader does not check UTF-8
        return array.cast(target)
    if pa.types.is_boolean(target) != pa.types.is_boolean(source):
        raise pa.ArrowInvalid(f"a {source} where {target} is declared")
    numeric = pa.types.is_integer(target) or pa.types.is_floating(target) or pa.types.is_decimal(target)
    if numeric and not (pa.types.is_integer(source) or pa.types.is_floating(source)):
        raise pa.ArrowInvalid(f"a {source} where a number is declared")
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source):
        return array.cast(target, safe=False)  # sub-millisecond digits are dropped, as for columns
    if pa.types.is_date32(target) and pa.types.is_timestamp(source):
        return array.cast(pa.timestamp("ms")).cast(target)  # midnight casts exactly; else refused
    return array.cast(target)
