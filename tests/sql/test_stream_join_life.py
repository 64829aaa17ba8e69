"""Lifetime joins (issue 17): Nexmark q9 and q4's per-auction query as continuous queries over
auctions × bids — each auction's result once the watermark passes its `expires` — equal the
ad-hoc queries and the pure-Python references; q4's outer AVG per category runs ad hoc over that
output; groupings over many auctions (q4 whole, q6's OVER per seller) are refused naming why."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datafusion
import pyarrow as pa
import pytest

from streamhouse.datagen import nexmark
from streamhouse.datagen.nexmark_queries import Q4, Q4_PER_AUCTION, Q9
from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.explain import job_description
from streamhouse.sql.streaming.life_join import LifeJoinOperator
from streamhouse.sql.streaming.life_plan import LifePlan
from tests import nexmark_reference

DATA = nexmark.generate(60_000, events_per_second=1000)
SCHEMAS = {"auction": DATA.auction.schema, "bid": DATA.bid.schema}

# Flink's q6 (snake_case): the average of a seller's last three final prices, an OVER window
# per seller across auctions.
Q6 = """\
SELECT Q.seller, AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
FROM (
    SELECT MAX(B.price) AS final, A.seller, MAX(B.date_time) AS date_time
    FROM auction AS A, bid AS B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.seller
) AS Q"""


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


def run(found: LifePlan, rounds: int) -> tuple[pa.Table, int]:
    op = LifeJoinOperator(found, None)
    tables = (DATA.auction, DATA.bid)
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
    outputs.append(op.flush().output)
    assert op.state_rows == 0
    return pa.concat_tables(outputs), peak


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


def test_groupings_over_many_auctions_are_refused_naming_why() -> None:
    with pytest.raises(SqlError, match=r"every GROUP BY must include auction\.id.*never closes"):
        plan_continuous(Q4, SCHEMAS.__getitem__, lambda _: ("date_time", 500))
    # q6's average of a seller's last three auctions is an OVER window across auctions.
    with pytest.raises(SqlError, match=r"every OVER \(PARTITION BY …\) must include auction\.id"):
        plan_continuous(Q6, SCHEMAS.__getitem__, lambda _: ("date_time", 500))


def test_describe() -> None:
    text = job_description(plan(Q9))
    assert text.startswith("lifetime join: bid.date_time within [auction.date_time, auction.expires]")
