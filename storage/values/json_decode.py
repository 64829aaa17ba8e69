"""Decode a batch's JSON values into a topic's declared columns, whole buffers at a time
(docs/DESIGN.md §7). Each value is wrapped as one line `{"v": <value>}` and the lines are parsed by
pyarrow's JSON reader into a struct column: the wrapper makes every value exactly one row
(a blank value or two objects on one line cannot shift the rows that follow) and keeps the
reader off bare top-level `null` lines (pyarrow 26 crashes on a document starting with one).

One function decides what fits, for produce (check_values: refuse the batch) and for the
segment writer (decode_json_values: never fails; a value that does not fit is a row of nulls,
reported by index). Only when the whole buffer fails are ranges bisected, so the per-range
cost is paid only around the bad rows, never per record on the success path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from streamhouse.storage.errors import InvalidValueError
from streamhouse.storage.values.errors import explain
from streamhouse.storage.values.json_composite import ENTRIES, OBJECT_RUN_ROWS, OBJECTS, has_map, read_type, to_target
from streamhouse.storage.values.json_members import read_with_object_maps
from streamhouse.storage.values.schema import ValueSchema
from streamhouse.storage.values.types import TIMESTAMP

_OPEN = pa.scalar(b'{"v":', pa.binary())
_CLOSE = pa.scalar(b"}\n", pa.binary())
_NULL = pa.scalar(b"null", pa.binary())
_NEWLINE = pa.scalar(b"\n", pa.binary())
_NOTHING = pa.scalar(b"", pa.binary())
# Epoch milliseconds of 0001-01-01 and 9999-12-31T23:59:59.999: outside, Python, pandas and
# DataFusion cannot represent the timestamp (ISO strings are held to four-digit years already).
MIN_EPOCH_MS = -62_135_596_800_000
MAX_EPOCH_MS = 253_402_300_799_999
_FAILURES = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError, UnicodeDecodeError)


@dataclass(frozen=True)
class DecodedValues:
    table: pa.Table  # the declared columns (ValueSchema.arrow_schema), one row per value
    bad_rows: np.ndarray[Any, np.dtype[np.int64]]  # indices of values that did not match (all null)


@dataclass(frozen=True)
class _Lines:
    """The wrapped values as one buffer and the byte offset where each value's line starts."""

    data: pa.Buffer
    starts: np.ndarray[Any, np.dtype[np.int64]]  # n + 1 entries

    def slice(self, lo: int, hi: int) -> pa.Buffer:
        return self.data.slice(int(self.starts[lo]), int(self.starts[hi] - self.starts[lo]))


def decode_json_values(values: pa.Array[Any] | pa.ChunkedArray[Any], schema: ValueSchema) -> DecodedValues:
    """Typed columns for every value; a null value (or JSON `null`) is a row of nulls (a
    tombstone), not an error. Never raises for what the values hold."""
    target = schema.arrow_schema()
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    n = len(array)
    if n == 0:
        return DecodedValues(target.empty_table(), np.zeros(0, dtype=np.int64))
    lines = _lines(array)
    table = _decode(lines, 0, n, schema)
    if table is not None:
        return DecodedValues(table, np.zeros(0, dtype=np.int64))
    return _slow(array, lines, schema)


def check_values(values: pa.Array[Any], schema: ValueSchema) -> pa.Table | None:
    """Produce-time check: InvalidValueError naming the first value (index in the batch), the
    column and why, if any value does not fit the declared columns. Decodes exactly as the
    segment writer will, so a batch that passes here is always writable. Returns the declared
    columns when the batch decoded in one pass (the common case), so the writer can keep them
    instead of decoding the same values again at flush; None when it took several runs."""
    n = len(values)
    if n == 0:
        return None
    lines = _lines(values)
    table = _decode(lines, 0, n, schema)
    if table is not None:
        return table
    bad = _bad_ranges(lines, 0, n, schema, first_only=True)
    if not bad:
        return None  # e.g. ISO and epoch timestamps in one column: each run decodes on its own
    column, reason = _explain_one(values.slice(bad[0], 1), schema)
    raise InvalidValueError(bad[0], column, reason)


def _lines(array: pa.Array[Any]) -> _Lines:
    filled = pc.fill_null(array.cast(pa.binary()), _NULL)
    # A value pretty-printed over several lines would split its row: raw newlines can only be
    # whitespace between tokens in valid JSON, so a space is equivalent.
    for eol in ("\n", "\r"):
        if pc.any(pc.match_substring(filled, eol)).as_py():
            filled = pc.replace_substring(filled, eol, " ")
    wrapped: Any = pc.binary_join_element_wise(_OPEN, cast(Any, filled), _CLOSE, _NOTHING)
    offsets = np.frombuffer(memoryview(wrapped.buffers()[1]), dtype=np.int32)
    starts = offsets[wrapped.offset : wrapped.offset + len(wrapped) + 1].astype(np.int64)
    data = wrapped.buffers()[2] or pa.py_buffer(b"")
    return _Lines(data, starts)


