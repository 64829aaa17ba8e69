"""Turn what a user hands the SDK into RECORD_SCHEMA record batches.

Two ways in. `batch_from_values` takes Python objects (bytes, str, dicts…) and is the
convenient path: one `to_bytes` call per value. `batch_from_table` takes an Arrow table,
record batch or pandas DataFrame and is the fast path: keys, timestamps and values are
built column-wise with Arrow compute, with no Python step per row.

A timestamp of 0 means "the producer gave none": the agent stamps append time
(`stamp_missing_timestamps`), so missing and null timestamps become 0 here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import RECORD_SCHEMA, Headers, make_batch, null_headers, offsets_array

if TYPE_CHECKING:
    import pandas

# pyarrow-stubs type variadic compute kernels too narrowly (scalars vs arrays); the kernels
# themselves check their arguments at run time.
pc: Any = _pc

HeaderValue = bytes | str | None
HeadersInput = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None
TimestampInput = int | datetime | None

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# ---------------------------------------------------------------------------------------
# Python values


def _json_default(obj: object) -> object:
    """What `json.dumps` cannot encode itself; anything else is refused, not str()-ed,
    so a record never silently carries `"<object at 0x…>"`."""
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, Decimal | UUID):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes | bytearray | memoryview):
        try:
            return bytes(obj).decode()
        except UnicodeDecodeError:
            pass
    raise TypeError(type(obj).__name__)


def to_bytes(value: object) -> bytes | None:
    """The bytes a record carries for `value`.

    bytes-like as is, str as UTF-8, None as a null; anything else (dict, list, int, float,
    bool, datetime, Decimal, UUID, numpy scalars…) as compact JSON. NaN and infinity are
    refused: they are not JSON and most consumers' parsers reject them.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode()
    except TypeError as e:
        raise InvalidInputError(f"cannot turn a {type(value).__name__} into record bytes ({e} is not JSON)") from e
    except ValueError as e:  # NaN/infinity, circular references
        raise InvalidInputError(f"cannot turn a {type(value).__name__} into record bytes: {e}") from e


def _header_pairs(headers: HeadersInput) -> Headers | None:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, bytes | None]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
            raise InvalidInputError(f"a header must be a (str, bytes | str | None) pair, not {item!r}")
        key, value = item
        if value is not None and not isinstance(value, bytes | str):
            raise InvalidInputError(f"header {key!r} has a {type(value).__name__} value; use bytes, str or None")
        out.append((key, value.encode() if isinstance(value, str) else value))
    return out


