"""Interval joins of two topics in a continuous query (issue 17): every matching pair once, equal to
the ad-hoc join, whatever the rounds; state bounded by the interval and the watermark over a
stream ten times longer than the interval; late rows named by topic; snapshot and restore."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datafusion
import numpy as np
import pyarrow as pa
import pytest

from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.explain import job_description
from streamhouse.sql.streaming.interval_join import IntervalJoinOperator
from streamhouse.sql.streaming.interval_plan import IntervalPlan

ORDERS = pa.schema([("oid", pa.int64()), ("customer", pa.int64()), ("ts", pa.timestamp("ms"))])
SHIPS = pa.schema([("order_id", pa.int64()), ("carrier", pa.string()), ("st", pa.timestamp("ms"))])
SCHEMAS = {"orders": ORDERS, "ships": SHIPS}
WATERMARKS = {"orders": ("ts", 1000), "ships": ("st", 500)}
# A shipment 2 s before to 10 s after its order (orders.ts − ships.st in [−10 s, 2 s]).
SQL = (
    "SELECT o.oid, o.customer, s.carrier FROM orders o JOIN ships s ON o.oid = s.order_id "
    "AND o.ts BETWEEN s.st - INTERVAL '10' SECOND AND s.st + INTERVAL '2' SECOND"
)
INTERVAL_MS = 12_000


def plan(sql: str = SQL) -> IntervalPlan:
    found = plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get)
    assert isinstance(found, IntervalPlan)
    return found


def stream(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """n orders, one a 10 ms tick, and a shipment of each from −3 s to +12 s around it (some
    outside the interval), shuffled within 400 ms so times are out of order within the delay."""
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.int64) * 10 + rng.integers(0, 400, n)
    orders = pa.table({"oid": np.arange(n), "customer": rng.integers(0, 7, n), "ts": ts}).cast(ORDERS)
    st = ts + rng.integers(-3000, 12_000, n)
    by_time = np.argsort(st, kind="stable")  # shipments arrive in their time order
    ships = pa.table({"order_id": by_time, "carrier": [f"c{i % 3}" for i in range(n)], "st": st[by_time]}).cast(SHIPS)
    return orders, ships


def counts(tables: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for t in tables for r in t.to_pylist())


def adhoc(orders: pa.Table, ships: pa.Table, sql: str = SQL) -> Counter[tuple[Any, ...]]:
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("orders", [orders.to_batches()])
    ctx.register_record_batches("ships", [ships.to_batches()])
    return counts([ctx.sql(sql).to_arrow_table()])


@pytest.mark.parametrize("rounds", [7, 40])
def test_each_pair_once_and_state_bounded_by_the_interval(rounds: int) -> None:
    # 12,000 orders over 120 s of event time: ten times the 12 s interval.
    orders, ships = stream(12_000, seed=rounds)
    op = IntervalJoinOperator(plan(), None)
    outputs, peak = [], 0
    for r in range(rounds):
        batches = {}
        for slot, table in enumerate((orders, ships)):
            low, high = r * table.num_rows // rounds, (r + 1) * table.num_rows // rounds
            batches[slot] = table.slice(low, high - low)
        step = op.process_round(batches, r)
        assert not step.late.num_rows
        outputs.append(step.output)
        peak = max(peak, op.state_rows)
    op.flush()
    want = adhoc(orders, ships)
    assert sum(want.values()) > 5_000 and counts(outputs) == want
    # Kept: orders for 10 s and shipments for 2 s past the watermark, plus the delays and the
    # rows of a round (200 rows a second of event time): about 1,900 rows at most here, of the
    # 24,000 the stream holds; without dropping, state would grow to all of them.
    assert 0 < peak <= 3_000
    assert op.state_rows == 0


def test_late_rows_are_dropped_and_name_their_topic() -> None:
    op = IntervalJoinOperator(plan(), None)
    orders = pa.table({"oid": [1, 2], "customer": [1, 1], "ts": [0, 30_000]}).cast(ORDERS)
    ships = pa.table({"order_id": [1], "carrier": ["x"], "st": [29_000]}).cast(SHIPS)
    step = op.process_round({0: orders, 1: ships}, 0)
    assert op.watermark == 28_500  # min(30 s − 1 s, 29 s − 0.5 s)
    late_ship = pa.table({"order_id": [2], "carrier": ["late"], "st": [20_000]}).cast(SHIPS)
    late_order = pa.table({"oid": [9], "customer": [9], "ts": [28_000]}).cast(ORDERS)
    step = op.process_round({0: late_order, 1: late_ship}, 1)
    assert not step.output.num_rows  # the late shipment of order 2 (in its interval) is not joined
    late = sorted(step.late.to_pylist(), key=lambda r: r["source_topic"])
    assert [(r["source_topic"], r["oid"], r["order_id"], r["carrier"]) for r in late] == [
        ("orders", 9, None, None),
        ("ships", None, 2, "late"),
    ]


def test_restore_continues_exactly_once() -> None:
    orders, ships = stream(3_000, seed=3)
    cut = [(i * 1000, (i + 1) * 1000) for i in range(3)]
    whole = IntervalJoinOperator(plan(), None)
    expected = [
        whole.process_round({0: orders.slice(a, b - a), 1: ships.slice(a, b - a)}, i).output
        for i, (a, b) in enumerate(cut)
    ]
    first = IntervalJoinOperator(plan(), None)
    got = [first.process_round({0: orders.slice(0, 1000), 1: ships.slice(0, 1000)}, 0).output]
    assert first.state_rows > 0
    again = IntervalJoinOperator(plan(), None)
    again.restore(first.snapshot())
    got += [
        again.process_round({0: orders.slice(a, b - a), 1: ships.slice(a, b - a)}, i + 1).output
        for i, (a, b) in enumerate(cut[1:])
    ]
    assert counts(got) == counts(expected) == adhoc(orders, ships)
    assert again.stats() == whole.stats()


def test_describe_and_refusals() -> None:
    text = job_description(plan())
    assert text.startswith("interval join: orders.ts - ships.st in [-10000, 2000] ms")
    assert "state orders: rows (oid, customer, ts) kept until the job watermark passes ts + 10000 ms" in text
    assert "state ships: rows (order_id, carrier, st) kept until the job watermark passes st + 2000 ms" in text
    with pytest.raises(SqlError, match="may only project and filter"):
        plan_continuous(
            "SELECT o.customer, count(*) AS n FROM orders o JOIN ships s ON o.oid = s.order_id "
            "AND o.ts BETWEEN s.st - INTERVAL '1' SECOND AND s.st + INTERVAL '1' SECOND GROUP BY o.customer",
            SCHEMAS.__getitem__,
            WATERMARKS.get,
        )
    with pytest.raises(SqlError, match="outer interval joins are not supported"):
        plan_continuous(SQL.replace(" JOIN ", " LEFT JOIN "), SCHEMAS.__getitem__, WATERMARKS.get)
    with pytest.raises(SqlError, match="no interval condition relates the two topics' watermark columns"):
        plan_continuous(
            "SELECT o.oid FROM orders o JOIN ships s ON o.oid = s.order_id "
            "AND o.oid BETWEEN s.order_id - 1 AND s.order_id + 1",
            SCHEMAS.__getitem__,
            WATERMARKS.get,
        )


def test_two_comparisons_bound_the_join_like_between() -> None:
    written = (
        "SELECT o.oid, o.customer, s.carrier FROM orders o JOIN ships s ON o.oid = s.order_id "
        "AND s.st - INTERVAL '10' SECOND <= o.ts AND o.ts < s.st + INTERVAL '2' SECOND"
    )
    found = plan(written)
    assert (found.low_ms, found.high_ms) == (plan().low_ms, plan().high_ms) == (-10_000, 2_000)
    orders, ships = stream(2_000, seed=5)
    op = IntervalJoinOperator(found, None)
    out = [op.process_round({0: orders.slice(i, 500), 1: ships.slice(i, 500)}, i).output for i in range(0, 2_000, 500)]
    assert counts(out) == adhoc(orders, ships, written)