def newline_terminated(values: pa.Array[Any]) -> bytes:
    """Binary values as one buffer of newline-terminated lines (JSONL), joined column-wise."""
    lines: Any = pc.binary_join_element_wise(cast(Any, values), _NEWLINE, _NOTHING)
    offsets = np.frombuffer(memoryview(lines.buffers()[1]), dtype=np.int32)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    data = lines.buffers()[2]
    return b"" if data is None else data.to_pybytes()[start:end]


def _decode(lines: _Lines, lo: int, hi: int, schema: ValueSchema) -> pa.Table | None:
    """Rows lo..hi in the declared columns, or None if any of them does not fit. MAP columns
    are tried as plain objects, then as arrays of key/value entries (json_composite.py); object
    runs are read at most OBJECT_RUN_ROWS values at a time."""
    if not any(has_map(c.arrow_type) for c in schema.columns):
        return _decode_spelled(lines, lo, hi, schema, ENTRIES)
    pieces: list[pa.Table] = []
    for a in range(lo, hi, OBJECT_RUN_ROWS):
        piece = _decode_spelled(lines, a, min(a + OBJECT_RUN_ROWS, hi), schema, OBJECTS)
        if piece is None:
            break
        pieces.append(piece)
    else:
        return pa.concat_tables(pieces) if len(pieces) != 1 else pieces[0]
    return _decode_spelled(lines, lo, hi, schema, ENTRIES)


def _decode_spelled(lines: _Lines, lo: int, hi: int, schema: ValueSchema, spelling: str) -> pa.Table | None:
    """Rows lo..hi in the declared columns, MAPs read in `spelling`, or None. TIMESTAMP
    columns take ISO strings or epoch milliseconds; the reader takes one kind per column, so
    strings are tried first (read at microseconds, what pandas and the SDK write, then cut
    to milliseconds) and, if that fails, each timestamp column's kind is found on its own."""
    document = lines.slice(lo, hi)
    stamps = [c.name for c in schema.columns if c.arrow_type == TIMESTAMP]
    kinds: dict[str, pa.DataType] = dict.fromkeys(stamps, pa.timestamp("us"))
    table = _attempt(document, schema, kinds, hi - lo, spelling)
    if table is not None or not stamps:
        return table
    table = _attempt(document, schema, dict.fromkeys(stamps, cast(pa.DataType, pa.int64())), hi - lo, spelling)
    if table is not None or len(stamps) == 1:
        return table
    for name in stamps:
        if _read(document, pa.schema([pa.field(name, pa.timestamp("us"))]), hi - lo) is None:
            if _read(document, pa.schema([pa.field(name, pa.int64())]), hi - lo) is None:
                return None  # bad values, or both kinds in this range: the caller bisects
            kinds[name] = pa.int64()
    if len(set(kinds.values())) == 1:
        return None  # one kind for all: tried above, the failure was elsewhere
    return _attempt(document, schema, kinds, hi - lo, spelling)


def _read(document: pa.Buffer, fields: pa.Schema, rows: int, *, infer: bool = False) -> pa.Table | None:
    """The reader on `document` with `fields` inside the wrapper; None unless it yields
    exactly `rows` rows. `infer`: the reader infers what `fields` leaves open (an object-spelled
    MAP's keys, storage/values/json_composite.py); fields not asked for are then dropped here."""
    try:
        table = pj.read_json(
            cast(Any, pa.BufferReader(document)),  # stubs omit NativeFile
            read_options=pj.ReadOptions(block_size=max(1 << 20, min(document.size + 1, 1 << 30))),
            parse_options=pj.ParseOptions(
                explicit_schema=pa.schema([pa.field("v", pa.struct(list(fields)))]),
                unexpected_field_behavior="infer" if infer else "ignore",
            ),
        )
    except _FAILURES:
        return None
    if table.num_rows != rows:
        return None
    if infer:
        try:
            wrapper = cast(pa.StructArray, table.column("v").combine_chunks())
            children = dict(zip([f.name for f in wrapper.type], wrapper.flatten(), strict=True))
        except (*_FAILURES, pa.ArrowIndexError):  # an inferred struct pyarrow built inconsistent
            return None
        return pa.Table.from_arrays([children[name] for name in fields.names], names=fields.names)
    return pa.Table.from_arrays(table.column("v").flatten(), names=fields.names)


