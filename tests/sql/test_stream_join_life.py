"""Lifetime joins (issue 17): Nexmark q9 and q4's per-auction query as continuous queries over
auctions × bids — each auction's result once the watermark passes its `expires` — equal the
ad-hoc queries and the pure-Python references; q4's outer AVG per category runs ad hoc over that
output, and q4 whole runs as one job emitting changes (an updating GROUP BY over the closed
auctions) whose folded changelog equals q4; q6's OVER per seller across auctions is refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import datafusion
import pyarrow as pa
import pytest

from streamhouse.datagen import nexmark
from streamhouse.datagen.nexmark_queries import Q4, Q4_PER_AUCTION, Q6, Q9
from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.explain import job_description
from streamhouse.sql.streaming.life_agg import LifeAggOperator, LifeAggPlan
from streamhouse.sql.streaming.life_join import LifeJoinOperator
from streamhouse.sql.streaming.life_over import LifeOverOperator, LifeOverPlan
from streamhouse.sql.streaming.life_plan import LifePlan
from tests import nexmark_reference

DATA = nexmark.generate(60_000, events_per_second=1000)
SCHEMAS = {"auction": DATA.auction.schema, "bid": DATA.bid.schema}


def plan(sql: str) -> LifePlan:
    found = plan_continuous(sql, SCHEMAS.__getitem__, lambda _: ("date_time", 500))
    assert isinstance(found, LifePlan)
    return found


def counts(tables: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(r.values()) for t in tables for r in t.to_pylist())


def adhoc(sql: str, **extra: pa.Table) -> pa.Table:
    ctx = datafusion.SessionContext()
    for name, table in {**DATA.tables(), **extra}.items():
        ctx.register_record_batches(name, [table.to_batches()])
    result: pa.Table = ctx.sql(sql).to_arrow_table()
    return result


Op = TypeVar("Op", bound=LifeJoinOperator)


def feed(
    make: Callable[[], Op], rounds: int, restore_at: int | None = None, size: Callable[[Op], int] | None = None
) -> tuple[pa.Table, int, Op]:
    """Both topics in `rounds` equal slices, then flush: the output, the peak of `size`
    (state rows by default) and the operator; at round `restore_at` the state moves into a
    fresh operator through a snapshot, as a restarted job's does."""
    op = make()
    outputs, peak = [], 0
    for r in range(rounds):
        if r == restore_at:
            again = make()
            again.restore(op.snapshot())
            op = again
        batches = {}
        for slot, table in enumerate((DATA.auction, DATA.bid)):
            low, high = r * table.num_rows // rounds, (r + 1) * table.num_rows // rounds
            batches[slot] = table.slice(low, high - low)
        step = op.process_round(batches, r)
        assert not step.late.num_rows
        outputs.append(step.output)
        peak = max(peak, op.state_rows if size is None else size(op))
    outputs.append(op.flush().output)
    return pa.concat_tables(outputs), peak, op


def run(found: LifePlan, rounds: int) -> tuple[pa.Table, int]:
    got, peak, op = feed(lambda: LifeJoinOperator(found, None), rounds)
    assert op.state_rows == 0
    return got, peak


@pytest.mark.parametrize("rounds", [6, 40])
def test_q9_continuous_equals_adhoc_and_reference(rounds: int) -> None:
    got, peak = run(plan(Q9), rounds)
    want = counts([adhoc(Q9)])
    assert sum(want.values()) > 100
    assert counts([got]) == want == Counter(nexmark_reference.q9(DATA))
    if rounds == 40:  # bids are dropped once no open auction's life can hold them
        assert peak < (DATA.auction.num_rows + DATA.bid.num_rows) // 2


