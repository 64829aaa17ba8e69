"""Window table-valued functions as Daft SQL: one bound call (sql/windows/calls.py WindowSpec) →
a subquery yielding the input's columns plus window_start, window_end and window_time, with the
same semantics as the DataFusion rewrite (sql/windows/datafusion_sql.py): [start, end) windows
aligned to the epoch plus the offset, rows with a NULL time dropped, sessions that close when
consecutive events of a key are more than the gap apart.

What differs from the DataFusion text, and why:
- Daft has no `arrow_cast` and casts BIGINT only to zone-less timestamps, so a window bound is
  the row's own time moved by a duration: `t - (CAST(t AS TIMESTAMP(3)) - CAST(ms AS
  TIMESTAMP(3)))`. The duration keeps `t`'s unit and zone, so window columns have the time
  column's type (as on DataFusion) for naive and UTC columns alike.
- Daft has no `unnest(make_array(...))` nor VALUES in SQL: HOP and CUMULATE join the rows with
  the first k rows of a small registered table of window numbers (WINDOW_NUMBERS, 0 …
  MAX_WINDOWS_PER_ROW - 1; run.py registers it), then keep the windows that hold the row. One
  pass over the input (a UNION ALL of k projections measured 10x slower on q5).
- Daft's window frames have no peers (RANGE behaves like ROWS), so equal times of one key could
  land in different sessions: sessions are computed on the DISTINCT (keys, time) pairs and
  joined back to the rows. Rows with a NULL session key therefore have no session (dropped).
- Daft cannot order a window without PARTITION BY: a SESSION without keys partitions by a
  constant column.
"""

from __future__ import annotations

from streamhouse.daft_sql.errors import UnsupportedOnDaftError
from streamhouse.sql.windows.datafusion_sql import WindowSpec

__all__ = ["MAX_WINDOWS_PER_ROW", "WINDOW_NUMBERS", "daft_window_sql", "quoted"]

# HOP's size / slide and CUMULATE's size / step: how many copies of a row the join may make.
MAX_WINDOWS_PER_ROW = 1024
WINDOW_NUMBERS = "__sh_window_numbers"  # one BIGINT column __sh_i: 0 … MAX_WINDOWS_PER_ROW - 1


def quoted(name: str) -> str:
    """Daft matches identifiers as written: generated names are always quoted."""
    return '"' + name.replace('"', '""') + '"'


def _ms(time_sql: str) -> str:
    """Epoch ms of a timestamp of any unit or zone (the cast to a naive ms timestamp keeps the instant)."""
    return f"CAST(CAST({time_sql} AS TIMESTAMP(3)) AS BIGINT)"


def _at(time_sql: str, ms_sql: str) -> str:
    """A timestamp of `time_sql`'s type at epoch ms `ms_sql`."""
    return f"({time_sql} - (CAST({time_sql} AS TIMESTAMP(3)) - CAST({ms_sql} AS TIMESTAMP(3))))"


def _floor(ms_sql: str, length_ms: int, offset_ms: int) -> str:
    shifted = f"({ms_sql} - {offset_ms})" if offset_ms else ms_sql
    return f"({ms_sql} - ((({shifted} % {length_ms}) + {length_ms}) % {length_ms}))"


def _columns(time_sql: str, start_ms: str, end_ms: str) -> str:
    return (
        f"{_at(time_sql, start_ms)} AS window_start, {_at(time_sql, end_ms)} AS window_end, "
        f"{_at(time_sql, f'({end_ms} - 1)')} AS window_time"
    )


def _rows(spec: WindowSpec) -> str:
    """The input rows that take part, with their epoch ms as __sh_ms."""
    t = quoted(spec.time_column)
    return f"SELECT *, {_ms(t)} AS __sh_ms FROM {spec.source_sql} AS __sh_src WHERE {t} IS NOT NULL"


def _tumble(spec: WindowSpec) -> str:
    start = _floor("__sh_ms", spec.size_ms, spec.offset_ms)
    columns = _columns(quoted(spec.time_column), start, f"({start} + {spec.size_ms})")
    return f"SELECT * EXCLUDE (__sh_ms), {columns} FROM ({_rows(spec)}) AS __sh_rows"


