"""Small in-memory tables for the dialect tests: Daft runs the rewritten text, DataFusion the
original (after our own window rewrite), so each rewrite is checked against the engine it
stands in for."""

from __future__ import annotations

from typing import Any

import datafusion
import pyarrow as pa

from streamhouse.daft_sql.dialect import to_daft_sql
from streamhouse.daft_sql.windows import MAX_WINDOWS_PER_ROW, WINDOW_NUMBERS
from streamhouse.sql.windows.rewrite import rewrite_windows

_MS = [0, 1_500, 1_500, 9_999, 10_000, 31_000, 64_000, None]
EVENTS = pa.table(
    {
        "k": pa.array([1, 1, 2, 2, 1, 2, 1, 1], pa.int64()),
        "v": pa.array([5, 7, 1, 3, 2, 8, 4, 6], pa.int64()),
        "ts": pa.array(_MS, pa.int64()).cast(pa.timestamp("ms")),
        "_timestamp": pa.array([m or 0 for m in _MS], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
    }
)
OTHER = pa.table({"k": pa.array([1, 2, 3], pa.int64()), "lo": pa.array([4, 0, 9], pa.int64())})
TABLES = {"events": EVENTS, "other": OTHER}


def schema_of(name: str) -> pa.Schema:
    return TABLES[name].schema


def datafusion_rows(sql: str) -> list[dict[str, Any]]:
    ctx = datafusion.SessionContext()
    for name, table in TABLES.items():
        ctx.register_record_batches(name, [table.to_batches()])
    return ctx.sql(rewrite_windows(sql, schema_of)).to_arrow_table().to_pylist()


def daft_rows(daft: Any, sql: str) -> list[dict[str, Any]]:
    query = to_daft_sql(sql, schema_of)
    frames = {name: daft.from_arrow(table) for name, table in TABLES.items()}
    frames[WINDOW_NUMBERS] = daft.from_arrow(pa.table({"__sh_i": pa.array(range(MAX_WINDOWS_PER_ROW), pa.int64())}))
    rows: list[dict[str, Any]] = daft.sql(query.sql, register_globals=False, **frames).to_arrow().to_pylist()
    return rows