def _attempt(
    document: pa.Buffer, schema: ValueSchema, kinds: dict[str, pa.DataType], rows: int, spelling: str
) -> pa.Table | None:
    target = schema.arrow_schema()
    read_as = [pa.field(f.name, _read_type(f, kinds, spelling)) for f in target]
    maps = {f.name for f in target if has_map(f.type)}
    if spelling == OBJECTS and maps:
        table = read_with_object_maps(document, read_as, maps, rows, _read)  # keys inferred: json_members.py
    else:
        table = _read(document, pa.schema(read_as), rows)
    if table is None:
        return None
    columns: list[pa.ChunkedArray[Any]] = []
    for f in target:
        try:
            column = _to_target(table.column(f.name), f.type)
        except _FAILURES:
            return None
        if column is None:
            return None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def _read_type(field: pa.Field[Any], kinds: dict[str, pa.DataType], spelling: str) -> pa.DataType:
    if field.name in kinds:
        return kinds[field.name]
    if pa.types.is_date32(field.type):
        return cast(pa.DataType, TIMESTAMP)  # the reader has no date conversion; midnight casts exactly
    if field.type == pa.float32():
        return cast(pa.DataType, pa.float64())  # read wide: a number too big for FLOAT is caught, not inf
    return read_type(field.type, spelling)


def _to_target(column: pa.ChunkedArray[Any], target: pa.DataType) -> pa.ChunkedArray[Any] | None:
    """The column as `target`, or None if a value is out of its range."""
    if pa.types.is_integer(column.type) and target == TIMESTAMP:
        low, high = pc.min_max(column).values()
        if low.is_valid and (low.as_py() < MIN_EPOCH_MS or high.as_py() > MAX_EPOCH_MS):
            return None
        return column.cast(TIMESTAMP)  # epoch milliseconds
    if pa.types.is_timestamp(column.type) and target == TIMESTAMP:
        stamps = column.cast(target, safe=False)  # sub-millisecond digits are dropped
        # A UTC offset can push year 9999 past the range: checked as epoch milliseconds.
        low, high = pc.min_max(stamps.cast(pa.int64())).values()
        if low.is_valid and (low.as_py() < MIN_EPOCH_MS or high.as_py() > MAX_EPOCH_MS):
            return None
        return stamps
    if column.type == pa.float64() and target == pa.float32():
        narrow = column.cast(target, safe=False)
        # A finite number that becomes infinite does not fit; NaN and ±Infinity stay as sent.
        if pc.any(pc.and_(pc.is_inf(narrow), pc.invert(pc.is_inf(column)))).as_py():
            return None
        return narrow
    if pa.types.is_string(target):
        column.validate(full=True)  # the reader does not check UTF-8; Parquet and SQL need it
    if pa.types.is_nested(target) or pa.types.is_binary(target):
        return pa.chunked_array([to_target(chunk, target) for chunk in column.chunks], cast(Any, target))
    return column if column.type == target else column.cast(target)


def _bad_ranges(lines: _Lines, lo: int, hi: int, schema: ValueSchema, *, first_only: bool) -> list[int]:
    """Indices of the values that do not decode even alone, left to right, by bisection:
    a range that decodes is all good, so the cost stays near the bad rows."""
    bad: list[int] = []
    stack = [(lo, hi)]
    while stack:
        a, b = stack.pop()
        # The whole range was tried by the caller; a part that decodes is all good.
        if (a > lo or b < hi) and _decode(lines, a, b, schema) is not None:
            continue
        if b - a == 1:
            bad.append(a)
            if first_only:
                break
            continue
        mid = (a + b) // 2
        stack += [(mid, b), (a, mid)]  # left half first
    return bad


def _slow(array: pa.Array[Any], lines: _Lines, schema: ValueSchema) -> DecodedValues:
    """The whole buffer failed. Values that are not even an object (or null) are told apart
    in one vectorised pass, so garbage costs no bisection; the rest are bisected."""
    n = len(array)
    maybe: Any = pc.fill_null(pc.match_substring_regex(cast(Any, array.cast(pa.binary())), _OBJECT_OR_NULL), True)
    keep = np.flatnonzero(np.asarray(maybe.to_numpy(zero_copy_only=False), dtype=bool))
    if len(keep) == n:
        return _bisected(lines, n, schema)
    if len(keep) == 0:
        rest = DecodedValues(schema.arrow_schema().empty_table(), np.zeros(0, dtype=np.int64))
    else:
        subset = _lines(array.take(cast(Any, pa.array(keep))))
        table = _decode(subset, 0, len(keep), schema)
        rest = _bisected(subset, len(keep), schema) if table is None else DecodedValues(table, np.zeros(0, np.int64))
    good = np.zeros(n, dtype=bool)
    good[keep] = True
    good[keep[rest.bad_rows]] = False
    # Row r takes row `position[r]` of the subset's table; masked (null) positions give nulls.
    position = np.full(n, -1, dtype=np.int64)
    position[keep] = np.arange(len(keep))
    table = rest.table.take(cast(Any, pa.array(position, mask=position < 0)))
    return DecodedValues(table, np.flatnonzero(~good).astype(np.int64))