def _datetime_ms(value: datetime) -> int:
    """Epoch milliseconds, floored (so pre-1970 instants stay in their millisecond)."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)  # naive datetimes are taken as UTC, never local time
    return (value - _EPOCH) // _MS


def _timestamp_ms(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        return _datetime_ms(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise InvalidInputError(f"a timestamp must be epoch milliseconds or a datetime, not {type(value).__name__}")


def _check_length(name: str, given: Sequence[object] | None, n: int) -> None:
    if isinstance(given, str | bytes):
        raise InvalidInputError(f"{name} must be a sequence with one entry per record, not one {type(given).__name__}")
    if given is not None and len(given) != n:
        raise InvalidInputError(f"{name} has {len(given)} entries for {n} values")


def batch_from_values(
    values: Sequence[object],
    *,
    keys: Sequence[object] | None = None,
    headers: Sequence[HeadersInput] | None = None,
    timestamps: Sequence[TimestampInput] | None = None,
) -> pa.RecordBatch:
    """One record batch from Python values (see `to_bytes` for how each becomes bytes).

    Keys convert like values (so an int key 42 is b"42", the same as an int key column
    in `batch_from_table`). Headers per record are a mapping or a list of pairs, with
    str values as UTF-8. Timestamps are epoch ms or datetimes (naive ones are UTC); None
    or no timestamps at all leaves the agent to stamp append time.
    """
    _check_length("values", values, len(values))
    n = len(values)
    _check_length("keys", keys, n)
    _check_length("headers", headers, n)
    _check_length("timestamps", timestamps, n)
    return make_batch(
        [v if type(v) is bytes else to_bytes(v) for v in values],
        keys=None if keys is None else [k if type(k) is bytes else to_bytes(k) for k in keys],
        headers=None if headers is None else [_header_pairs(h) for h in headers],
        timestamps=None if timestamps is None else [_timestamp_ms(t) for t in timestamps],
    )


# ---------------------------------------------------------------------------------------
# Tables


def as_table(data: pa.Table | pa.RecordBatch | pandas.DataFrame) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    import pandas  # here, not at module level: importing pandas costs more than this module

    if isinstance(data, pandas.DataFrame):
        try:
            # The index is not data the user asked to send; columns are.
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as e:
            raise InvalidInputError(f"cannot convert the DataFrame to Arrow: {e}") from e
    raise InvalidInputError(f"expected a pyarrow Table/RecordBatch or a pandas DataFrame, not {type(data).__name__}")


def _column(table: pa.Table, name: str, role: str) -> pa.Array[Any]:
    count = table.column_names.count(name)
    if count != 1:
        problem = "no" if count == 0 else f"{count}"
        raise InvalidInputError(f"{role} {name!r}: the table has {problem} columns of that name")
    return _decoded(_single_chunk(table.column(name)))


def _single_chunk(column: pa.ChunkedArray[Any]) -> pa.Array[Any]:
    # combine_chunks copies; a one-chunk column (the usual case) is used as is.
    if column.num_chunks == 1:
        return cast("pa.Array[Any]", column.chunk(0))
    return column.combine_chunks()


def _decoded(arr: pa.Array[Any]) -> pa.Array[Any]:
    """Plain values instead of dictionary codes (pandas categoricals) or extension wrappers."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()  # type: ignore[attr-defined]
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage  # type: ignore[attr-defined]
    return arr


def _is_bytes_like(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
        or _is_string(t)
    )


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _to_binary(arr: pa.Array[Any], role: str) -> pa.Array[Any]:
    try:
        return pc.cast(arr, pa.binary())  # type: ignore[no-any-return]
    except (pa.ArrowInvalid, pa.ArrowCapacityError) as e:  # offsets overflow past 2 GiB
        raise InvalidInputError(f"{role}: a batch may carry at most 2 GiB of keys or values; split it ({e})") from e


def _key_array(arr: pa.Array[Any], name: str) -> pa.Array[Any]:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), type=pa.binary())
    if pa.types.is_floating(t):
        # pandas turns an int column with missing values into floats; whole ones are ints again.
        try:
            arr = pc.cast(arr, pa.int64())
        except pa.ArrowInvalid as e:
            raise InvalidInputError(f"key column {name!r} holds non-integer floats; use strings or ints") from e
        t = arr.type
    if pa.types.is_integer(t):
        # Decimal text, the same bytes `batch_from_values` makes of an int key.
        return _to_binary(pc.cast(arr, pa.string()), f"key column {name!r}")
    if _is_bytes_like(t):
        return _to_binary(arr, f"key column {name!r}")
    raise InvalidInputError(f"key column {name!r} must be binary, string or integer, not {t}")


