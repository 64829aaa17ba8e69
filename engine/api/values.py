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
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.api.json_rows import decoded, is_bytes_like, json_rows, single_chunk, to_binary
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
    return decoded(single_chunk(table.column(name)))


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
        return to_binary(pc.cast(arr, pa.string()), f"key column {name!r}")
    if is_bytes_like(t):
        return to_binary(arr, f"key column {name!r}")
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
        and is_bytes_like(_column(table, "value", "").type)
    ):
        value_column = "value"
    values: pa.Array[Any]
    if value_column is not None:
        value_arr = _column(table, value_column, "value column")
        if pa.types.is_null(value_arr.type):
            values = pa.nulls(n, type=pa.binary())
        elif is_bytes_like(value_arr.type):
            values = to_binary(value_arr, f"value column {value_column!r}")
        else:
            raise InvalidInputError(f"value column {value_column!r} must be binary or string, not {value_arr.type}")
    else:
        values = json_rows(table)
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
