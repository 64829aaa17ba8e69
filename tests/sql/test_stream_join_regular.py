"""Regular (unbounded) joins of two topics under a state TTL (issue 17): refused without the
`state.ttl` option naming it, planned as an event-time interval [-TTL, +TTL] with it; Nexmark q3
continuous equals the ad-hoc query and the pure-Python reference; state bounded by the TTL."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import datafusion
import numpy as np
import pyarrow as pa
import pytest

from streamhouse.datagen import nexmark
from streamhouse.datagen.nexmark_queries import Q3
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.job_options import parse_job_options
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.explain import job_description
from streamhouse.sql.streaming.interval_join import IntervalJoinOperator
from streamhouse.sql.streaming.interval_plan import IntervalPlan
from tests import nexmark_reference

HOUR_MS = 3_600_000
A = pa.schema([("k", pa.int64()), ("x", pa.string()), ("ts", pa.timestamp("ms"))])
B = pa.schema([("key", pa.int64()), ("y", pa.string()), ("bt", pa.timestamp("ms"))])
SCHEMAS = {"a": A, "b": B}
WATERMARKS = {"a": ("ts", 200), "b": ("bt", 300)}
SQL = "SELECT a.k, a.x, b.y FROM a JOIN b ON a.k = b.key WHERE b.y <> 'skip'"


def counts(tables: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for t in tables for r in t.to_pylist())


def adhoc(tables: dict[str, pa.Table], sql: str) -> Counter[tuple[Any, ...]]:
    ctx = datafusion.SessionContext()
    for name, table in tables.items():
        ctx.register_record_batches(name, [table.to_batches()])
    return counts([ctx.sql(sql).to_arrow_table()])


def run(plan: IntervalPlan, tables: tuple[pa.Table, pa.Table], rounds: int) -> tuple[list[pa.Table], int]:
    op = IntervalJoinOperator(plan, None)
    outputs, peak = [], 0
    for r in range(rounds):
        batches = {}
        for slot, table in enumerate(tables):
            low, high = r * table.num_rows // rounds, (r + 1) * table.num_rows // rounds
            batches[slot] = table.slice(low, high - low)
        step = op.process_round(batches, r)
        assert not step.late.num_rows
        outputs.append(step.output)
        peak = max(peak, op.state_rows)
    op.flush()
    assert op.state_rows == 0
    return outputs, peak


def test_nexmark_q3_continuous_equals_adhoc_and_reference() -> None:
    data = nexmark.generate(100_000, events_per_second=1000)
    schemas = {"person": data.person.schema, "auction": data.auction.schema}
    plan = plan_continuous(Q3, schemas.__getitem__, lambda _: ("date_time", 500), state_ttl_ms=HOUR_MS)
    assert isinstance(plan, IntervalPlan) and plan.kind == "regular join" and plan.ttl_ms == HOUR_MS
    tables = {s.topic: getattr(data, s.topic) for s in plan.sides}
    outputs, _ = run(plan, (tables[plan.sides[0].topic], tables[plan.sides[1].topic]), rounds=30)
    got = counts(outputs)
    want = adhoc(data.tables(), Q3)
    assert sum(got.values()) > 20
    assert got == want == Counter(nexmark_reference.q3(data))


def two_streams(n: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """n rows a side over n × 10 ms, keys in 0..49, so partners lie up to seconds apart."""
    rng = np.random.default_rng(seed)
    ts = np.sort(np.arange(n, dtype=np.int64) * 10 + rng.integers(0, 150, n))
    a = pa.table({"k": rng.integers(0, 50, n), "x": [f"x{i}" for i in range(n)], "ts": ts}).cast(A)
    bt = np.sort(np.arange(n, dtype=np.int64) * 10 + rng.integers(0, 250, n))
    y = np.where(rng.random(n) < 0.1, "skip", "y")
    b = pa.table({"key": rng.integers(0, 50, n), "y": y, "bt": bt}).cast(B)
    return a, b


@pytest.mark.parametrize("rounds", [5, 37])
def test_the_ttl_is_event_time_so_the_output_is_deterministic_and_state_bounded(rounds: int) -> None:
    # 4,000 rows a side over 40 s of event time, TTL 2 s: twenty times the TTL.
    a, b = two_streams(4_000, seed=rounds)
    plan = plan_continuous(SQL, SCHEMAS.__getitem__, WATERMARKS.get, state_ttl_ms=2_000)
    assert isinstance(plan, IntervalPlan) and (plan.low_ms, plan.high_ms) == (-2_000, 2_000)
    outputs, peak = run(plan, (a, b), rounds)
    bounded = SQL.replace("WHERE", "AND a.ts BETWEEN b.bt - INTERVAL '2' SECOND AND b.bt + INTERVAL '2' SECOND WHERE")
    want = adhoc({"a": a, "b": b}, bounded)
    # Whatever the rounds: exactly the pairs at most the TTL apart (fewer than the whole join).
    assert counts(outputs) == want and sum(want.values()) < sum(adhoc({"a": a, "b": b}, SQL).values())
    # Kept: 2 s of rows a side past the watermark (~200 a side) plus a round's rows and the delays.
    assert 0 < peak <= 400 + 2 * 8_000 // rounds + 200


def test_refused_without_the_ttl_naming_the_option() -> None:
    with pytest.raises(SqlError, match=r"no interval condition .*WITH \('state\.ttl' = '1 h'\)"):
        plan_continuous(SQL, SCHEMAS.__getitem__, WATERMARKS.get)


def test_an_interval_join_keeps_its_own_bound_under_a_ttl() -> None:
    sql = SQL.replace("WHERE", "AND a.ts BETWEEN b.bt - INTERVAL '1' SECOND AND b.bt WHERE")
    plan = plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get, state_ttl_ms=HOUR_MS)
    assert isinstance(plan, IntervalPlan) and plan.kind == "interval join" and (plan.low_ms, plan.high_ms) == (-1000, 0)


def test_describe_names_the_ttl() -> None:
    plan = plan_continuous(SQL, SCHEMAS.__getitem__, WATERMARKS.get, state_ttl_ms=5_000)
    text = job_description(plan)
    assert text.startswith("regular join: state TTL 5000 ms of event time")
    assert "state a: rows (k, x, ts) kept until the job watermark passes ts + 5000 ms" in text


def test_the_option_parses_and_is_checked() -> None:
    assert parse_job_options({"state.ttl": "1 h"}).state_ttl_ms == HOUR_MS
    assert parse_job_options({"state.ttl": "90s"}).state_ttl_ms == 90_000
    assert parse_job_options({}).state_ttl_ms is None
    with pytest.raises(SqlError, match=re.escape("'state.ttl' must be a duration")):
        parse_job_options({"state.ttl": "forever"}, "v")
    with pytest.raises(SqlError, match=re.escape("'state.ttl' = '10ms' is out of range")):
        parse_job_options({"state.ttl": "10ms"}, "v")
    with pytest.raises(SqlError, match=re.escape("did you mean 'state.ttl'")):
        parse_job_options({"state.tll": "1h"}, "v")


def test_other_comparisons_in_on_do_not_stop_the_ttl() -> None:
    sql = "SELECT a.k, a.x, b.y FROM a JOIN b ON a.k = b.key AND a.k > 3 AND b.y <> 'skip'"
    plan = plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get, state_ttl_ms=2_000)
    assert isinstance(plan, IntervalPlan) and plan.kind == "regular join"
