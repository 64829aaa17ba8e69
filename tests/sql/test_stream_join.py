"""Window joins of two topics in a continuous query (issue 17): Nexmark q8's closed results equal the
ad-hoc query and the pure-Python reference, the watermark is the minimum over both topics'
partitions, late rows name their topic, a restored operator continues exactly once, and joins
without a bound are refused naming the missing bound."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datafusion
import pyarrow as pa
import pytest

from streamhouse.datagen import nexmark
from streamhouse.datagen.nexmark_queries import Q8
from streamhouse.sql.errors import SqlError
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.join import SOURCE_COLUMN, JoinOperator, late_schema
from streamhouse.sql.streaming.join_plan import JoinPlan
from streamhouse.sql.streaming.plan import JobPlan
from streamhouse.sql.windows.rewrite import rewrite_windows
from tests import nexmark_reference

SECOND = 1000
T0 = 1_700_000_000_000  # a multiple of 10 s

CLICKS = pa.schema([pa.field("user_id", pa.int64()), pa.field("page", pa.string()), pa.field("ts", pa.timestamp("ms"))])
VIEWS = pa.schema([pa.field("uid", pa.int64()), pa.field("ad", pa.string()), pa.field("vt", pa.timestamp("ms"))])
SCHEMAS = {"clicks": CLICKS, "views": VIEWS}
WATERMARKS = {"clicks": ("ts", 1000), "views": ("vt", 2000)}

JOIN = (
    "SELECT c.window_start, c.window_end, c.user_id, c.page, v.ad "
    "FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) c "
    "JOIN TABLE(TUMBLE(TABLE views, DESCRIPTOR(vt), INTERVAL '10' SECOND)) v "
    "ON c.window_start = v.window_start AND c.window_end = v.window_end AND c.user_id = v.uid"
)


def join_plan(sql: str = JOIN) -> JoinPlan:
    plan = plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get)
    assert isinstance(plan, JoinPlan)
    return plan


def clicks(*rows: tuple[int, str, int]) -> pa.Table:
    return pa.table(
        {"user_id": [r[0] for r in rows], "page": [r[1] for r in rows], "ts": [T0 + r[2] for r in rows]},
        schema=pa.schema([CLICKS.field(0), CLICKS.field(1), pa.field("ts", pa.int64())]),
    ).cast(CLICKS)


def views(*rows: tuple[int, str, int]) -> pa.Table:
    return pa.table(
        {"uid": [r[0] for r in rows], "ad": [r[1] for r in rows], "vt": [T0 + r[2] for r in rows]},
        schema=pa.schema([VIEWS.field(0), VIEWS.field(1), pa.field("vt", pa.int64())]),
    ).cast(VIEWS)


def multiset(tables: list[pa.Table]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(row.values()) for table in tables for row in table.to_pylist())


def test_nexmark_q8_continuous_equals_adhoc_and_reference() -> None:
    data = nexmark.generate(100_000, events_per_second=1000)
    schemas = {"person": data.person.schema, "auction": data.auction.schema}
    plan = plan_continuous(Q8, schemas.__getitem__, lambda _: ("date_time", 500))
    assert isinstance(plan, JoinPlan)
    # Two partitions per topic: slots (side, partition); each partition gets every other row.
    op = JoinOperator(plan, None, slots=((0, 0), (0, 1), (1, 0), (1, 1)))
    side = {s.topic: i for i, s in enumerate(plan.sides)}
    tables = (data.person, data.auction)
    rounds = 40
    outputs = []
    for r in range(rounds):
        batches = {}
        for topic, table in zip(("person", "auction"), tables, strict=True):
            chunk = table.slice(
                r * table.num_rows // rounds, (r + 1) * table.num_rows // rounds - r * table.num_rows // rounds
            )
            for p in (0, 1):
                batches[side[topic] * 2 + p] = chunk.take(list(range(p, chunk.num_rows, 2)))
        step = op.process_round(batches, r)
        assert not step.late.num_rows
        outputs.append(step.output)
    fired_before_flush = op.stats().windows_fired
    outputs.append(op.flush().output)
    assert fired_before_flush > 0 and op.state_rows == 0
    got = multiset(outputs)
    ctx = datafusion.SessionContext()
    for name, table in data.tables().items():
        ctx.register_record_batches(name, [table.to_batches()])
    adhoc = multiset([ctx.sql(rewrite_windows(Q8, schemas.get)).to_arrow_table()])
    reference = Counter(nexmark_reference.q8(data))
    assert sum(got.values()) > 50
    assert got == adhoc
    assert set(got) == set(reference) and sum(got.values()) == sum(reference.values())


def test_the_watermark_is_the_minimum_over_both_topics() -> None:
    op = JoinOperator(join_plan(), None, slots=((0, 0), (1, 0), (1, 1)))
    # clicks run ahead to 30 s; views stay at 5 s on partition 0 and have nothing on 1.
    step = op.process_round({0: clicks((1, "a", 1 * SECOND), (1, "b", 30 * SECOND)), 1: views((1, "x", 5 * SECOND))}, 0)
    assert step.stats.watermark is None and step.fired == 0  # views partition 1 has shown nothing
    step = op.process_round({2: views((1, "y", 12 * SECOND))}, 1)
    # min(30 − 1, 5 − 2, 12 − 2) s: each topic's own delay, the minimum over its partitions.
    assert step.stats.watermark == T0 + 3 * SECOND
    assert op.slot_watermarks() == {0: T0 + 29 * SECOND, 1: T0 + 3 * SECOND, 2: T0 + 10 * SECOND}
    step = op.process_round({1: views((2, "z", 14 * SECOND))}, 2)
    assert step.stats.watermark == T0 + 10 * SECOND  # views p1 (12 s − 2 s) now holds it back
    assert step.fired == 1  # [0, 10 s) closed on both topics
    assert step.output.to_pylist() == [
        {
            "window_start": pa.scalar(T0, pa.timestamp("ms")).as_py(),
            "window_end": pa.scalar(T0 + 10 * SECOND, pa.timestamp("ms")).as_py(),
            "user_id": 1,
            "page": "a",
            "ad": "x",
        }
    ]


def test_idle_partitions_of_either_topic_stop_holding_the_watermark() -> None:
    op = JoinOperator(join_plan(), 1000, slots=((0, 0), (1, 0), (1, 1)))
    op.process_round({0: clicks((1, "a", 1 * SECOND), (1, "b", 21 * SECOND)), 1: views((1, "x", 2 * SECOND))}, 0)
    assert op.watermark is None  # views partition 1: no rows, not idle yet
    op.process_round({1: views((1, "x", 22 * SECOND))}, 500)
    assert op.watermark is None
    step = op.process_round({}, 1500)  # views p1 idle since 0 → min(20 s, 20 s)
    assert step.stats.watermark == T0 + 20 * SECOND and step.output.num_rows == 1


def test_late_rows_of_each_topic_name_their_source() -> None:
    plan = join_plan()
    op = JoinOperator(plan, None)
    op.process_round({0: clicks((1, "a", 1 * SECOND), (1, "b", 25 * SECOND)), 1: views((1, "x", 25 * SECOND))}, 0)
    assert op.watermark == T0 + 23 * SECOND  # [0, 10 s) and [10, 20 s) closed
    step = op.process_round({0: clicks((7, "late", 3 * SECOND)), 1: views((8, "late too", 15 * SECOND))}, 1)
    assert step.late.schema == late_schema(plan)
    late = sorted(step.late.to_pylist(), key=lambda r: r[SOURCE_COLUMN])
    assert [(r[SOURCE_COLUMN], r["user_id"], r["uid"], r["page"], r["ad"]) for r in late] == [
        ("clicks", 7, None, "late", None),
        ("views", None, 8, None, "late too"),
    ]
    assert op.stats().late_rows == 2 and op.state_rows == 2  # the late rows are not kept


def test_a_restored_operator_continues_exactly_once_mid_window() -> None:
    feed = [
        {0: clicks((1, "a", 1 * SECOND), (2, "b", 4 * SECOND)), 1: views((1, "x", 2 * SECOND))},
        {0: clicks((1, "c", 12 * SECOND)), 1: views((2, "y", 8 * SECOND), (1, "z", 13 * SECOND))},
        {0: clicks((1, "d", 16 * SECOND), (3, "e", 23 * SECOND)), 1: views((3, "w", 21 * SECOND))},
        {0: clicks((3, "f", 35 * SECOND)), 1: views((9, "q", 40 * SECOND))},
    ]
    whole = JoinOperator(join_plan(), None)
    expected = [whole.process_round(batches, i).output for i, batches in enumerate(feed)]
    expected.append(whole.flush().output)
    first = JoinOperator(join_plan(), None)
    got = [first.process_round(batches, i).output for i, batches in enumerate(feed[:2])]
    assert first.state_rows > 0  # the checkpoint is taken with windows open
    blob = first.snapshot()
    restarted = JoinOperator(join_plan(), None)
    restarted.restore(blob)
    assert restarted.side_state_rows() == first.side_state_rows() and restarted.watermark == first.watermark
    got += [restarted.process_round(batches, i + 2).output for i, batches in enumerate(feed[2:])]
    got.append(restarted.flush().output)
    assert multiset(got) == multiset(expected) and sum(multiset(got).values()) == 5
    assert restarted.stats() == whole.stats()
    with pytest.raises(ValueError, match="different continuous query"):
        JoinOperator(join_plan(JOIN + " AND c.page <> v.ad"), None).restore(blob)


@pytest.mark.parametrize(
    ("sql", "missing"),
    [
        (
            "SELECT c.user_id, v.ad FROM clicks c JOIN views v ON c.user_id = v.uid",
            "topic 'clicks' is read without a window",
        ),
        (
            "SELECT c.user_id, v.ad FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) c "
            "JOIN views v ON c.user_id = v.uid",
            "topic 'views' is read without a window",
        ),
        (
            "SELECT c.user_id, v.ad FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) c "
            "JOIN TABLE(TUMBLE(TABLE views, DESCRIPTOR(vt), INTERVAL '10' SECOND)) v ON c.user_id = v.uid",
            "the windowed sides are not joined on window_start and window_end",
        ),
        (
            "SELECT c.user_id, v.ad FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) c "
            "JOIN TABLE(TUMBLE(TABLE views, DESCRIPTOR(vt), INTERVAL '20' SECOND)) v "
            "ON c.window_start = v.window_start AND c.window_end = v.window_end",
            "the two sides are not the same window",
        ),
        (
            "SELECT c.user_id, v.ad FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) c "
            "JOIN TABLE(TUMBLE(TABLE views, DESCRIPTOR(vt), INTERVAL '10' SECOND)) v "
            "ON c.window_start = c.window_start AND c.window_end = v.window_end AND c.user_id = v.uid",
            "the windowed sides are not joined on window_start and window_end",
        ),
    ],
)
def test_unbounded_joins_are_refused_naming_the_missing_bound(sql: str, missing: str) -> None:
    with pytest.raises(SqlError) as refused:
        plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get)
    message = str(refused.value)
    assert missing in message and "needs a bound" in message and "interval condition" in message


def test_a_self_join_without_a_window_is_refused_and_ad_hoc_joins_still_run() -> None:
    sql = "SELECT a.user_id, b.page FROM clicks a JOIN clicks b ON a.user_id = b.user_id"
    with pytest.raises(SqlError, match=r"neither a window .* nor an interval condition"):
        plan_continuous(sql, SCHEMAS.__getitem__, WATERMARKS.get)
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("clicks", [clicks((1, "a", 0), (1, "b", 1)).to_batches()])
    assert ctx.sql(sql).to_arrow_table().num_rows == 4


def test_a_single_topic_query_is_planned_as_before() -> None:
    sql = "SELECT window_start, count(*) AS n FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
    assert isinstance(
        plan_continuous(sql + "GROUP BY window_start, window_end", SCHEMAS.__getitem__, WATERMARKS.get), JobPlan
    )


def test_describe_names_the_join_kind_and_its_state() -> None:
    text = join_plan().describe()
    assert text.startswith("window join: TUMBLE size 10000 ms")
    assert "state clicks: rows of open windows (user_id, page, ts)" in text
    assert "state views: rows of open windows (uid, ad, vt)" in text
