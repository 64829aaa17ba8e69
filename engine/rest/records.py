"""Records between REST's JSON and Arrow, whole columns at a time (docs/DESIGN.md §2: the
record batch is the unit everything moves in).

Produce: the request's `values` / `keys` arrays become binary columns in one step each (JSON
values re-encoded compactly, STRING as UTF-8, BINARY through one base64 decode of the column,
base64_columns.py), timestamps one numpy array. Consume: a fetched RECORD_SCHEMA table becomes
one JSON text per record with Arrow kernels (engine/api/json_rows.py), then one joined body.

JSON values on the way out are embedded as stored when each one is JSON (checked with the C
decoder); a stored value that is not JSON comes back as a JSON string of its text, so one odd
record never blocks a consumer. BINARY returns the exact bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.api.json_rows import json_rows, single_chunk
from streamhouse.rest import base64_columns
from streamhouse.rest.models import DataType, Header, ProduceType
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.records.schema import HEADERS_TYPE, RECORD_SCHEMA, null_headers, offsets_array

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly
_ListArray: Any = pa.ListArray  # likewise from_arrays with a mask and a struct child

# Compact, UTF-8 and no NaN/Infinity: what `streamhouse produce` stores for a JSON line.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_decode_json = json.JSONDecoder(parse_constant=_refuse_constant).decode


# -- produce ------------------------------------------------------------------------------------
def column(items: Sequence[Any] | pa.Array[Any], kind: ProduceType, where: str) -> pa.Array[Any]:
    """A binary column from a request's array; JSON null (None) is a null record. A column
    already serialised (AVRO, avro_produce.py) is taken as it is."""
    if isinstance(items, pa.Array):
        return items
    if kind == "JSON":
        try:
            text = pa.array(list(map(_encode_json, items)), pa.string())
        except ValueError as e:  # NaN / Infinity cannot arrive from a JSON body, but a big int can
            raise InvalidInputError(f"{where}: {e}") from e
        # None encodes as "null": a null record, as Kafka's tombstone.
        text = pc.if_else(pc.equal(text, "null"), pa.scalar(None, pa.string()), text)
        return cast("pa.Array[Any]", text.cast(pa.binary()))
    try:
        strings = pa.array(items, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InvalidInputError(f"{where}: every item must be a string or null with type {kind}") from e
    except UnicodeEncodeError as e:
        raise InvalidInputError(f"{where}: {e}") from e
    if kind == "STRING":
        return strings.cast(pa.binary())
    return base64_columns.decode(strings, where)


def _headers(headers: Sequence[Sequence[Header] | None], n: int) -> pa.Array[Any]:
    if len(headers) != n:
        raise InvalidInputError(f"headers has {len(headers)} entries for {n} values")
    # Headers are rare and small: flattened once, their values decoded as one column.
    counts = np.fromiter((0 if hs is None else len(hs) for hs in headers), dtype=np.int32, count=n)
    flat = [h for hs in headers if hs for h in hs]
    names = pa.array([h.name for h in flat], pa.string())
    values = base64_columns.decode(pa.array([h.value for h in flat], pa.string()), "headers[].value")
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    items = pa.StructArray.from_arrays([names, values], fields=list(HEADERS_TYPE.value_type))
    mask = pa.array(np.fromiter((hs is None for hs in headers), dtype=np.bool_, count=n))
    return cast("pa.Array[Any]", _ListArray.from_arrays(pa.array(offsets), items, mask=mask, type=HEADERS_TYPE))


def produce_batch(
    values: Sequence[Any] | pa.Array[Any],
    keys: Sequence[Any] | pa.Array[Any] | None,
    timestamps: Sequence[int] | None,
    headers: Sequence[Sequence[Header] | None] | None,
    key_type: ProduceType,
    value_type: ProduceType,
) -> pa.RecordBatch:
    n = len(values)
    if keys is not None and len(keys) != n:
        raise InvalidInputError(f"keys has {len(keys)} entries for {n} values")
    if timestamps is not None and len(timestamps) != n:
        raise InvalidInputError(f"timestamps has {len(timestamps)} entries for {n} values")
    ts = np.zeros(n, np.int64) if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    if (ts < 0).any():
        raise InvalidInputError(f"timestamps[{int(np.argmax(ts < 0))}] is negative; give epoch milliseconds")
    return pa.RecordBatch.from_arrays(
        [
            offsets_array(0, n),
            pa.array(ts, pa.int64()),
            pa.nulls(n, pa.binary()) if keys is None else column(keys, key_type, "keys"),
            column(values, value_type, "values"),
            null_headers(n) if headers is None else _headers(headers, n),
        ],
        schema=RECORD_SCHEMA,
    )


# -- consume ------------------------------------------------------------------------------------
def _text(arr: pa.Array[Any], kind: DataType, where: str) -> pa.Array[Any]:
    """STRING / BINARY: a string column json_rows quotes; JSON: handled by `_raw_json`."""
    if kind == "BINARY":
        return base64_columns.encode(arr)
    try:
        return cast("pa.Array[Any]", pc.cast(arr, pa.string()))
    except pa.ArrowInvalid as e:
        raise InvalidInputError(f"a record's {where} is not UTF-8: ask for {where}_type=BINARY") from e


def _raw_json(arr: pa.Array[Any]) -> pa.Array[Any]:
    """JSON text fragments: a stored JSON value as is, anything else as a JSON string, null as null."""
    try:
        strings = pc.cast(arr, pa.string())
        list(map(_decode_json, pc.drop_null(strings).to_pylist()))  # the C decoder checks each; fast path
        fragments = strings
    except (ValueError, pa.ArrowInvalid):
        fragments = _mixed_json(arr)
    return cast("pa.Array[Any]", pc.fill_null(fragments, "null"))


def _mixed_json(arr: pa.Array[Any]) -> pa.Array[Any]:
    """The slow path for a batch holding a value that is not JSON (rare)."""
    out: list[str | None] = []
    for raw in arr.to_pylist():
        if raw is None:
            out.append(None)
            continue
        text = raw.decode("utf-8", "replace")
        try:
            _decode_json(text)
            out.append(text)
        except ValueError:
            out.append(_encode_json(text))
    return pa.array(out, pa.string())


def _json_headers(col: Any) -> pa.Array[Any]:
    child = col.values.flatten()  # the struct's fields, its own slicing applied
    items = pa.StructArray.from_arrays([child[0], base64_columns.encode(child[1])], names=["name", "value"])
    offsets = pa.array(np.asarray(col.offsets.to_numpy(zero_copy_only=False), dtype=np.int32))
    return cast("pa.Array[Any]", _ListArray.from_arrays(offsets, items, mask=col.is_null() if col.null_count else None))


def record_texts(
    records: pa.Table,
    partitions: pa.Array[Any] | int,
    key_type: DataType,
    value_type: DataType,
    value_json: pa.Array[Any] | None = None,
) -> pa.Array[Any]:
    """One JSON object text per record: partition_id, offset, timestamp, key, value, headers.
    `value_json`: the values already as JSON texts (decoded by the topic's schema, typed_consume.py)."""
    n = records.num_rows
    columns: dict[str, pa.Array[Any]] = {
        "partition_id": partitions if isinstance(partitions, pa.Array) else pa.array(np.full(n, partitions, np.int32)),
        "offset": single_chunk(records.column("offset")),
        "timestamp": single_chunk(records.column("timestamp")),
    }
    raw: list[tuple[str, pa.Array[Any]]] = []
    for name, kind in (("key", key_type), ("value", value_type)):
        arr = single_chunk(records.column(name))
        if name == "value" and value_json is not None:
            raw.append((name, value_json))
        elif kind == "JSON":
            raw.append((name, _raw_json(arr)))
        else:
            columns[name] = _text(arr, kind, name)
    columns["headers"] = _json_headers(single_chunk(records.column("headers")))
    rows: pa.Array[Any] = pc.cast(json_rows(pa.table(columns)), pa.string())
    if not raw:
        return rows
    parts: list[object] = [pc.utf8_slice_codeunits(rows, 0, -1)]  # drop the closing brace
    for name, fragments in raw:
        parts += [f',"{name}":', fragments]
    return cast("pa.Array[Any]", pc.binary_join_element_wise(*parts, "}", ""))


def join(texts: pa.Array[Any], separator: str = ",") -> str:
    """The texts joined into one string (one kernel call, no Python step per text)."""
    if len(texts) == 0:
        return ""
    lists = _ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts)
    return str(pc.binary_join(lists, separator)[0].as_py())
