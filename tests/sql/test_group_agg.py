"""The updating GROUP BY kernel (sql/streaming/group_agg.py): fed batches in any split, its
changelog folds to the ad-hoc GROUP BY of all rows so far after every batch; a group whose
result did not change emits nothing; state is one row per group."""

from __future__ import annotations

import itertools
from typing import Any

import datafusion
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.sql.streaming.group_agg import GroupAggregate, GroupAggSpec, OuterAggregate

SCHEMA = pa.schema([("k", pa.string()), ("j", pa.int64()), ("v", pa.int64()), ("f", pa.float64())])
SQL = (
    "SELECT k, j, COUNT(*) AS n, COUNT(v) AS c, SUM(v) AS s, MIN(f) AS lo, MAX(v) AS hi, AVG(f) AS a "
    "FROM t GROUP BY k, j"
)
OUTPUTS: tuple[str | OuterAggregate, ...] = (
    "k",
    "j",
    OuterAggregate("COUNT_STAR", None, 2),
    OuterAggregate("COUNT", "v", 3),
    OuterAggregate("SUM", "v", 4),
    OuterAggregate("MIN", "f", 5),
    OuterAggregate("MAX", "v", 6),
    OuterAggregate("AVG", "f", 7),
)


def adhoc(table: pa.Table) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("t", [table.to_batches() or [pa.RecordBatch.from_pylist([], schema=SCHEMA)]])
    return {(r["k"], r["j"]): tuple(r.values()) for r in ctx.sql(SQL).to_arrow_table().to_pylist()}


def output_schema() -> pa.Schema:
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("t", [[pa.RecordBatch.from_pylist([], schema=SCHEMA)]])
    schema: pa.Schema = ctx.sql(SQL).schema()
    return schema


rows = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.sampled_from(["a", "b", None]),
            "j": st.integers(0, 2),
            "v": st.one_of(st.none(), st.integers(-5, 5)),
            "f": st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.25])),
        }
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rows, st.lists(st.integers(0, 40), max_size=4))
def test_the_changelog_folds_to_the_adhoc_grouping_after_every_batch(
    data: list[dict[str, Any]], cuts: list[int]
) -> None:
    table = pa.Table.from_pylist(data, schema=SCHEMA)
    group = GroupAggregate(GroupAggSpec(("k", "j"), OUTPUTS, output_schema()), SCHEMA)
    latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for low, high in itertools.pairwise(bounds):
        changes = group.add(table.slice(low, high - low))
        for change in changes.to_pylist():
            op, *values = change.values()
            key = (values[0], values[1])
            if op == "-U":
                assert latest.pop(key) == tuple(values)
            else:
                latest[key] = tuple(values)
        want = adhoc(table.slice(0, high))
        assert latest.keys() == want.keys()
        for key, value in want.items():
            got = latest[key]
            assert got[:-1] == value[:-1]
            assert (got[-1] is None) == (value[-1] is None)
            assert got[-1] is None or abs(got[-1] - value[-1]) < 1e-9
        assert group.groups == len(want)


def test_a_group_whose_result_did_not_change_emits_nothing() -> None:
    spec = GroupAggSpec(("k", "j"), ("k", "j", OuterAggregate("MAX", "v", 2)), pa.schema([*SCHEMA][:3]))
    group = GroupAggregate(spec, SCHEMA)
    first = group.add(pa.Table.from_pylist([{"k": "a", "j": 1, "v": 5, "f": None}], schema=SCHEMA))
    assert first.to_pylist() == [{"_op": "+I", "k": "a", "j": 1, "v": 5}]
    lower = group.add(pa.Table.from_pylist([{"k": "a", "j": 1, "v": 3, "f": None}], schema=SCHEMA))
    assert lower.num_rows == 0
    higher = group.add(pa.Table.from_pylist([{"k": "a", "j": 1, "v": 9, "f": None}], schema=SCHEMA))
    assert [r["_op"] for r in higher.to_pylist()] == ["-U", "+U"]
    assert [r["v"] for r in higher.to_pylist()] == [5, 9]