def test_q4_per_auction_continuous_then_the_outer_avg_ad_hoc_equals_q4_and_reference() -> None:
    got, _ = run(plan(Q4_PER_AUCTION), 25)
    assert counts([got]) == counts([adhoc(Q4_PER_AUCTION)]) == Counter(nexmark_reference.q4_per_auction(DATA))
    outer = adhoc("SELECT category, AVG(final) AS avg_final FROM view GROUP BY category ORDER BY category", view=got)
    want = sorted(nexmark_reference.q4(DATA))
    for table in (adhoc(Q4), outer):
        assert table.column(0).to_pylist() == [category for category, _ in want]
        assert table.column(1).to_pylist() == pytest.approx([avg for _, avg in want], rel=1e-12)


def fold(changes: pa.Table, keys: int = 1) -> list[tuple[Any, ...]]:
    """Apply a changelog (`_op` first, then `keys` key columns): the result it describes."""
    latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    retracted = None  # a '+U' replaces the row the '-U' just before it retracted
    for row in changes.to_pylist():
        op, *values = row.values()
        key = tuple(values[:keys])
        if op == "-U":
            assert latest.pop(key) == tuple(values) and retracted is None
            retracted = key
            continue
        assert key not in latest and (op == "+U") == (retracted == key)
        latest[key], retracted = tuple(values), None
    assert retracted is None
    return sorted(latest.values())


def run_q4(sql: str, rounds: int, restore_at: int | None = None) -> pa.Table:
    found = plan_continuous(sql, SCHEMAS.__getitem__, lambda _: ("date_time", 500))
    assert isinstance(found, LifeAggPlan)
    got, _, op = feed(lambda: LifeAggOperator(found, None), rounds, restore_at)
    assert op.stats().state_rows == op.state_rows <= 5  # one row per category once auctions closed
    return got


@pytest.mark.parametrize(("rounds", "restore_at"), [(25, 11), (3, None)])
def test_q4_as_one_job_is_a_changelog_folding_to_q4_and_the_reference(rounds: int, restore_at: int | None) -> None:
    changes = run_q4(Q4, rounds, restore_at)
    assert changes.column_names == ["_op", "category", "avg_final"]
    assert set(changes.column("_op").to_pylist()) == {"+I", "-U", "+U"}
    want = sorted(nexmark_reference.q4(DATA))
    got = fold(changes)
    assert [k for k, _ in got] == [k for k, _ in want] == adhoc(Q4).column(0).to_pylist()
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-12)


def test_an_updating_grouping_of_every_supported_aggregate_equals_the_adhoc_query() -> None:
    inner = Q4_PER_AUCTION.replace("MAX(B.price) AS final", "MAX(B.price) AS final, MIN(B.bidder) AS low")
    sql = (
        f"SELECT Q.category, COUNT(*) AS n, COUNT(Q.final) AS c, SUM(Q.final) AS s, MIN(Q.low) AS lo, "
        f"MAX(Q.final) AS hi, AVG(Q.low) AS a FROM ({inner}) Q GROUP BY Q.category"
    )
    got = fold(run_q4(sql, 9))
    want = sorted(tuple(r.values()) for r in adhoc(sql).to_pylist())
    assert [row[:-1] for row in got] == [row[:-1] for row in want]
    assert [row[-1] for row in got] == pytest.approx([row[-1] for row in want], rel=1e-12)


@pytest.mark.parametrize(
    ("outer", "message"),
    [
        ("SELECT Q.category, AVG(Q.final) + 1 FROM ({}) Q GROUP BY Q.category", "selects its GROUP BY columns"),
        ("SELECT Q.category, AVG(Q.final) FROM ({}) Q WHERE Q.final > 1 GROUP BY Q.category", "takes no WHERE"),
        ("SELECT Q.category, AVG(Q.final) FROM ({}) Q GROUP BY Q.category HAVING COUNT(*) > 1", "takes no HAVING"),
        ("SELECT Q.category, COUNT(DISTINCT Q.final) FROM ({}) Q GROUP BY Q.category", "selects its GROUP BY"),
    ],
)
def test_unsupported_updating_groupings_are_refused_naming_why(outer: str, message: str) -> None:
    with pytest.raises(SqlError, match=message):
        plan_continuous(outer.format(Q4_PER_AUCTION), SCHEMAS.__getitem__, lambda _: ("date_time", 500))