def _count(spec: WindowSpec) -> int:
    count = -(-spec.size_ms // spec.step_ms)
    if count > MAX_WINDOWS_PER_ROW:
        raise UnsupportedOnDaftError(
            f"{spec.kind} with {count} windows per row (size / {'slide' if spec.kind == 'HOP' else 'step'}); "
            f"Daft copies each row once per window, at most {MAX_WINDOWS_PER_ROW} times: run it without "
            "--engine or use a larger slide/step",
            name=spec.kind,
        )
    return count


def _numbered(spec: WindowSpec, condition: str, start: str, end: str) -> str:
    """The input rows once per window number below the count, kept where `condition` holds."""
    numbers = f"(SELECT __sh_i FROM {WINDOW_NUMBERS} WHERE __sh_i < {_count(spec)}) AS __sh_w"
    columns = _columns(quoted(spec.time_column), start, end)
    return (
        f"SELECT * EXCLUDE (__sh_ms, __sh_i), {columns} FROM "
        f"(SELECT * FROM ({_rows(spec)}) AS __sh_rows, {numbers}) AS __sh_x WHERE {condition}"
    )


def _hop(spec: WindowSpec) -> str:
    last = _floor("__sh_ms", spec.step_ms, spec.offset_ms)
    start = f"({last} - __sh_i * {spec.step_ms})"
    end = f"({start} + {spec.size_ms})"
    return _numbered(spec, f"__sh_ms < {end}", start, end)


def _cumulate(spec: WindowSpec) -> str:
    start = _floor("__sh_ms", spec.size_ms, spec.offset_ms)
    end = f"({start} + (__sh_i + 1) * {spec.step_ms})"
    return _numbered(spec, f"__sh_ms < {end}", start, end)


def _session(spec: WindowSpec) -> str:
    t = quoted(spec.time_column)
    gap = spec.size_ms
    keys = [quoted(k) for k in spec.keys]
    by = ", ".join(keys or ["__sh_one"])
    key_list = "".join(f"{k}, " for k in keys)
    ordered = f"OVER (PARTITION BY {by} ORDER BY __sh_ms"
    distinct = f"SELECT DISTINCT {key_list or '1 AS __sh_one, '}__sh_ms FROM ({_rows(spec)}) AS __sh_r0"
    gapped = f"COALESCE(__sh_ms - LAG(__sh_ms) {ordered}) > {gap}, TRUE)"
    flagged = f"SELECT *, {gapped} AS __sh_new FROM ({distinct}) AS __sh_d"
    started = (
        f"SELECT *, MAX(CASE WHEN __sh_new THEN __sh_ms ELSE NULL END) {ordered} "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __sh_ws FROM ({flagged}) AS __sh_f"
    )
    sessions = (
        f"SELECT {key_list}__sh_ms, __sh_ws, "
        f"MAX(__sh_ms) OVER (PARTITION BY {by}, __sh_ws) + {gap} AS __sh_we FROM ({started}) AS __sh_s0"
    )
    on = " AND ".join([f"__sh_r.{k} = __sh_s.{k}" for k in keys] + ["__sh_r.__sh_ms = __sh_s.__sh_ms"])
    joined = (
        f"SELECT __sh_r.*, __sh_s.__sh_ws, __sh_s.__sh_we FROM ({_rows(spec)}) AS __sh_r "
        f"JOIN ({sessions}) AS __sh_s ON {on}"
    )
    columns = _columns(t, "__sh_ws", "__sh_we")
    return f"SELECT * EXCLUDE (__sh_ms, __sh_ws, __sh_we), {columns} FROM ({joined}) AS __sh_j"


def daft_window_sql(spec: WindowSpec) -> str:
    """The Daft SQL query that one window call becomes."""
    if spec.kind == "TUMBLE":
        return _tumble(spec)
    if spec.kind == "HOP":
        return _hop(spec)
    if spec.kind == "CUMULATE":
        return _cumulate(spec)
    return _session(spec)
