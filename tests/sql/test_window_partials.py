"""The partial-aggregate path of the window operator equals the row-keeping path.

Both run the same plan (the row path forced by `partials=False`) on the same micro-batches;
every step's output (as a multiset, floats rounded), its types, late rows, fired counts and
stats other than state_rows must agree.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.sql.streaming.operator import StepResult, WindowOperator
from streamhouse.sql.streaming.partials import partials_for
from streamhouse.sql.streaming.plan import JobPlan, plan_job

SCHEMA = pa.schema(
    [
        pa.field("_partition", pa.int32(), nullable=False),
        pa.field("id", pa.int64()),
        pa.field("k", pa.string()),
        pa.field("price", pa.int32()),
        pa.field("x", pa.float64()),
        pa.field("ts", pa.timestamp("ms")),
    ]
)

AGGS = (
    "count(*) AS n, count(price) AS np, sum(price) AS sp, min(price) AS lo, max(price) AS hi, avg(price) AS ap, "
    "sum(x) AS sx, avg(x) AS ax, min(x) AS mx, max(k) AS mk, count(x) AS nx"
)
WINDOWS = {
    "tumble": "TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND)",
    "tumble_offset": "TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '2' SECOND)",
    "hop": "HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)",
    "cumulate": "CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)",
}
SHAPES = {
    "keyed": "SELECT window_start, window_end, k, {aggs} FROM TABLE({window}) GROUP BY window_start, window_end, k",
    "unkeyed": "SELECT {aggs}, window_end, window_start FROM TABLE({window}) GROUP BY window_start, window_end",
    "where_time": "SELECT window_start, window_time, k, _partition, {aggs}, window_end FROM TABLE({window}) B "
    "WHERE B.price > 30 OR x IS NULL GROUP BY window_start, window_end, window_time, k, B._partition",
}


def plan(sql: str, delay: int = 1000) -> JobPlan:
    return plan_job(sql, {"bids": SCHEMA}.__getitem__, lambda _: ("ts", delay))


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) and math.isfinite(value) else value


def multiset(tables: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    found: Counter[tuple[Any, ...]] = Counter()
    for t in tables:
        for row in t.to_pylist():
            found[tuple(rounded(v) for v in row.values())] += 1
    return found


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, pa.Table]]:
    """In-order rows per partition (NULL times, keys and aggregated values included), cut
    into micro-batches interleaved across partitions."""
    pieces: list[list[pa.Table]] = []
    for p in range(draw(st.integers(1, 3))):
        start = draw(st.integers(-20_000, 20_000))
        gaps = draw(st.lists(st.integers(0, 2500), max_size=30))
        times: list[int | None] = list(itertools.accumulate(gaps, initial=start))[1:]
        rows = [
            {
                "_partition": p,
                "id": i * 10 + p,
                "k": draw(st.sampled_from(["a", "b", None])),
                "price": draw(st.one_of(st.none(), st.integers(-100, 100))),
                "x": draw(st.one_of(st.none(), st.floats(-1e3, 1e3, allow_nan=False))),
                "ts": None if draw(st.integers(0, 15)) == 0 else t,
            }
            for i, t in enumerate(times)
        ]
        rows = [{**r, "ts": None if r["ts"] is None else np.datetime64(r["ts"], "ms")} for r in rows]
        whole = table(rows)
        cuts = sorted(draw(st.sets(st.integers(1, max(len(rows) - 1, 1)), max_size=6)))
        bounds = [0, *cuts, len(rows)]
        pieces.append([whole.slice(a, b - a) for a, b in itertools.pairwise(bounds) if b > a])
    order = draw(st.permutations([p for p, mine in enumerate(pieces) for _ in mine]))
    cursors = [0] * len(pieces)
    batches = []
    for p in order:
        batches.append((p, pieces[p][cursors[p]]))
        cursors[p] += 1
    return batches


def same_step(a: StepResult, b: StepResult) -> None:
    assert a.output.schema.equals(b.output.schema)
    assert multiset([a.output]) == multiset([b.output])
    assert a.late.equals(b.late)
    assert a.fired == b.fired
    assert a.stats.__class__(**{**a.stats.__dict__, "state_rows": 0}) == a.stats.__class__(
        **{**b.stats.__dict__, "state_rows": 0}
    )


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("window", sorted(WINDOWS))
@settings(max_examples=15, deadline=None)
@given(batches=streams(), delay=st.integers(0, 4000), idle=st.sampled_from([None, 1500]))
def test_partials_equal_the_row_path(
    window: str, shape: str, batches: list[tuple[int, pa.Table]], delay: int, idle: int | None
) -> None:
    job = plan(SHAPES[shape].format(aggs=AGGS, window=WINDOWS[window]), delay)
    fast = WindowOperator(job, idle, partitions=(0, 1, 2))
    slow = WindowOperator(job, idle, partitions=(0, 1, 2), partials=False)
    assert fast._partials is not None and slow._partials is None
    for now, (partition, batch) in enumerate(batches):
        same_step(fast.process(partition, batch, now * 700), slow.process(partition, batch, now * 700))
        if now % 3 == 0:
            same_step(fast.advance(now * 700 + 350), slow.advance(now * 700 + 350))
    same_step(fast.flush(), slow.flush())
    assert fast.state_rows == 0


@pytest.mark.parametrize("window", sorted(WINDOWS))
@settings(max_examples=10, deadline=None)
@given(batches=streams(), cut=st.integers(0, 12), delay=st.integers(0, 3000))
def test_snapshot_mid_stream_continues_exactly(
    window: str, batches: list[tuple[int, pa.Table]], cut: int, delay: int
) -> None:
    job = plan(SHAPES["keyed"].format(aggs=AGGS, window=WINDOWS[window]), delay)
    whole = WindowOperator(job, 2000, partitions=(0, 1, 2))
    expected = [whole.process(p, b, n * 700) for n, (p, b) in enumerate(batches)] + [whole.flush()]
    first = WindowOperator(job, 2000, partitions=(0, 1, 2))
    got = [first.process(p, b, n * 700) for n, (p, b) in enumerate(batches[:cut])]
    blob = first.snapshot()
    second = WindowOperator(job, 2000)
    second.restore(blob)
    assert second.stats() == first.stats()
    got += [second.process(p, b, n * 700) for n, (p, b) in enumerate(batches[cut:], start=len(batches[:cut]))]
    got.append(second.flush())
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        same_step(a, b)
        assert a.stats == b.stats
    # A row-path snapshot is not a partial-path one (and vice versa).
    with pytest.raises(ValueError, match="different continuous query"):
        WindowOperator(job, 2000, partials=False).restore(blob)


def many_rows(n: int, keys: int, seconds: int) -> pa.Table:
    rng = np.random.default_rng(7)
    ts = np.sort(rng.integers(0, seconds * 1000, n))
    return pa.table(
        {
            "_partition": pa.array(np.zeros(n, np.int32)),
            "id": pa.array(np.arange(n)),
            "k": pa.array([f"k{i}" for i in rng.integers(0, keys, n)]),
            "price": pa.array(rng.integers(0, 1000, n).astype(np.int32)),
            "x": pa.array(rng.random(n)),
            "ts": pa.array(ts, pa.timestamp("ms")),
        },
        schema=SCHEMA,
    )


@pytest.mark.parametrize("window", ["tumble", "hop", "cumulate"])
def test_state_is_one_row_per_pane_and_key(window: str) -> None:
    rows = many_rows(100_000, 10, 100)
    job = plan(SHAPES["keyed"].format(aggs=AGGS, window=WINDOWS[window]))
    op = WindowOperator(job)
    peak = 0
    for start in range(0, rows.num_rows, 5000):
        op.process(0, rows.slice(start, 5000), 0)
        peak = max(peak, op.state_rows)
    # Panes of open windows (≤ 6 s of panes + 1 s delay, 2 s panes at most 5) × 10 keys.
    assert 0 < peak <= 6 * 10
    assert op.flush().output.num_rows > 0 and op.state_rows == 0


@pytest.mark.parametrize(
    ("sql", "qualifies"),
    [
        (SHAPES["keyed"].format(aggs=AGGS, window=WINDOWS["tumble"]), True),
        ("SELECT window_start, window_end, count(DISTINCT k) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), "
         "INTERVAL '5' SECOND)) GROUP BY window_start, window_end", False),
        ("SELECT window_start, window_end, sum(price + 1) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), "
         "INTERVAL '5' SECOND)) GROUP BY window_start, window_end", False),
        ("SELECT window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), "
         "INTERVAL '5' SECOND)) GROUP BY window_start, window_end HAVING count(*) > 1", False),
        ("SELECT window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), "
         "INTERVAL '5' SECOND)) GROUP BY window_start, window_end ORDER BY n", False),
        ("SELECT window_start, window_end, k, count(*) AS n FROM TABLE(SESSION(TABLE bids PARTITION BY k, "
         "DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k", False),
        ("SELECT window_start, window_end, count(*) AS n FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), "
         "INTERVAL '5' SECOND)) WHERE window_start > TIMESTAMP '2020-01-01' GROUP BY window_start, window_end", False),
        ("SELECT id, k, window_start FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND))", False),
    ],
)  # fmt: skip
def test_what_qualifies(sql: str, qualifies: bool) -> None:
    assert (partials_for(plan(sql)) is not None) is qualifies


def timing(n: int = 1_000_000) -> None:  # pragma: no cover - by hand: python -m tests.sql.test_window_partials
    rows = many_rows(n, 10, 600)
    job = plan(SHAPES["keyed"].format(aggs=AGGS, window=WINDOWS["tumble"]))
    for partials in (True, False):
        op = WindowOperator(job, partials=partials)
        began = time.perf_counter()
        for start in range(0, n, 10_000):
            op.process(0, rows.slice(start, 10_000), 0)
        op.flush()
        print(f"partials={partials}: {time.perf_counter() - began:.2f} s, {op.rows_out} rows out")


if __name__ == "__main__":
    timing()