# What every value the reader can take starts as: JSON whitespace, then an object or null.
_OBJECT_OR_NULL = r"^[ \t\r\n]*(\{|null[ \t\r\n]*$)"


def _bisected(lines: _Lines, n: int, schema: ValueSchema) -> DecodedValues:
    """Find the bad rows by bisection, decode the runs between them."""
    target = schema.arrow_schema()
    bad = _bad_ranges(lines, 0, n, schema, first_only=False)
    pieces: list[pa.Table] = []
    start = 0
    for row in [*bad, n]:
        if row > start:
            # A run of good rows may still mix timestamp kinds: bisect it the same way.
            pieces.append(_decode(lines, start, row, schema) or _decode_mixed(lines, start, row, schema))
        if row < n:
            pieces.append(pa.Table.from_arrays([pa.nulls(1, f.type) for f in target], schema=target))
        start = row + 1
    return DecodedValues(pa.concat_tables(pieces).combine_chunks(), np.asarray(bad, dtype=np.int64))


def _decode_mixed(lines: _Lines, lo: int, hi: int, schema: ValueSchema) -> pa.Table:
    """Good rows that only decode in smaller runs (timestamp kinds mixed in one column)."""
    table = _decode(lines, lo, hi, schema)
    if table is not None:
        return table
    if hi - lo <= 1:  # cannot happen (a good row decodes alone); nulls keep the writer total
        target = schema.arrow_schema()
        return pa.Table.from_arrays([pa.nulls(hi - lo, f.type) for f in target], schema=target)
    mid = (lo + hi) // 2
    return pa.concat_tables([_decode_mixed(lines, lo, mid, schema), _decode_mixed(lines, mid, hi, schema)])


# Segment footer key: how many values of the segment did not match the declared columns, the
# first offsets among them, and for those the column and why, so a query can name them
# without re-reading the values.
JSON_ERRORS_KEY = "streamhouse.json_errors"
_REPORTED_OFFSETS = 10


@dataclass(frozen=True)
class BadValue:
    """One value that did not fit, as a query error names it."""

    offset: int
    column: str | None  # None: the value as a whole (not JSON, not an object)
    reason: str

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "the value"
        return f"offset {self.offset}, {where}: {self.reason}"


def bad_values(
    values: pa.Array[Any], offsets: pa.Array[Any], rows: np.ndarray[Any, Any], schema: ValueSchema
) -> list[BadValue]:
    """The first few bad rows explained (one row at a time: only the reported ones)."""
    out = []
    for row in rows[:_REPORTED_OFFSETS].tolist():
        column, reason = _explain_one(values.slice(row, 1), schema)
        out.append(BadValue(int(offsets[row].as_py()), column, reason))
    return out


def _explain_one(one: pa.Array[Any], schema: ValueSchema) -> tuple[str | None, str]:
    lines = _lines(one)
    return explain(one[0].as_py(), schema, lambda s: _decode(lines, 0, 1, s) is not None)


def with_declared_columns(table: pa.Table, schema: ValueSchema) -> tuple[pa.Table, dict[str, str]]:
    """Record columns plus the declared columns decoded (segment names), and the footer
    metadata that records any values that did not match."""
    decoded = decode_json_values(table.column("value"), schema)
    out = table
    for column, field in zip(decoded.table.columns, schema.segment_schema(), strict=True):
        out = out.append_column(field, column)
    if len(decoded.bad_rows) == 0:
        return out, {}
    values = table.column("value").combine_chunks()
    offsets = table.column("offset").combine_chunks()
    first = bad_values(values, offsets, decoded.bad_rows, schema)
    doc = {
        "count": len(decoded.bad_rows),
        "offsets": [b.offset for b in first],
        "errors": [{"offset": b.offset, "column": b.column, "reason": b.reason} for b in first],
    }
    return out, {JSON_ERRORS_KEY: json.dumps(doc)}


def json_errors(metadata: dict[bytes, bytes] | None) -> tuple[int, list[int]]:
    """(count, first offsets) of values that did not match, from a segment's footer metadata."""
    raw = (metadata or {}).get(JSON_ERRORS_KEY.encode())
    if raw is None:
        return 0, []
    doc = json.loads(raw)
    return int(doc["count"]), [int(o) for o in doc["offsets"]]


def json_error_details(metadata: dict[bytes, bytes] | None) -> list[BadValue]:
    """The explained bad values a footer records (none in segments written before they were)."""
    raw = (metadata or {}).get(JSON_ERRORS_KEY.encode())
    if raw is None:
        return []
    doc = json.loads(raw)
    return [BadValue(int(e["offset"]), e["column"], str(e["reason"])) for e in doc.get("errors", [])]
