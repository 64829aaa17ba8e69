"""Sliced batches of ROW-in-ROW columns handed to DataFusion (sql/query/catalog.py partitioned):
DataFusion's Arrow panicked importing a struct with a nonzero offset whose child is a struct
("assertion failed: end <= self.len()"), so continuous queries over nested source columns died.
partitioned() copies such columns to offset 0; results equal the unsliced rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from datafusion import SessionContext

import streamhouse
from streamhouse.sql.query.catalog import partitioned, unsliced

INNER = pa.struct([("city", pa.string()), ("zip", pa.int64())])


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "trip": {"stop": {"city": f"c{i % 4}", "zip": None if i % 3 else i}, "n": i} if i % 7 else None,
            "stops": [{"stop": {"city": "x", "zip": i}}] * (i % 3),
            "sites": [("k", {"stop": {"city": "y", "zip": i}})],
        }
        for i in range(n)
    ]


SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("trip", pa.struct([("stop", INNER), ("n", pa.int64())])),
        ("stops", pa.list_(pa.struct([("stop", INNER)]))),
        ("sites", pa.map_(pa.string(), pa.struct([("stop", INNER)]))),
    ]
)


QUERIES = [
    "SELECT id, trip, stops, sites FROM t ORDER BY id",
    "SELECT count(*) AS c FROM t WHERE trip['stop']['zip'] IS NULL",
    "SELECT trip['stop']['city'] AS city, count(*) AS c FROM t GROUP BY 1 ORDER BY 1",
    "SELECT id, trip['stop'] AS stop FROM t WHERE trip['n'] > 5 ORDER BY id",
]


@pytest.mark.parametrize("pieces", [[(0, 37)], [(3, 10), (20, 17), (13, 7)]])
def test_sliced_row_in_row_batches_query_like_the_whole_rows(pieces: list[tuple[int, int]]) -> None:
    whole = pa.Table.from_pylist(_rows(37), schema=SCHEMA)
    # As scan_topic builds it: per-partition pieces (slices) concatenated, then split in four.
    table = pa.concat_tables([whole.slice(start, length) for start, length in pieces])
    fresh = pa.Table.from_pylist(table.to_pylist(), schema=SCHEMA).to_batches()[0]  # one unsliced batch
    for sql in QUERIES:
        ctx = SessionContext()
        ctx.register_record_batches("t", partitioned(table))  # panicked here before the copy
        reference = SessionContext()
        reference.register_record_batches("t", [[fresh]])
        assert ctx.sql(sql).to_arrow_table().to_pylist() == reference.sql(sql).to_arrow_table().to_pylist(), sql


def test_only_sliced_row_in_row_columns_are_copied() -> None:
    flat = pa.table({"s": pa.array([{"x": i} for i in range(8)]), "n": list(range(8))}).to_batches()[0]
    assert unsliced(flat.slice(3)) is not None and unsliced(flat.slice(3)).column(0).offset == 3  # not copied
    nested = pa.Table.from_pylist(_rows(8), schema=SCHEMA).to_batches()[0]
    assert unsliced(nested) is nested  # offset 0: nothing to copy
    copied = unsliced(nested.slice(3))
    assert copied.column("trip").offset == 0 and copied.column("stops") is not None
    assert copied.to_pylist() == nested.slice(3).to_pylist()


def test_an_ad_hoc_query_over_many_row_in_row_rows(tmp_path: Path) -> None:
    """Ad-hoc SQL hands DataFusion 1,024-row slices (sql/query/run.py): a JSON topic with a ROW
    in a ROW and 2,500 rows panicked there too."""
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC trips (id BIGINT, trip ROW<stop ROW<city STRING, zip BIGINT>, n BIGINT>)")
        rows = [{"id": i, "trip": {"stop": {"city": f"c{i % 4}", "zip": i}, "n": i}} for i in range(2_500)]
        sh.produce_batch("trips", [json.dumps(r).encode() for r in rows])
        got = sh.sql(
            "SELECT trip['stop']['city'] AS city, count(*) AS c, max(trip['stop']['zip']) AS z FROM trips "
            "GROUP BY 1 ORDER BY 1"
        )
        assert got.to_pylist() == [{"city": f"c{k}", "c": 625, "z": 2_496 + k} for k in range(4)]
        assert sh.sql("SELECT trip FROM trips WHERE id = 2000").to_pylist() == [{"trip": rows[2000]["trip"]}]
