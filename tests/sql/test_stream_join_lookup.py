"""Lookup (temporal) joins of two topics in a continuous query (issue 17): each probe row meets
the version in effect at its event time, whatever the rounds (against a plain-Python as-of
reference); the versioned side keeps one version per key below the watermark; late rows named
by topic; snapshot and restore; refusals."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.explain import job_description
from streamhouse.sql.streaming.lookup_join import LookupJoinOperator, as_of
from streamhouse.sql.streaming.lookup_plan import LookupPlan

ORDERS = pa.schema([("oid", pa.int64()), ("cur", pa.string()), ("amount", pa.int64()), ("ts", pa.timestamp("ms"))])
RATES = pa.schema([("code", pa.string()), ("rate", pa.int64()), ("rt", pa.timestamp("ms"))])
SCHEMAS = {"orders": ORDERS, "rates": RATES}
WATERMARKS = {"orders": ("ts", 300), "rates": ("rt", 100)}
SQL = (
    "SELECT o.oid, o.amount * r.rate AS total, r.rt FROM orders AS o "
    "JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.cur = r.code WHERE r.rate > 0"
)
CODES = ["EUR", "GBP", "JPY", "CHF", "USD"]


def plan(sql: str = SQL) -> LookupPlan:
    found = plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get)
    assert isinstance(found, LookupPlan)
    return found


def stream(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """n orders over n × 10 ms (times shuffled within 250 ms) and a new rate of some currency
    every ~50 ms (in time order), rate 0 now and then (filtered out by the WHERE)."""
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.int64) * 10 + rng.integers(0, 250, n)
    orders = pa.table(
        {"oid": np.arange(n), "cur": rng.choice([*CODES, "XXX"], n), "amount": rng.integers(1, 9, n), "ts": ts}
    ).cast(ORDERS)
    m = n // 5
    rt = np.sort(rng.integers(-2_000, n * 10, m))
    rates = pa.table({"code": rng.choice(CODES, m), "rate": rng.integers(0, 20, m), "rt": rt}).cast(RATES)
    return orders, rates


def reference(orders: pa.Table, rates: pa.Table) -> Counter[tuple[Any, ...]]:
    """The as-of join written out: per order, the latest rate of its currency at or before it."""
    versions = rates.to_pylist()
    out: Counter[tuple[Any, ...]] = Counter()
    for o in orders.to_pylist():
        best = None
        for r in versions:  # in arrival order: a tie goes to the later row
            if r["code"] == o["cur"] and r["rt"] <= o["ts"] and (best is None or r["rt"] >= best["rt"]):
                best = r
        if best is not None and best["rate"] > 0:
            out[(o["oid"], o["amount"] * best["rate"], best["rt"])] += 1
    return out


def counts(tables: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for t in tables for r in t.to_pylist())


@pytest.mark.parametrize("rounds", [4, 29])
def test_each_order_meets_the_rate_in_effect_at_its_time_and_state_stays_bounded(rounds: int) -> None:
    orders, rates = stream(3_000, seed=rounds)  # 30 s of orders, ~600 rates
    op = LookupJoinOperator(plan(), None)
    outputs, peak_rates = [], 0
    for r in range(rounds):
        batches = {}
        for slot, table in enumerate((orders, rates)):
            low, high = r * table.num_rows // rounds, (r + 1) * table.num_rows // rounds
            batches[slot] = table.slice(low, high - low)
        step = op.process_round(batches, r)
        assert not step.late.num_rows
        outputs.append(step.output)
        peak_rates = max(peak_rates, op.side_state_rows()[1])
    outputs.append(op.flush().output)
    want = reference(orders, rates)
    assert sum(want.values()) > 1_500 and counts(outputs) == want
    # One version per currency below the watermark plus those of the last round not yet
    # passed: far below the ~600 versions the stream holds.
    assert peak_rates <= len(CODES) + 600 // rounds + 20
    assert op.state_rows == 0


def test_as_of_picks_the_latest_version_at_or_before_and_ties_to_the_later_row() -> None:
    probe_keys = pa.array([1, 1, 2, 3, None, 1], pa.int64())
    probe_ms = np.array([5, 10, 10, 10, 10, 0], dtype=np.int64)
    build_keys = pa.array([1, 1, 1, 2, None], pa.int64())
    build_ms = np.array([3, 10, 10, 11, 1], dtype=np.int64)
    probe_at, build_at = as_of(probe_keys, probe_ms, build_keys, build_ms)
    assert dict(zip(probe_at.tolist(), build_at.tolist(), strict=True)) == {0: 0, 1: 2}


def test_a_probe_row_waits_for_the_watermark_and_late_rows_name_their_topic() -> None:
    op = LookupJoinOperator(plan(), None)
    rate = pa.table({"code": ["EUR"], "rate": [2], "rt": [1_000]}).cast(RATES)
    order = pa.table({"oid": [1], "cur": ["EUR"], "amount": [3], "ts": [5_000]}).cast(ORDERS)
    step = op.process_round({0: order, 1: rate}, 0)
    assert not step.output.num_rows  # the watermark (min(4.7 s, 0.9 s)) has not reached 5 s
    newer = pa.table({"code": ["EUR"], "rate": [5], "rt": [4_000]}).cast(RATES)
    step = op.process_round({0: order.slice(0, 0), 1: newer}, 1)
    assert not step.output.num_rows  # 3.9 s
    later = pa.table({"code": ["EUR"], "rate": [7], "rt": [9_000]}).cast(RATES)
    next_order = pa.table({"oid": [2], "cur": ["GBP"], "amount": [1], "ts": [6_000]}).cast(ORDERS)
    step = op.process_round({0: next_order, 1: later}, 2)  # the watermark: min(5.7 s, 8.9 s)
    assert step.output.to_pylist() == [{"oid": 1, "total": 15, "rt": pa.scalar(4_000, pa.timestamp("ms")).as_py()}]
    late_rate = pa.table({"code": ["EUR"], "rate": [9], "rt": [3_000]}).cast(RATES)
    step = op.process_round({0: order.slice(0, 0), 1: late_rate}, 3)
    assert [(r["source_topic"], r["code"], r["oid"]) for r in step.late.to_pylist()] == [("rates", "EUR", None)]
    assert op.side_state_rows() == (
        1,
        2,
    )  # order 2 waits for 6 s  # EUR's version at 4 s (the newest passed) and the one at 9 s


def test_restore_continues_exactly_once() -> None:
    orders, rates = stream(1_500, seed=3)
    cut = [(i * 500, (i + 1) * 500) for i in range(3)]
    rcut = [(i * 100, (i + 1) * 100) for i in range(3)]

    def batch(i: int) -> dict[int, pa.Table]:
        return {0: orders.slice(cut[i][0], 500), 1: rates.slice(rcut[i][0], 100)}

    first = LookupJoinOperator(plan(), None)
    got = [first.process_round(batch(0), 0).output]
    assert first.state_rows > 0
    again = LookupJoinOperator(plan(), None)
    again.restore(first.snapshot())
    got += [again.process_round(batch(i), i).output for i in (1, 2)]
    got.append(again.flush().output)
    assert counts(got) == reference(orders, rates)
    other = LookupJoinOperator(plan(SQL.replace("r.rate > 0", "r.rate > 1")), None)
    with pytest.raises(ValueError, match="different continuous query"):
        other.restore(first.snapshot())


def test_describe_and_refusals() -> None:
    text = job_description(plan())
    assert text.startswith("lookup join: each orders row meets the rates version in effect at its ts")
    assert "state rates: per key, the newest version at or before the job watermark" in text
    refusals = {
        "AS OF o.oid": "must name the probe topic's watermark column",
        "ON o.cur = r.code": None,
    }
    with pytest.raises(SqlError, match=refusals["AS OF o.oid"] or ""):
        plan_continuous(SQL.replace("AS OF o.ts", "AS OF o.oid"), SCHEMAS.__getitem__, WATERMARKS.get)
    with pytest.raises(SqlError, match="needs an equality"):
        plan_continuous(SQL.replace("o.cur = r.code", "o.amount > r.rate"), SCHEMAS.__getitem__, WATERMARKS.get)
    with pytest.raises(SqlError, match="outer lookup joins are not supported"):
        plan_continuous(SQL.replace("JOIN", "LEFT JOIN"), SCHEMAS.__getitem__, WATERMARKS.get)
    with pytest.raises(SqlError, match="SELECT may only project and filter"):
        plan_continuous(
            "SELECT o.cur, count(*) AS n FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r "
            "ON o.cur = r.code GROUP BY o.cur",
            SCHEMAS.__getitem__,
            WATERMARKS.get,
        )
