"""Decode a batch's JSON values into a topic's declared columns, whole buffers at a time
(DESIGN §7): values are joined into one newline-delimited document and parsed by pyarrow's
JSON reader. Only when that fails (a bad row somewhere) does a per-record pass find the bad
rows, which become nulls and are reported by index."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from streamhouse.storage.value_schema import TIMESTAMP, ValueSchema

_EMPTY_OBJECT = pa.scalar(b"{}", pa.binary())
_NEWLINE = pa.scalar(b"\n", pa.binary())


@dataclass(frozen=True)
class DecodedValues:
    table: pa.Table  # the declared columns (ValueSchema.arrow_schema), one row per value
    bad_rows: np.ndarray[Any, np.dtype[np.int64]]  # indices of values that did not match (all null)


def decode_json_values(values: pa.Array[Any] | pa.ChunkedArray[Any], schema: ValueSchema) -> DecodedValues:
    """Typed columns for every value; a null value is a row of nulls (a tombstone), not an error."""
    target = schema.arrow_schema()
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    n = len(array)
    if n == 0:
        return DecodedValues(target.empty_table(), np.zeros(0, dtype=np.int64))
    table = _fast(array, schema)
    if table is not None and table.num_rows == n:
        return DecodedValues(table, np.zeros(0, dtype=np.int64))
    return _slow(array, schema)


def _document(array: pa.Array[Any]) -> bytes:
    filled = pc.if_else(pc.is_null(array), _EMPTY_OBJECT, array.cast(pa.binary()))
    # A value pretty-printed over several lines would split into several rows: raw newlines
    # can only be whitespace between tokens in valid JSON, so a space is equivalent.
    if pc.any(pc.match_substring(filled, "\n")).as_py():
        filled = pc.replace_substring(filled, "\n", " ")
    return newline_terminated(filled)


def newline_terminated(values: pa.Array[Any]) -> bytes:
    """Binary values as one buffer of newline-terminated lines (JSONL), joined column-wise."""
    lines: Any = pc.binary_join_element_wise(cast(Any, values), _blank(len(values)), _NEWLINE)
    offsets = np.frombuffer(memoryview(lines.buffers()[1]), dtype=np.int32)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    data = lines.buffers()[2]
    return b"" if data is None else data.to_pybytes()[start:end]


def _blank(n: int) -> pa.Array[Any]:
    offsets = pa.array(np.zeros(n + 1, dtype=np.int32)).buffers()[1]
    return pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(b"")])


def _read(document: bytes, schema: pa.Schema) -> pa.Table:
    return pj.read_json(
        io.BytesIO(document),
        read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(document) + 1, 1 << 30))),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )


def _fast(array: pa.Array[Any], schema: ValueSchema) -> pa.Table | None:
    """The whole buffer in one read; None if any row is bad. TIMESTAMP columns accept ISO
    strings or epoch milliseconds: the reader takes one or the other per column, so strings are
    tried first and numbers second. Strings are read at microseconds (what pandas and the SDK
    write) and truncated to the column's milliseconds: read at milliseconds, a single string
    with more fractional digits would send the whole buffer down the per-row path."""
    document = _document(array)
    target = schema.arrow_schema()
    stamps = [f.name for f in target if f.type == TIMESTAMP]
    dates = [f.name for f in target if pa.types.is_date32(f.type)]
    attempts = [pa.timestamp("us")] + ([pa.int64()] if stamps else [])
    for stamp_type in attempts:
        read_schema = pa.schema(
            [
                pa.field(f.name, stamp_type if f.name in stamps else TIMESTAMP if f.name in dates else f.type)
                for f in target
            ]
        )
        try:
            table = _read(document, read_schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        columns = [_to_target(table.column(f.name), f.type) for f in target]
        return pa.Table.from_arrays(columns, schema=target)
    return None


def _to_target(column: pa.ChunkedArray[Any], target: pa.DataType) -> pa.ChunkedArray[Any]:
    if column.type == target:
        return column
    if pa.types.is_integer(column.type) and target == TIMESTAMP:
        return column.cast(pa.int64()).cast(TIMESTAMP)  # epoch milliseconds
    if pa.types.is_timestamp(column.type) and target == TIMESTAMP:
        return column.cast(target, safe=False)  # sub-millisecond digits are dropped
    return column.cast(target)


def _slow(array: pa.Array[Any], schema: ValueSchema) -> DecodedValues:
    """Per record, only after the fast path failed: find the bad rows, keep the good ones."""
    target = schema.arrow_schema()
    columns: dict[str, list[Any]] = {f.name: [] for f in target}
    bad: list[int] = []
    for i, raw in enumerate(array.to_pylist()):
        row = _row(raw, target)
        if row is None:
            bad.append(i)
            row = {}
        for f in target:
            columns[f.name].append(row.get(f.name))
    table = pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in target], schema=target)
    return DecodedValues(table, np.asarray(bad, dtype=np.int64))


def _row(raw: bytes | None, target: pa.Schema) -> dict[str, Any] | None:
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    out: dict[str, Any] = {}
    for f in target:
        value = doc.get(f.name)
        if value is None:
            continue
        converted = _convert(value, f.type)
        if converted is _BAD:
            return None
        out[f.name] = converted
    return out


_BAD = object()


def _convert(value: Any, target: pa.DataType) -> Any:
    """One JSON value as `target` wants it, by the same rules the fast path applies."""
    try:
        if target == TIMESTAMP:
            if isinstance(value, bool):
                return _BAD
            if isinstance(value, int):
                return datetime.fromtimestamp(value / 1000, tz=UTC).replace(tzinfo=None)
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
            return _BAD
        if pa.types.is_date32(target):
            return date.fromisoformat(value) if isinstance(value, str) else _BAD
        if pa.types.is_boolean(target):
            return value if isinstance(value, bool) else _BAD
        if pa.types.is_integer(target):
            return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
        if pa.types.is_floating(target):
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _BAD
        if pa.types.is_decimal(target):
            return Decimal(str(value)) if isinstance(value, int | float) and not isinstance(value, bool) else _BAD
        if pa.types.is_string(target):
            return value if isinstance(value, str) else _BAD
    except (ValueError, OverflowError, OSError):
        return _BAD
    return _BAD


# Segment footer key: how many values of the segment did not match the declared columns, and
# the first offsets among them, so a query can name one without re-reading the values.
JSON_ERRORS_KEY = "streamhouse.json_errors"
_REPORTED_OFFSETS = 10


def with_declared_columns(table: pa.Table, schema: ValueSchema) -> tuple[pa.Table, dict[str, str]]:
    """Record columns plus the declared columns decoded (segment names), and the footer
    metadata that records any values that did not match."""
    decoded = decode_json_values(table.column("value"), schema)
    out = table
    for column, field in zip(decoded.table.columns, schema.segment_schema(), strict=True):
        out = out.append_column(field, column)
    if len(decoded.bad_rows) == 0:
        return out, {}
    offsets = table.column("offset").take(decoded.bad_rows[:_REPORTED_OFFSETS]).to_pylist()
    return out, {JSON_ERRORS_KEY: json.dumps({"count": len(decoded.bad_rows), "offsets": offsets})}


def json_errors(metadata: dict[bytes, bytes] | None) -> tuple[int, list[int]]:
    """(count, first offsets) of values that did not match, from a segment's footer metadata."""
    raw = (metadata or {}).get(JSON_ERRORS_KEY.encode())
    if raw is None:
        return 0, []
    doc = json.loads(raw)
    return int(doc["count"]), [int(o) for o in doc["offsets"]]
