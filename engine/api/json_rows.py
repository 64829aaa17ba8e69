"""Arrow columns as JSON text, built column-wise with Arrow kernels (no Python step per row):
what `batch_from_table` (values.py) sends as record values when a table has no value column,
and the small column helpers both share (one chunk, plain values, which types are bytes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.storage.errors import InvalidInputError

__all__ = ["decoded", "is_bytes_like", "is_string", "json_rows", "single_chunk", "to_binary"]

# pyarrow-stubs type variadic compute kernels too narrowly (scalars vs arrays); the kernels
# themselves check their arguments at run time.
pc: Any = _pc


def single_chunk(column: pa.ChunkedArray[Any]) -> pa.Array[Any]:
    # combine_chunks copies; a one-chunk column (the usual case) is used as is.
    if column.num_chunks == 1:
        return cast("pa.Array[Any]", column.chunk(0))
    return column.combine_chunks()


def decoded(arr: pa.Array[Any]) -> pa.Array[Any]:
    """Plain values instead of dictionary codes (pandas categoricals) or extension wrappers."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()  # type: ignore[attr-defined]
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage  # type: ignore[attr-defined]
    return arr


def is_bytes_like(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
        or is_string(t)
    )


def is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def to_binary(arr: pa.Array[Any], role: str) -> pa.Array[Any]:
    try:
        return pc.cast(arr, pa.binary())  # type: ignore[no-any-return]
    except (pa.ArrowInvalid, pa.ArrowCapacityError) as e:  # offsets overflow past 2 GiB
        raise InvalidInputError(f"{role}: a batch may carry at most 2 GiB of keys or values; split it ({e})") from e


# Characters JSON strings must escape; the rest of the control range gets \u00XX.
_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def _quote(strings: pa.Array[Any]) -> pa.Array[Any]:
    """JSON string literals of a string array (nulls stay null).

    One scan of the data buffer finds which characters need escaping at all, so the
    common case (no quotes, backslashes or control characters) costs no replace passes.
    """
    s = pc.cast(strings, pa.string())
    data_buf = s.buffers()[2]
    if data_buf is not None and data_buf.size:
        data = np.frombuffer(data_buf, dtype=np.uint8)
        present = set(np.unique(data[(data < 0x20) | (data == 0x22) | (data == 0x5C)]).tolist())
        # Backslashes first, so the backslashes the later escapes add are not doubled.
        if 0x5C in present:
            s = pc.replace_substring(s, "\\", "\\\\")
        if 0x22 in present:
            s = pc.replace_substring(s, '"', '\\"')
        for byte in sorted(present - {0x22, 0x5C}):
            s = pc.replace_substring(s, chr(byte), _SHORT_ESCAPES.get(byte, f"\\u{byte:04x}"))
    return pc.binary_join_element_wise('"', s, '"', "")  # type: ignore[no-any-return]


def _json_floats(arr: pa.Array[Any]) -> pa.Array[Any]:
    if pa.types.is_float16(arr.type):
        arr = pc.cast(arr, pa.float32())
    # Arrow prints the shortest text that round-trips (pandas' to_json keeps at most 15
    # digits, which would change the numbers).
    s = pc.cast(arr, pa.string())
    # A whole float prints as "3"; keep it "3.0" so a reader still sees a float.
    s = pc.if_else(pc.match_substring_regex(s, r"^-?[0-9]+$"), pc.binary_join_element_wise(s, ".0", ""), s)
    # NaN and infinity are not JSON: null, as pandas would write them.
    return pc.if_else(pc.is_finite(arr), s, pa.scalar(None, pa.string()))  # type: ignore[no-any-return]


