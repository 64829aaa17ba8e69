"""Wrapped JSON lines (`{"v": <object>}` per value, storage/values/json_decode.py) with every
top-level member of each object blanked to spaces except the named ones, in one numpy pass over
the bytes (issue 13: MAP columns read from plain objects).

Why: an object-spelled MAP is read by letting pyarrow's JSON reader infer the object's keys
(storage/values/json_composite.py), and inference covers every field the reader is not told
about, so one undeclared field holding a number in one value and a string in another would fail
the whole run and send the decoder into bisection. The map columns are therefore read from a
copy that holds only them; the other columns, and the JSON syntax of the whole value, are read
from the original with unexpected fields ignored, so blanking never makes a bad value pass.

Blanking keeps offsets (same length, spaces are JSON whitespace): each unwanted member
`"key": value` becomes spaces, every member separator comma too, and a comma is written back in
the blank byte just before each kept member that follows another kept one. Only meaningful on
valid JSON; the caller only trusts the result when the original read succeeded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.schemas.wire import numpy_buffer

Bytes = np.ndarray[Any, np.dtype[np.uint8]]

_QUOTE, _BACKSLASH, _COLON, _COMMA, _NEWLINE, _SPACE = (ord(c) for c in '"\\:,\n ')


def _table(chars: bytes) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """A 256-entry lookup: table[data] marks the bytes in `chars` (cheaper than np.isin)."""
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


_OPENERS, _CLOSERS, _WHITESPACE = _table(b"{["), _table(b"}]"), _table(b" \t\r\n")


def keep_members(data: Bytes, names: tuple[str, ...]) -> Bytes:
    """A copy of `data` (wrapped lines) whose value objects keep only the members `names`."""
    n = len(data)
    out = data.copy()
    if n == 0:
        return out
    idx = np.arange(n, dtype=np.int64)
    # A quote is escaped after an odd run of backslashes.
    not_bs = np.where(data != _BACKSLASH, idx, -1)
    last_not_bs = np.maximum.accumulate(not_bs)
    run = np.zeros(n, np.int64)
    run[1:] = idx[:-1] - last_not_bs[:-1]
    quote = (data == _QUOTE) & (run % 2 == 0)
    inside = (np.cumsum(quote, dtype=np.int32) & 1).astype(bool) | quote  # string bytes and their quotes
    outside = ~inside
    opens = outside & _OPENERS[data]
    closes = outside & _CLOSERS[data]
    depth_after = np.cumsum(opens.astype(np.int32) - closes.astype(np.int32), dtype=np.int32)
    depth_at = depth_after - opens + closes  # the depth a byte sits at (the wrapper's is 1)
    quotes = np.flatnonzero(quote)
    starts, ends = quotes[0::2], quotes[1::2]
    if len(ends) < len(starts):
        return out  # an unterminated string: not JSON, the original read refuses it
    # Next non-whitespace byte at or after each position (n if none).
    solid = np.where(_WHITESPACE[data], n, idx)
    next_solid = np.minimum.accumulate(solid[::-1])[::-1]
    after = next_solid[np.minimum(ends + 1, n - 1)]
    is_key = (depth_at[starts] == 2) & (after < n) & (data[np.minimum(after, n - 1)] == _COLON)
    key_open, key_close = starts[is_key], ends[is_key]
    # A member ends at the next comma of its object, or at the object's closing brace.
    delimiter = np.flatnonzero(outside & (((data == _COMMA) & (depth_after == 2)) | (closes & (depth_after == 1))))
    at = np.searchsorted(delimiter, key_close)
    if len(key_open) == 0 or (at >= len(delimiter)).any():
        return out
    member_end = delimiter[at]
    kept = np.zeros(len(key_open), dtype=bool)
    lengths = key_close - key_open - 1
    for name in names:  # a few declared columns: one vectorised comparison each
        raw = np.frombuffer(name.encode(), np.uint8)
        same = lengths == len(raw)
        if len(raw) and same.any():
            rows = np.flatnonzero(same)
            window = data[key_open[rows, None] + 1 + np.arange(len(raw))]
            same[rows] = (window == raw).all(axis=1)
        kept |= same
    # Blank dropped members and every separating comma (a difference array, then one cumsum).
    marks = np.zeros(n + 1, np.int64)
    np.add.at(marks, key_open[~kept], 1)
    np.add.at(marks, member_end[~kept], -1)
    blank = np.cumsum(marks[:-1]) > 0
    blank |= outside & (data == _COMMA) & (depth_after == 2)
    out[blank] = _SPACE
    # A comma back before each kept member that follows another kept one on its line.
    line = np.cumsum(data == _NEWLINE)[key_open[kept]]
    follows = np.zeros(len(line), dtype=bool)
    follows[1:] = line[1:] == line[:-1]
    out[key_open[kept][follows] - 1] = _COMMA
    return out


Read = Callable[..., "pa.Table | None"]


def read_with_object_maps(
    document: pa.Buffer, fields: list[pa.Field[Any]], maps: set[str], rows: int, read: Read
) -> pa.Table | None:
    """`fields` (read types) of `rows` wrapped lines, those named in `maps` read with inference
    from a copy holding only them; `read(document, schema, rows, infer=…)` is the decoder's
    reader call. None if either read fails."""
    plain = read(document, pa.schema([f for f in fields if f.name not in maps]), rows)
    if plain is None:
        return None  # not JSON, or another column does not fit: the map copy is not trusted
    only = keep_members(np.frombuffer(memoryview(document), np.uint8), tuple(sorted(maps)))
    mapped = read(numpy_buffer(only), pa.schema([f for f in fields if f.name in maps]), rows, infer=True)
    if mapped is None:
        return None
    columns = [mapped.column(f.name) if f.name in maps else plain.column(f.name) for f in fields]
    return pa.Table.from_arrays(columns, names=[f.name for f in fields])
