"""The DataFusion SQL each window table-valued function becomes.

All window bounds are computed on int64 epoch milliseconds and cast back to a timestamp only
when a window column is projected. Window columns have the time column's type (unit and time
zone), except that a seconds column widens to milliseconds because window_time = end − 1 ms.
Helper columns are named `__sh_*` and removed with `* EXCLUDE (...)`, so a window call's output
is exactly the input's columns followed by window_start, window_end and window_time.

- TUMBLE: a projection over the input (no join, no unnest).
- HOP: each row's last window start, then `unnest` of the k = size/slide window indexes.
- CUMULATE: the row's size-aligned window start, then `unnest(range(...))` of only the window
  ends that lie after the row (a row is in every window whose end > ts).
- SESSION: LAG over (partition keys, ts) flags gaps > gap, a running MAX of the flagged
  timestamps is the session start, and MAX(ts) over the session + gap is its end.
HOP and CUMULATE take any relation with an int-ms column, so the pane rewrite (window_panes)
reuses them on pre-aggregated slide/step-sized panes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import pyarrow as pa

from streamhouse.sql.dialect import quote_ident

__all__ = [
    "Timestamp",
    "WindowSpec",
    "cumulate_expand_sql",
    "floor_ms_sql",
    "hop_expand_sql",
    "ms_of_sql",
    "session_sql",
    "tumble_sql",
    "window_sql",
    "window_type",
]

# Any unit, any zone (the stubs' bare TimestampType means microseconds without a zone).
Timestamp: TypeAlias = "pa.TimestampType[Any, Any]"

_UNIT_NAMES = {"ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}
_MS_TO_UNIT = {"ms": 1, "us": 1_000, "ns": 1_000_000}


@dataclass(frozen=True)
class WindowSpec:
    """One window call, validated: every duration in milliseconds, names as in the schema.

    `size_ms` is the window size (the gap for SESSION); `step_ms` is TUMBLE's size, HOP's
    slide or CUMULATE's step (the pane length); `offset_ms` is already reduced into
    [0, alignment) where alignment is the length window starts are multiples of.
    """

    kind: str
    source_sql: str
    time_column: str
    time_type: Timestamp
    schema: pa.Schema
    size_ms: int
    step_ms: int
    offset_ms: int
    keys: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


def _unit(time_type: Timestamp) -> str:
    return str(time_type.unit)


def window_type(time_type: Timestamp) -> Timestamp:
    """The window columns' type: the time column's, widened from seconds to milliseconds."""
    if _unit(time_type) != "s":
        return time_type
    tz: str | None = time_type.tz
    widened: Timestamp = pa.timestamp("ms") if tz is None else pa.timestamp("ms", tz=tz)
    return widened


def ms_of_sql(column_sql: str, time_type: Timestamp) -> str:
    """Epoch milliseconds of a timestamp column, floored (also before 1970) for finer units."""
    raw = f"CAST({column_sql} AS BIGINT)"
    unit = _unit(time_type)
    if unit == "s":
        return f"({raw} * 1000)"
    if unit == "ms":
        return raw
    per_ms = _MS_TO_UNIT[unit]
    # Truncating division is exact once the (positive) remainder is subtracted first.
    return f"(({raw} - ((({raw}) % {per_ms}) + {per_ms}) % {per_ms}) / {per_ms})"


def floor_ms_sql(ms_sql: str, length_ms: int, offset_ms: int) -> str:
    """Start of the [start, start + length) bucket holding `ms`, buckets aligned to the epoch
    plus offset. The remainder is made positive so times before 1970 floor, not truncate."""
    shifted = f"({ms_sql} - {offset_ms})" if offset_ms else ms_sql
    return f"({ms_sql} - ((({shifted} % {length_ms}) + {length_ms}) % {length_ms}))"


def _timestamp_sql(ms_sql: str, time_type: Timestamp) -> str:
    target = window_type(time_type)
    unit = _unit(target)
    scaled = ms_sql if unit == "ms" else f"({ms_sql}) * {_MS_TO_UNIT[unit]}"
    tz = "None" if target.tz is None else f'Some("{target.tz}")'
    return f"arrow_cast({scaled}, 'Timestamp({_UNIT_NAMES[unit]}, {tz})')"


def _window_columns(start_ms: str, end_ms: str, time_type: Timestamp) -> str:
    return (
        f"{_timestamp_sql(start_ms, time_type)} AS window_start, "
        f"{_timestamp_sql(end_ms, time_type)} AS window_end, "
        f"{_timestamp_sql(f'{end_ms} - 1', time_type)} AS window_time"
    )


def _rows_sql(spec: WindowSpec) -> str:
    """The input rows that take part: Flink drops rows whose time is NULL."""
    return f"SELECT * FROM {spec.source_sql} WHERE {quote_ident(spec.time_column)} IS NOT NULL"


def _ms_sql(spec: WindowSpec) -> str:
    return ms_of_sql(quote_ident(spec.time_column), spec.time_type)


def tumble_sql(spec: WindowSpec) -> str:
    start = floor_ms_sql(_ms_sql(spec), spec.size_ms, spec.offset_ms)
    columns = _window_columns(start, f"{start} + {spec.size_ms}", spec.time_type)
    return f"SELECT *, {columns} FROM {spec.source_sql} WHERE {quote_ident(spec.time_column)} IS NOT NULL"


def hop_expand_sql(relation_sql: str, ms_sql: str, spec: WindowSpec, *, aligned: bool = False) -> str:
    """Every row of `relation_sql` once per HOP window holding `ms_sql` (size/slide times).

    `aligned` says `ms_sql` is already a slide boundary (a pane start)."""
    slide, count = spec.step_ms, spec.size_ms // spec.step_ms
    last = ms_sql if aligned else floor_ms_sql(ms_sql, slide, spec.offset_ms)
    indexes = ", ".join(str(i) for i in range(count))
    start = f"(__sh_last - __sh_i * {slide})"
    columns = _window_columns(start, f"{start} + {spec.size_ms}", spec.time_type)
    return (
        f"SELECT * EXCLUDE (__sh_last, __sh_i), {columns} FROM ("
        f"SELECT *, {last} AS __sh_last, unnest(make_array({indexes})) AS __sh_i "
        f"FROM ({relation_sql}))"
    )


def cumulate_expand_sql(relation_sql: str, ms_sql: str, spec: WindowSpec) -> str:
    """Every row of `relation_sql` once per CUMULATE window whose end lies after `ms_sql`."""
    step, count = spec.step_ms, spec.size_ms // spec.step_ms
    start = floor_ms_sql(ms_sql, spec.size_ms, spec.offset_ms)
    # The first window ending after ms is number (ms - start) / step + 1 (both non-negative,
    # so truncating division floors); range() stops before count + 1.
    end = f"(__sh_ws + __sh_j * {step})"
    columns = _window_columns("__sh_ws", end, spec.time_type)
    return (
        f"SELECT * EXCLUDE (__sh_ws, __sh_j), {columns} FROM ("
        f"SELECT *, unnest(range(({ms_sql} - __sh_ws) / {step} + 1, {count + 1})) AS __sh_j "
        f"FROM (SELECT *, {start} AS __sh_ws FROM ({relation_sql})))"
    )


def session_sql(spec: WindowSpec) -> str:
    gap = spec.size_ms
    keys = ", ".join(quote_ident(k) for k in spec.keys)
    by_keys = f"PARTITION BY {keys} " if keys else ""
    ordered = f"OVER ({by_keys}ORDER BY __sh_ms)"
    session = f"OVER (PARTITION BY {keys + ', ' if keys else ''}__sh_ws)"
    # The ORDER BY frame is RANGE ... CURRENT ROW, so rows with equal times (peers) see the
    # same running MAX and always share a session, whatever order LAG saw them in.
    end = f"(MAX(__sh_ms) {session} + {gap})"
    columns = _window_columns("__sh_ws", end, spec.time_type)
    return (
        f"SELECT * EXCLUDE (__sh_ms, __sh_new, __sh_ws), {columns} FROM ("
        f"SELECT *, MAX(CASE WHEN __sh_new THEN __sh_ms END) {ordered} AS __sh_ws FROM ("
        f"SELECT *, COALESCE(__sh_ms - LAG(__sh_ms) {ordered} > {gap}, TRUE) AS __sh_new FROM ("
        f"SELECT *, {_ms_sql(spec)} AS __sh_ms FROM ({_rows_sql(spec)}))))"
    )


def window_sql(spec: WindowSpec) -> str:
    """The generic rewrite of one window call: a query with the call's output rows."""
    if spec.kind == "TUMBLE":
        return tumble_sql(spec)
    if spec.kind == "HOP":
        return hop_expand_sql(_rows_sql(spec), _ms_sql(spec), spec)
    if spec.kind == "CUMULATE":
        return cumulate_expand_sql(_rows_sql(spec), _ms_sql(spec), spec)
    return session_sql(spec)
