"""The rewrite to Daft's SQL (engine/daft_sql/dialect.py) and the physical → SQL column map
(layout.py), without any topic: each rewritten text is run by Daft over small in-memory tables
and compared with DataFusion running the original, and v1 and v2 segment files are read back
through the one column map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamhouse.daft_sql.dialect import to_daft_sql
from streamhouse.daft_sql.errors import UnsupportedOnDaftError
from streamhouse.daft_sql.layout import Layout, physical_columns, sql_expressions
from streamhouse.daft_sql.windows import MAX_WINDOWS_PER_ROW, WINDOW_NUMBERS
from streamhouse.sql.errors import SqlError
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


def _schema_of(name: str) -> pa.Schema:
    return TABLES[name].schema


def _datafusion(sql: str) -> list[dict[str, Any]]:
    ctx = datafusion.SessionContext()
    for name, table in TABLES.items():
        ctx.register_record_batches(name, [table.to_batches()])
    return ctx.sql(rewrite_windows(sql, _schema_of)).to_arrow_table().to_pylist()


def _daft(daft: Any, sql: str) -> list[dict[str, Any]]:
    query = to_daft_sql(sql, _schema_of)
    frames = {name: daft.from_arrow(table) for name, table in TABLES.items()}
    frames[WINDOW_NUMBERS] = daft.from_arrow(pa.table({"__sh_i": pa.array(range(MAX_WINDOWS_PER_ROW), pa.int64())}))
    rows: list[dict[str, Any]] = daft.sql(query.sql, register_globals=False, **frames).to_arrow().to_pylist()
    return rows


@pytest.mark.parametrize(
    "sql",
    [
        # 1. each window TVF, the columns' types kept (naive and UTC time columns)
        "SELECT k, window_start, window_end, window_time, count(*) AS n, sum(v) AS s FROM TABLE(TUMBLE(TABLE events,"
        " DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end, window_time",
        "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(_timestamp), INTERVAL '10' "
        "SECOND, INTERVAL '3' SECOND)) GROUP BY window_start",
        "SELECT window_start, window_end, sum(v) AS s FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND,"
        " INTERVAL '20' SECOND)) GROUP BY window_start, window_end",
        "SELECT window_end, sum(v) AS s FROM TABLE(CUMULATE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND, "
        "INTERVAL '40' SECOND)) GROUP BY window_end",
        "SELECT k, window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE events PARTITION BY k, "
        "DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY k, window_start, window_end",
        "SELECT window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE events, DESCRIPTOR(ts), "
        "INTERVAL '8' SECOND)) GROUP BY window_start, window_end",
        "WITH e AS (SELECT * FROM events WHERE v > 1) SELECT window_start, count(*) AS n "
        "FROM TABLE(TUMBLE(TABLE e, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start",
        # 2. identifiers fold; 3. non-equi inner join conditions, CROSS JOIN (4. MOD: DataFusion has none)
        "SELECT E.K, O.Lo FROM Events AS E JOIN other AS O ON E.k = O.k AND E.v > O.lo",
        "SELECT e.k, o.lo FROM events e CROSS JOIN other o WHERE e.v % 2 = 0",
        # 5. timestamp literals against naive and UTC columns; 6. INTERVAL literals
        "SELECT v FROM events WHERE ts >= TIMESTAMP '1970-01-01 00:00:01.5' AND _timestamp < '1970-01-01T00:00:40Z'",
        "SELECT v, ts + INTERVAL '1' MINUTE AS later FROM events WHERE ts BETWEEN '1970-01-01 00:00:00' AND "
        "TIMESTAMP '1970-01-01 00:00:10' - INTERVAL '1' SECOND",
    ],
)
def test_rewritten_query_gives_datafusions_rows(sql: str, ray_daft: Any) -> None:
    def key(row: dict[str, Any]) -> str:
        return repr(sorted(row.items()))

    got, expected = _daft(ray_daft, sql), _datafusion(sql)
    assert expected, "the case must return rows"
    assert sorted(got, key=key) == sorted(expected, key=key)


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("SELECT * FROM events e LEFT JOIN other o ON e.k = o.k AND e.v > o.lo", "LEFT JOIN with conditions"),
        ("SELECT sum(v) FILTER (WHERE k = 1) FROM events", "FILTER"),
        ("SELECT * FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '1' HOUR))", "3600"),
    ],
)
def test_refusals_name_what_daft_cannot_run(sql: str, what: str) -> None:
    with pytest.raises(UnsupportedOnDaftError, match=what) as caught:
        to_daft_sql(sql, _schema_of)
    assert "without --engine" in str(caught.value) and isinstance(caught.value, SqlError)


def test_mod_becomes_the_operator() -> None:
    assert to_daft_sql("SELECT MOD(v, 3) AS m FROM events", _schema_of).sql == "SELECT (v % 3) AS m FROM events"


def test_bad_window_calls_are_the_same_sql_errors() -> None:
    with pytest.raises(SqlError, match="nope"):
        to_daft_sql("SELECT * FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(nope), INTERVAL '1' SECOND))", _schema_of)


def test_v1_and_v2_segment_files_read_as_the_same_sql_table(tmp_path: Path, ray_daft: Any) -> None:
    daft = ray_daft
    sql_schema = pa.schema(
        [
            pa.field("_partition", pa.int32(), nullable=False),
            pa.field("_offset", pa.int64(), nullable=False),
            pa.field("_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("_key", pa.binary()),
            pa.field("amount", pa.float64()),
            pa.field("added", pa.string()),  # declared after the v1 file was written: nulls there
        ]
    )
    v1 = pa.table({"offset": [0, 1], "timestamp": [1_000, 2_000], "key": [b"a", None], "v.amount": [1.5, 2.5]})
    v2 = pa.table(
        {
            "_partition": pa.array([3, 3], pa.int32()),
            "_offset": [2, 3],
            "_timestamp": pa.array([3_000, 4_000], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "_key": [b"c", b"d"],
            "amount": [3.5, None],
            "added": ["x", "y"],
        }
    )
    frames = []
    for name, table, layout in (("v1", v1, Layout.V1), ("v2", v2, Layout.V2)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        columns = physical_columns(pq.read_schema(path), sql_schema, str(path))
        assert columns.layout is layout
        frames.append(daft.read_parquet(str(path)).select(*sql_expressions(columns, sql_schema, 3, sql_schema.names)))
    got = frames[0].concat(frames[1]).sort("_offset").to_arrow()
    assert got.schema.names == sql_schema.names
    assert got.column("_timestamp").cast(pa.int64()).to_pylist() == [1_000, 2_000, 3_000, 4_000]
    assert got.column("_partition").to_pylist() == [3, 3, 3, 3]
    assert got.column("amount").to_pylist() == [1.5, 2.5, 3.5, None]
    assert got.column("added").to_pylist() == [None, None, "x", "y"]
    assert got.column("_key").to_pylist() == [b"a", None, b"c", b"d"]
