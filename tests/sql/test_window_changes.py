"""`'emit' = 'changes'`: the window operator's update stream for open windows."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming.changes import diff
from streamhouse.sql.streaming.operator import StepResult, WindowOperator
from tests.sql.test_window_operator import IN_ORDER_QUERIES, adhoc, at, bids, in_order_streams, multiset, plan

TUMBLE_COUNT = (
    "SELECT window_start, window_end, k, count(*) AS n FROM "
    "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k"
)


def apply(changelog: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    """+I / +U add a row, -U removes one (it must be there)."""
    state: Counter[tuple[Any, ...]] = Counter()
    for table in changelog:
        for row in table.to_pylist():
            op = row.pop("_op")
            key = tuple(row.values())
            if op == "-U":
                assert state[key] > 0, f"retracting a row never emitted: {key}"
                state[key] -= 1
                if not state[key]:
                    del state[key]
            else:
                assert op in ("+I", "+U")
                state[key] += 1
    return state


def micro_batches() -> list[pa.Table]:
    rows = [(0, i, at(t), k, 1) for i, (t, k) in enumerate(
        [(0.5, "a"), (1, "b"), (2, "a"), (3, "a"), (4.5, "b"), (6, "a"), (7, "b"), (8, "a"), (11, "b"), (12, "a")]
    )]  # fmt: skip
    table = bids(rows)
    return [table.slice(a, b - a) for a, b in ((0, 2), (2, 4), (4, 6), (6, 8), (8, 10))]


def test_changelog_applied_equals_the_final_result() -> None:
    op = WindowOperator(plan(TUMBLE_COUNT), emit="changes")
    assert op.output_schema.names[0] == "_op"
    batches = micro_batches()
    steps = [op.process(0, batch, i) for i, batch in enumerate(batches)]
    steps.append(op.flush())
    assert apply([s.output for s in steps]) == multiset(adhoc(TUMBLE_COUNT, pa.concat_tables(batches)))
    # The first batch's window [0, 5) is open, yet its counts are out already.
    first = steps[0].output.to_pylist()
    assert steps[0].fired == 0 and sorted((r["_op"], r["k"], r["n"]) for r in first) == [("+I", "a", 1), ("+I", "b", 1)]
    second = steps[1].output.to_pylist()
    assert [(r["_op"], r["k"], r["n"]) for r in second] == [("-U", "a", 1), ("+U", "a", 3)]  # b is unchanged
    assert op.state_rows == 0 and not op._emitted


def test_a_firing_window_emits_only_what_changed_since_the_last_update() -> None:
    op = WindowOperator(plan(TUMBLE_COUNT, delay=0), emit="changes")
    op.process(0, bids([(0, 0, at(1), "a", 1), (0, 1, at(2), "a", 1)]), 0)
    fired = op.process(0, bids([(0, 2, at(9), "a", 1)]), 1)  # watermark 9 s: [0, 5) fires unchanged
    assert fired.fired == 1
    assert [(r["_op"], r["n"]) for r in fired.output.to_pylist()] == [("+I", 1)]  # only the new window [5, 10)


@pytest.mark.parametrize("name", sorted(set(IN_ORDER_QUERIES) - {"session", "session_two_keys"}))
@settings(max_examples=10, deadline=None)
@given(stream=in_order_streams(), delay=st.integers(2, 4000))
def test_changelog_in_any_split_applies_to_the_adhoc_query(
    name: str, stream: tuple[pa.Table, list[tuple[int, pa.Table]]], delay: int
) -> None:
    sql = IN_ORDER_QUERIES[name]
    everything, batches = stream
    op = WindowOperator(plan(sql, delay), partitions=tuple(sorted({p for p, _ in batches})), emit="changes")
    outputs = [op.process(p, batch, now).output for now, (p, batch) in enumerate(batches)]
    outputs.append(op.flush().output)
    assert apply(outputs) == multiset(adhoc(sql, everything))
    assert op.rows_out == sum(o.num_rows for o in outputs) and not op._emitted


def summary(step: StepResult) -> tuple[Any, ...]:
    """A step, its output as a multiset (DataFusion's output order varies between runs)."""
    return (sorted(multiset(step.output).items()), step.late.to_pylist(), step.fired, step.stats)


@pytest.mark.parametrize("cut", range(6))
def test_restored_operator_gives_the_same_changelog(cut: int) -> None:
    batches = micro_batches()
    whole = WindowOperator(plan(TUMBLE_COUNT), emit="changes")
    expected = [summary(whole.process(0, b, i)) for i, b in enumerate(batches)] + [summary(whole.flush())]
    first = WindowOperator(plan(TUMBLE_COUNT), emit="changes")
    got = [summary(first.process(0, b, i)) for i, b in enumerate(batches[:cut])]
    blob = first.snapshot()
    second = WindowOperator(plan(TUMBLE_COUNT), emit="changes")
    second.restore(blob)
    assert second._emitted.keys() == first._emitted.keys()
    got += [summary(second.process(0, b, i)) for i, b in enumerate(batches[cut:], start=cut)]
    got.append(summary(second.flush()))
    assert got == expected
    with pytest.raises(ValueError, match="different continuous query"):
        WindowOperator(plan(TUMBLE_COUNT)).restore(blob)  # a final-mode job is another job


def test_without_group_keys_rows_are_retracted_and_reinserted() -> None:
    old = pa.table({"x": [1, 2]})
    change = diff(old, pa.table({"x": [2, 3]}), None).to_pylist()
    assert change == [{"_op": "-U", "x": 1}, {"_op": "-U", "x": 2}, {"_op": "+U", "x": 2}, {"_op": "+U", "x": 3}]
    assert diff(old, pa.table({"x": [2, 1]}), None).num_rows == 0
    keyed = diff(pa.table({"k": ["a", "b"], "n": [1, 1]}), pa.table({"k": ["a", "c"], "n": [2, 1]}), ("k",))
    assert [(r["_op"], r["k"], r["n"]) for r in keyed.to_pylist()] == [
        ("-U", "b", 1), ("-U", "a", 1), ("+U", "a", 2), ("+I", "c", 1)
    ]  # fmt: skip


def test_stateless_plan_emits_inserts_and_sessions_are_refused() -> None:
    op = WindowOperator(plan("SELECT id FROM bids WHERE price > 0"), emit="changes")
    assert op.process(0, bids([(0, 0, at(1), "a", 5)]), 0).output.to_pylist() == [{"_op": "+I", "id": 0}]
    session = IN_ORDER_QUERIES["session"]
    with pytest.raises(SqlError, match="SESSION"):
        WindowOperator(plan(session), emit="changes")
    with pytest.raises(ValueError, match="emit mode"):
        WindowOperator(plan(TUMBLE_COUNT), emit="upsert")