def test_groupings_over_many_auctions_are_refused_naming_why() -> None:
    # Inside the lifetime join itself a GROUP BY over many auctions never closes.
    flat = Q4_PER_AUCTION.replace("GROUP BY A.id, A.category", "GROUP BY A.category").replace("A.id, ", "")
    with pytest.raises(SqlError, match=r"every GROUP BY must include auction\.id.*never closes"):
        plan_continuous(flat, SCHEMAS.__getitem__, lambda _: ("date_time", 500))


def run_q6(sql: str, rounds: int, restore_at: int | None = None) -> tuple[pa.Table, int, int]:
    found = plan_continuous(sql, SCHEMAS.__getitem__, lambda _: ("date_time", 500))
    assert isinstance(found, LifeOverPlan)
    got, peak, op = feed(lambda: LifeOverOperator(found, None), rounds, restore_at, lambda op: op.over_rows)
    return got, peak, op.over_rows


def fold_multiset(changes: pa.Table) -> Counter[tuple[Any, ...]]:
    """Apply a changelog without keys: '-U' removes one equal row, '+I' / '+U' add one."""
    rows: Counter[tuple[Any, ...]] = Counter()
    for op, *values in (tuple(r.values()) for r in changes.to_pylist()):
        if op == "-U":
            assert rows[tuple(values)] > 0
            rows[tuple(values)] -= 1
        else:
            rows[tuple(values)] += 1
    return +rows


@pytest.mark.parametrize(("rounds", "restore_at"), [(30, 13), (4, None)])
def test_q6_as_one_job_is_a_changelog_folding_to_q6_and_the_reference(rounds: int, restore_at: int | None) -> None:
    """q6's OVER across auctions: auctions close out of their last-bid order, so rows already
    emitted are retracted and replaced; the folded changelog is the ad-hoc q6."""
    changes, peak, final = run_q6(Q6, rounds, restore_at)
    assert changes.column_names == ["_op", "seller", "avg_final"]
    if rounds > 4:
        assert {"+I", "-U", "+U"} <= set(changes.column("_op").to_pylist())
    got = fold_multiset(changes)
    want = counts([adhoc(Q6)])
    assert sum(want.values()) > 1_000
    assert got == want
    mine, reference = sorted(got.elements()), sorted(nexmark_reference.q6(DATA))
    assert [seller for seller, _ in mine] == [seller for seller, _ in reference]
    assert [avg for _, avg in mine] == pytest.approx([avg for _, avg in reference], rel=1e-12)
    # Bounded: settled rows are dropped but the last ten per seller (the PRECEDING context).
    per_seller = Counter(seller for seller, _ in reference)
    assert final <= sum(min(10, n) for n in per_seller.values()) < len(reference)
    if rounds > 4:
        assert peak < len(reference)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ("ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW", "ROWS BETWEEN n PRECEDING AND CURRENT ROW"),
        ("RANGE BETWEEN 2 PRECEDING AND CURRENT ROW", "ROWS BETWEEN n PRECEDING AND CURRENT ROW"),
    ],
)
def test_unsupported_overs_across_auctions_are_refused_naming_why(over: str, message: str) -> None:
    with pytest.raises(SqlError, match=message):
        plan_continuous(
            Q6.replace("ROWS BETWEEN 10 PRECEDING AND CURRENT ROW", over),
            SCHEMAS.__getitem__,
            lambda _: ("date_time", 500),
        )
    unsettled = Q6.replace("MAX(B.date_time) AS date_time", "MIN(B.price) AS date_time")
    with pytest.raises(SqlError, match="no earlier than the auction row's start"):
        plan_continuous(unsettled, SCHEMAS.__getitem__, lambda _: ("date_time", 500))


def test_describe() -> None:
    text = job_description(plan(Q9))
    assert text.startswith("lifetime join: bid.date_time within [auction.date_time, auction.expires]")