_TO_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def _timestamp_array(arr: pa.Array[Any], name: str) -> pa.Array[Any]:
    t = arr.type
    if pa.types.is_timestamp(t):
        mul, div = _TO_MS[t.unit]
    elif pa.types.is_date32(t):
        mul, div = 86_400_000, 1
    elif pa.types.is_date64(t) or pa.types.is_integer(t):
        mul, div = 1, 1
    elif pa.types.is_null(t):
        return pa.array(np.zeros(len(arr), dtype=np.int64), type=pa.int64())
    else:
        raise InvalidInputError(f"timestamp column {name!r} must be integer epoch ms or a timestamp, not {t}")
    if pa.types.is_date32(t):
        arr = arr.view(pa.int32())
    elif not pa.types.is_integer(t):
        # A timestamp's int64 is UTC whatever its tz, so tz-aware ones need no conversion.
        arr = arr.view(pa.int64())
    try:
        raw = pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy()
    except pa.ArrowInvalid as e:  # uint64 beyond int64
        raise InvalidInputError(f"timestamp column {name!r}: {e}") from e
    # Floor division, not Arrow's truncating cast, so pre-1970 instants keep their millisecond.
    ms = raw * mul // div
    return pa.array(ms, type=pa.int64())


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
    arr = _decoded(arr)
    t = arr.type
    n = len(arr)
    out: pa.Array[Any]
    if pa.types.is_null(t):
        return pa.repeat(pa.scalar("null"), n)
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_decimal(t):
        out = pc.cast(arr, pa.string())
    elif pa.types.is_floating(t):
        out = _json_floats(arr)
    elif _is_string(t):
        out = _quote(arr)
    elif _is_bytes_like(t):
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


def _json_rows(table: pa.Table) -> pa.Array[Any]:
    """Every row of `table` as one compact JSON object, column-wise."""
    fragments = []
    for name in table.column_names:
        fragments.append(_json(_single_chunk(table.column(name)), name))
    try:
        rows = _json_object(table.column_names, fragments, table.num_rows)
    except (pa.ArrowInvalid, pa.ArrowCapacityError) as e:  # the text outgrew int32 offsets
        raise InvalidInputError(f"a batch may carry at most 2 GiB of values; split it ({e})") from e
    return _to_binary(rows, "JSON values")


def batch_from_table(
    data: pa.Table | pa.RecordBatch | pandas.DataFrame,
    *,
    key_column: str | None = None,
    timestamp_column: str | None = None,
    value_column: str | None = None,
) -> pa.RecordBatch:
    """One record batch from a table, column-wise (no Python step per row).

    Values: `value_column` (binary or string) as the value bytes; without it a binary or
    string column named "value" is used; otherwise every row (key and timestamp columns
    included: events keep their fields, as SQL over the topic expects) becomes one compact
    JSON object (ints stay ints, floats keep
    every digit, NaN/null → null, timestamps → ISO 8601 with "Z" when tz-aware, nested
    lists/structs/maps nest). A DataFrame's index is not sent.

    Keys: `key_column` as bytes (strings as UTF-8, integers as decimal text); nulls stay
    null and are spread round-robin by the partitioner. Timestamps: `timestamp_column`,
    integer epoch ms or a timestamp of any unit/tz, nulls → 0 (the agent stamps append
    time). Without it every record gets append time.
    """
    table = as_table(data)
    n = table.num_rows
    keys = None if key_column is None else _key_array(_column(table, key_column, "key column"), key_column)
    timestamps = (
        None
        if timestamp_column is None
        else _timestamp_array(_column(table, timestamp_column, "timestamp column"), timestamp_column)
    )
    if (
        value_column is None
        and table.column_names.count("value") == 1
        and _is_bytes_like(_column(table, "value", "").type)
    ):
        value_column = "value"
    values: pa.Array[Any]
    if value_column is not None:
        value_arr = _column(table, value_column, "value column")
        if pa.types.is_null(value_arr.type):
            values = pa.nulls(n, type=pa.binary())
        elif _is_bytes_like(value_arr.type):
            values = _to_binary(value_arr, f"value column {value_column!r}")
        else:
            raise InvalidInputError(f"value column {value_column!r} must be binary or string, not {value_arr.type}")
    else:
        values = _json_rows(table)
    return pa.RecordBatch.from_arrays(
        [
            offsets_array(0, n),
            pa.array(np.zeros(n, dtype=np.int64), type=pa.int64()) if timestamps is None else timestamps,
            pa.nulls(n, type=pa.binary()) if keys is None else keys,
            values,
            null_headers(n),
        ],
        schema=RECORD_SCHEMA,
    )