def _json_object(names: Sequence[str], fragments: Sequence[pa.Array[Any]], n: int) -> pa.Array[Any]:
    if not fragments:
        return pa.repeat(pa.scalar("{}"), n)
    parts: list[object] = []
    for i, (name, fragment) in enumerate(zip(names, fragments, strict=True)):
        parts.append(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
        parts.append(fragment)
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")  # type: ignore[no-any-return]


def _json_list(offsets: pa.Array[Any], items: pa.Array[Any], valid_from: pa.Array[Any], large: bool) -> pa.Array[Any]:
    """Join each list's item fragments with commas; `offsets` index into `items`."""
    list_type: Any = pa.LargeListArray if large else pa.ListArray  # stubs want typed offsets
    mask = None
    if valid_from.null_count:
        mask = valid_from.is_null()
        if offsets.offset:  # Arrow refuses a validity mask over sliced offsets; rebase them
            offsets = pa.array(offsets.to_numpy(zero_copy_only=False))
    lists = list_type.from_arrays(offsets, items, mask=mask)
    return pc.binary_join(lists, ",")  # type: ignore[no-any-return]


def _json(arr: pa.Array[Any], where: str) -> pa.Array[Any]:
    """One JSON text per element (a string array with no nulls: null → "null").

    Built column-wise with Arrow kernels: numbers and booleans via casts, strings by
    escaping, lists/maps by joining their children's fragments, structs field by field.
    """
    arr = decoded(arr)
    t = arr.type
    n = len(arr)
    out: pa.Array[Any]
    if pa.types.is_null(t):
        return pa.repeat(pa.scalar("null"), n)
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_decimal(t):
        out = pc.cast(arr, pa.string())
    elif pa.types.is_floating(t):
        out = _json_floats(arr)
    elif is_string(t):
        out = _quote(arr)
    elif is_bytes_like(t):
        try:
            out = _quote(pc.cast(arr, pa.string()))
        except pa.ArrowInvalid as e:
            raise InvalidInputError(
                f"column {where!r} holds bytes that are not UTF-8 and cannot go into a JSON value; "
                "send it as value_column instead"
            ) from e
    elif pa.types.is_timestamp(t):
        # Tz-aware values are stored as UTC: print them naive and mark them "Z".
        text = pc.replace_substring(pc.cast(arr.view(pa.timestamp(t.unit)), pa.string()), " ", "T", max_replacements=1)
        out = _quote(pc.binary_join_element_wise(text, "Z", "") if t.tz is not None else text)
    elif pa.types.is_date(t) or pa.types.is_time(t):
        out = _quote(pc.cast(arr, pa.string()))
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        # `values` is the whole child, `offsets` already point into it for a sliced array.
        items = _json(arr.values, where)  # type: ignore[attr-defined]
        joined = _json_list(arr.offsets, items, arr, pa.types.is_large_list(t))  # type: ignore[attr-defined]
        out = pc.binary_join_element_wise("[", joined, "]", "")
    elif pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return _json(pc.cast(arr, pa.large_list(t.value_field)), where)
    elif pa.types.is_map(t):
        try:
            # JSON object keys are strings; other map keys become their text.
            key_text = _quote(pc.cast(arr.keys, pa.string()))  # type: ignore[attr-defined]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InvalidInputError(f"column {where!r} has map keys with no JSON text form") from e
        pairs = pc.binary_join_element_wise(key_text, ":", _json(arr.items, where), "")  # type: ignore[attr-defined]
        joined = _json_list(arr.offsets, pairs, arr, False)  # type: ignore[attr-defined]
        out = pc.binary_join_element_wise("{", joined, "}", "")
    elif pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        fields = [_json(arr.field(i), f"{where}.{names[i]}") for i in range(t.num_fields)]  # type: ignore[attr-defined]
        out = _json_object(names, fields, n)
        if arr.null_count:
            out = pc.if_else(arr.is_null(), pa.scalar(None, pa.string()), out)
    else:
        raise InvalidInputError(f"column {where!r} has type {t}, which has no JSON form; convert it first")
    return pc.fill_null(out, "null")  # type: ignore[no-any-return]


def json_rows(table: pa.Table) -> pa.Array[Any]:
    """Every row of `table` as one compact JSON object, column-wise."""
    fragments = []
    for name in table.column_names:
        fragments.append(_json(single_chunk(table.column(name)), name))
    try:
        rows = _json_object(table.column_names, fragments, table.num_rows)
    except (pa.ArrowInvalid, pa.ArrowCapacityError) as e:  # the text outgrew int32 offsets
        raise InvalidInputError(f"a batch may carry at most 2 GiB of values; split it ({e})") from e
    return to_binary(rows, "JSON values")
