"""Window TVFs: Flink's documented results, a pure-Python oracle, and every malformed call.

Expected rows of the first tests are the Apache Flink documentation's (window-tvf, window-agg,
window-topn and window-join pages, Bid tables as printed there). Hypothesis then checks all four
windows, both time column types and the pane pre-aggregation against tests/window_reference.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import datafusion
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.sql.errors import SqlError
from streamhouse.sql.windows.rewrite import rewrite_windows
from tests import window_reference as ref


def at(hh: int, mm: int, day: int = 15, ss: int = 0, ms: int = 0) -> datetime:
    return datetime(2020, 4, day, hh, mm, ss, ms * 1000)


def bids(rows: list[tuple[datetime | None, str, str, str]], tz: str | None = None) -> pa.Table:
    """The docs' Bid table: bidtime TIMESTAMP(3), price DECIMAL(10, 2), item, supplier_id."""
    return pa.table(
        {
            "bidtime": pa.array([r[0] for r in rows], pa.timestamp("ms", tz=tz)),
            "price": pa.array([Decimal(r[1]) for r in rows], pa.decimal128(10, 2)),
            "item": [r[2] for r in rows],
            "supplier_id": [r[3] for r in rows],
        }
    )


# window-agg / window-tvf pages
BID = bids([(at(8, 5), "4.00", "C", "supplier1"), (at(8, 7), "2.00", "A", "supplier1"),
            (at(8, 9), "5.00", "D", "supplier2"), (at(8, 11), "3.00", "B", "supplier2"),
            (at(8, 13), "1.00", "E", "supplier1"), (at(8, 17), "6.00", "F", "supplier2")])  # fmt: skip
# window-topn page
TOPN_BID = bids([(at(8, 5), "4.00", "A", "supplier1"), (at(8, 6), "4.00", "C", "supplier2"),
                 (at(8, 7), "2.00", "G", "supplier1"), (at(8, 8), "2.00", "B", "supplier3"),
                 (at(8, 9), "5.00", "D", "supplier4"), (at(8, 11), "2.00", "B", "supplier3"),
                 (at(8, 13), "1.00", "E", "supplier1"), (at(8, 15), "3.00", "H", "supplier2"),
                 (at(8, 17), "6.00", "F", "supplier5")])  # fmt: skip
# window-tvf page, SESSION section (no supplier there; kept for one table shape)
SESSION_BID = bids([(at(8, 7), "4.00", "A", "s"), (at(8, 6), "2.00", "A", "s"), (at(8, 9), "5.00", "B", "s"),
                    (at(8, 8), "3.00", "A", "s"), (at(8, 17), "1.00", "B", "s")])  # fmt: skip


def run(sql: str, panes: bool = True, **tables: pa.Table) -> pa.Table:
    """Rewrite `sql` against `tables` and execute it in DataFusion."""
    tables = tables or {"bid": BID}
    ctx = datafusion.SessionContext()
    for name, table in tables.items():
        batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
        ctx.register_record_batches('"' + name + '"', [batches])
    return ctx.sql(rewrite_windows(sql, lambda name: tables[name].schema, panes=panes)).to_arrow_table()


def rows(table: pa.Table, *columns: str) -> list[tuple[Any, ...]]:
    picked = table.select(list(columns)) if columns else table
    return sorted(tuple(r.values()) for r in picked.to_pylist())


def d(text: str) -> Decimal:
    return Decimal(text)


# --- the Flink documentation's examples ------------------------------------------------------

TUMBLE = "TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))"
HOP = "TABLE(HOP(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES, INTERVAL '10' MINUTES))"
CUMULATE = "TABLE(CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '2' MINUTES, INTERVAL '10' MINUTES))"
AGG = "SELECT window_start, window_end, SUM(price) AS price FROM {} GROUP BY window_start, window_end"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (TUMBLE, [(at(8, 0), at(8, 10), d("11.00")), (at(8, 10), at(8, 20), d("10.00"))]),
        (HOP, [(at(8, 0), at(8, 10), d("11.00")), (at(8, 5), at(8, 15), d("15.00")),
               (at(8, 10), at(8, 20), d("10.00")), (at(8, 15), at(8, 25), d("6.00"))]),
        (CUMULATE, [(at(8, 0), at(8, 6), d("4.00")), (at(8, 0), at(8, 8), d("6.00")),
                    (at(8, 0), at(8, 10), d("11.00")), (at(8, 10), at(8, 12), d("3.00")),
                    (at(8, 10), at(8, 14), d("4.00")), (at(8, 10), at(8, 16), d("4.00")),
                    (at(8, 10), at(8, 18), d("10.00")), (at(8, 10), at(8, 20), d("10.00"))]),
        ("TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, INTERVAL '1' MINUTES))",
         [(at(8, 1), at(8, 11), d("11.00")), (at(8, 11), at(8, 21), d("10.00"))]),
    ],
)  # fmt: skip
def test_flink_docs_window_aggregations(source: str, expected: list[tuple[Any, ...]]) -> None:
    assert rows(run(AGG.format(source))) == expected


def test_flink_docs_tumble_rows_and_columns() -> None:
    out = run(f"SELECT * FROM {TUMBLE}")
    assert out.column_names == ["bidtime", "price", "item", "supplier_id", "window_start", "window_end", "window_time"]
    first, second = (at(8, 0), at(8, 10), at(8, 9, ss=59, ms=999)), (at(8, 10), at(8, 20), at(8, 19, ss=59, ms=999))
    assert rows(out, "item", "window_start", "window_end", "window_time") == sorted(
        [(i, *first) for i in "CAD"] + [(i, *second) for i in "BEF"]
    )
    assert out.schema.field("window_time").type == pa.timestamp("ms")


def test_flink_docs_hop_rows() -> None:
    out = run(f"SELECT item, window_start FROM {HOP}")
    starts = {"C": (0, 5), "A": (0, 5), "D": (0, 5), "B": (5, 10), "E": (5, 10), "F": (10, 15)}
    assert rows(out) == sorted((i, at(8, m)) for i, ms in starts.items() for m in ms)


def test_flink_docs_sessions() -> None:
    keyed = "TABLE(SESSION(TABLE Bid PARTITION BY item, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))"
    out = run(f"SELECT window_start, window_end, item, SUM(price) AS total_price FROM {keyed} "
              "GROUP BY item, window_start, window_end", bid=SESSION_BID)  # fmt: skip
    assert rows(out) == [(at(8, 6), at(8, 13), "A", d("9.00")), (at(8, 9), at(8, 14), "B", d("5.00")),
                         (at(8, 17), at(8, 22), "B", d("1.00"))]  # fmt: skip
    unkeyed = "TABLE(SESSION(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))"
    out = run(AGG.format(unkeyed), bid=SESSION_BID)
    assert rows(out) == [(at(8, 6), at(8, 14), d("14.00")), (at(8, 17), at(8, 22), d("1.00"))]
    out = run(f"SELECT bidtime, window_time FROM {unkeyed}", bid=SESSION_BID)
    assert rows(out)[-1] == (at(8, 17), at(8, 21, ss=59, ms=999))


def test_flink_docs_window_top_n() -> None:
    after_agg = f"""SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum
        FROM (SELECT window_start, window_end, supplier_id, SUM(price) AS price, COUNT(*) AS cnt
              FROM {TUMBLE} GROUP BY window_start, window_end, supplier_id)
    ) WHERE rownum <= 3"""
    assert rows(run(after_agg, bid=TOPN_BID)) == [
        (at(8, 0), at(8, 10), "supplier1", d("6.00"), 2, 1), (at(8, 0), at(8, 10), "supplier2", d("4.00"), 1, 3),
        (at(8, 0), at(8, 10), "supplier4", d("5.00"), 1, 2), (at(8, 10), at(8, 20), "supplier2", d("3.00"), 1, 2),
        (at(8, 10), at(8, 20), "supplier3", d("2.00"), 1, 3), (at(8, 10), at(8, 20), "supplier5", d("6.00"), 1, 1),
    ]  # fmt: skip
    # The docs rank the tied A and C (4.00) as 2 and 3; `item` makes that order deterministic.
    direct = f"""SELECT item, rownum FROM (SELECT *, ROW_NUMBER() OVER (
        PARTITION BY window_start, window_end ORDER BY price DESC, item) AS rownum FROM {TUMBLE}) WHERE rownum <= 3"""
    assert rows(run(direct, bid=TOPN_BID)) == [("A", 2), ("B", 3), ("C", 3), ("D", 1), ("F", 1), ("H", 2)]


def test_flink_docs_window_full_join() -> None:
    def side(rows_: list[tuple[datetime, int, str]]) -> pa.Table:
        return pa.table({"row_time": pa.array([r[0] for r in rows_], pa.timestamp("ms")),
                         "num": [r[1] for r in rows_], "id": [r[2] for r in rows_]})  # fmt: skip

    left = side([(at(12, 2), 1, "L1"), (at(12, 6), 2, "L2"), (at(12, 3), 3, "L3")])
    right = side([(at(12, 1), 2, "R2"), (at(12, 4), 3, "R3"), (at(12, 5), 4, "R4")])
    window = "TABLE(TUMBLE(TABLE {}, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))"
    sql = f"""SELECT L.num AS L_Num, L.id AS L_Id, R.num AS R_Num, R.id AS R_Id,
                     COALESCE(L.window_start, R.window_start) AS ws
              FROM (SELECT * FROM {window.format("LeftTable")}) L
              FULL JOIN (SELECT * FROM {window.format("RightTable")}) R
              ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end"""
    out = run(sql, lefttable=left, righttable=right)
    assert sorted(out.to_pylist(), key=lambda r: (r["ws"], str(r["l_id"]), str(r["r_id"]))) == [
        {"l_num": 1, "l_id": "L1", "r_num": None, "r_id": None, "ws": at(12, 0)},
        {"l_num": 3, "l_id": "L3", "r_num": 3, "r_id": "R3", "ws": at(12, 0)},
        {"l_num": None, "l_id": None, "r_num": 2, "r_id": "R2", "ws": at(12, 0)},
        {"l_num": 2, "l_id": "L2", "r_num": None, "r_id": None, "ws": at(12, 5)},
        {"l_num": None, "l_id": None, "r_num": 4, "r_id": "R4", "ws": at(12, 5)},
    ]


# --- around the TVFs -----------------------------------------------------------------------------


def test_join_of_two_windowed_aggregates_and_nexmark_q7_shape() -> None:
    sql = f"""SELECT a.window_start, a.total, b.cnt
        FROM (SELECT window_start, window_end, SUM(price) AS total FROM {TUMBLE} GROUP BY window_start, window_end) a
        JOIN (SELECT window_start, window_end, COUNT(*) AS cnt FROM {HOP} GROUP BY window_start, window_end) b
        ON a.window_start = b.window_start AND a.window_end = b.window_end"""
    assert rows(run(sql)) == [(at(8, 0), d("11.00"), 3), (at(8, 10), d("10.00"), 3)]
    q7 = f"""SELECT B.item, B.price FROM Bid B JOIN (
        SELECT MAX(price) AS maxprice, window_end AS dt FROM {TUMBLE} GROUP BY window_start, window_end) B1
        ON B.price = B1.maxprice WHERE B.bidtime BETWEEN B1.dt - INTERVAL '10' MINUTE AND B1.dt"""
    assert rows(run(q7)) == [("D", d("5.00")), ("F", d("6.00"))]


def test_ctes_subqueries_aliases_and_short_forms() -> None:
    sql = """WITH expensive AS (SELECT * FROM Bid WHERE price > 2),
                  windowed AS (SELECT * FROM TABLE(TUMBLE(TABLE expensive, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES)))
             SELECT window_start, total FROM (SELECT window_start, SUM(price) AS total FROM windowed GROUP BY 1)"""
    assert rows(run(sql)) == [(at(8, 0), d("9.00")), (at(8, 10), d("9.00"))]
    sub = """SELECT w.window_start, w.item FROM TABLE(HOP(TABLE (SELECT bidtime, item FROM bid WHERE item <> 'F'),
             DESCRIPTOR(bidtime), INTERVAL '5' MINUTE, INTERVAL '10' MINUTE)) AS w WHERE w.item IN ('B', 'E')"""
    assert rows(run(sub)) == [(at(8, 5), "B"), (at(8, 5), "E"), (at(8, 10), "B"), (at(8, 10), "E")]
    short = {
        "TUMBLE(bid, bidtime, INTERVAL '10' MINUTE)": 2,
        "HOP(bid, bidtime, INTERVAL '5' MINUTE, INTERVAL '10' MINUTE) AS h": 4,
        "CUMULATE((SELECT * FROM bid), bidtime, INTERVAL '2' MINUTE, INTERVAL '10' MINUTE)": 8,
        "SESSION(bid, bidtime, INTERVAL '2' MINUTE, supplier_id)": 4,
        "TABLE(HOP(DATA => TABLE bid, TIMECOL => DESCRIPTOR(bidtime), SIZE => INTERVAL '10' MINUTE, "
        "SLIDE => INTERVAL '5' MINUTE))": 4,
    }
    for call, windows in short.items():
        out = run(f"SELECT window_start, window_end, COUNT(*) AS c FROM {call} GROUP BY 1, 2")
        assert out.num_rows == windows, call
    # Cascading windows: like Flink, the inner window columns must be renamed first.
    nested = """SELECT window_start, SUM(c) AS c FROM TABLE(TUMBLE(TABLE (SELECT window_time AS rowtime, COUNT(*) AS c
                FROM TUMBLE(bid, bidtime, INTERVAL '5' MINUTE) GROUP BY window_start, window_end, window_time),
                DESCRIPTOR(rowtime), INTERVAL '10' MINUTE)) GROUP BY 1"""
    assert rows(run(nested)) == [(at(8, 0), 3), (at(8, 10), 3)]


@pytest.mark.parametrize("tz", [None, "UTC"])
def test_time_column_types_nulls_and_case(tz: str | None) -> None:
    rows_ = [(r["bidtime"], str(r["price"]), r["item"], "s") for r in BID.to_pylist()]
    table = bids([*rows_, (None, "9.00", "Z", "s")], tz)
    out = run(AGG.format(TUMBLE), bid=table)
    assert out.schema.field("window_start").type == pa.timestamp("ms", tz=tz)
    sums = [(s.replace(tzinfo=None), e.replace(tzinfo=None), p) for s, e, p in rows(out)]
    assert sums == [(at(8, 0), at(8, 10), d("11.00")), (at(8, 10), at(8, 20), d("10.00"))]
    assert "Z" not in run(f"SELECT item FROM {HOP}", bid=table).column("item").to_pylist()
    renamed = table.rename_columns(["bidTime", "price", "item", "supplier_id"])
    sql = 'SELECT COUNT(*) AS c FROM TABLE(SESSION(TABLE "Bids", DESCRIPTOR("bidTime"), INTERVAL \'1\' HOUR))'
    assert run(sql, Bids=renamed).column("c").to_pylist() == [6]


@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_other_time_units(unit: str) -> None:
    per_ms = {"s": 0.001, "us": 1000, "ns": 1_000_000}[unit]
    raw = [-1500, -1, 0, 999, 1000, 61_000] if unit != "s" else [-2000, 0, 1000, 61_000]
    values = [int(ms * per_ms) + (7 if unit != "s" else 0) for ms in raw]  # sub-ms parts must floor
    table = pa.table({"ts": pa.array(values, pa.timestamp(unit)), "v": range(len(values))})
    out = run("SELECT v, window_start, window_time FROM TUMBLE(t, ts, INTERVAL '1' SECOND)", t=table)
    assert out.schema.field("window_start").type == pa.timestamp("ms" if unit == "s" else unit)
    starts = pc.cast(out.column("window_start"), pa.int64()).to_pylist()
    scale = 1 if unit == "s" else per_ms
    assert sorted(zip(out.column("v").to_pylist(), [s / scale for s in starts], strict=True)) == [
        (i, (ms // 1000) * 1000) for i, ms in enumerate(raw)
    ]


def test_offsets_follow_the_flink_docs() -> None:
    table = pa.table({"ts": pa.array([datetime(2021, 6, 30, 0, 0, 4)], pa.timestamp("ms"))})
    early, late, plain = datetime(2021, 6, 29, 23, 54), datetime(2021, 6, 29, 23, 56), datetime(2021, 6, 30)
    for minutes, start in [(-16, early), (-6, early), (-4, late), (0, plain), (4, early), (6, late), (16, late)]:
        sql = f"SELECT window_start FROM TUMBLE(t, ts, INTERVAL '10' MINUTE, INTERVAL '{minutes}' MINUTE)"
        assert run(sql, t=table).column("window_start").to_pylist() == [start], minutes


@pytest.mark.parametrize(
    ("interval", "ms"),
    [
        ("INTERVAL '10' MINUTES", 600_000),
        ("INTERVAL '10' MINUTE", 600_000),
        ("INTERVAL '1' HOUR", 3_600_000),
        ("INTERVAL '5' SECOND", 5_000),
        ("INTERVAL '5' SECONDS", 5_000),
        ("INTERVAL '2' DAY", 172_800_000),
        ("INTERVAL '10 seconds'", 10_000),
        ("INTERVAL '1 hour 30 minutes'", 5_400_000),
        ("INTERVAL '00:05' MINUTE TO SECOND", 5_000),
        ("INTERVAL '1 02:00' DAY TO MINUTE", 93_600_000),
        ("INTERVAL '1.5' SECOND", 1_500),
        ("INTERVAL '250' MILLISECOND", 250),
    ],
)
def test_interval_spellings(interval: str, ms: int) -> None:
    out = run(f"SELECT window_start, window_end FROM TUMBLE(bid, bidtime, {interval})")
    assert set(pc.subtract(as_ms(out, "window_end"), as_ms(out, "window_start")).to_pylist()) == {ms}


def test_queries_without_windows_come_back_unchanged() -> None:
    sql = "SELECT median(price), \"Item\" FROM bid WHERE item = 'TUMBLE' -- hop(\n"
    assert rewrite_windows(sql, lambda name: BID.schema) == sql


@pytest.mark.parametrize(
    "expression",
    [
        "try_cast(item AS INT)",  # Postgres would print CAST, which fails on 'A'
        "median(price) OVER ()",
        "to_timestamp(0)",
        "regexp_like(item, '[A-C]')",
        "price::double / 3",
        "substring(supplier_id FROM 2 FOR 3)",
        "date_trunc('hour', bidtime)",
        "EXTRACT(MINUTE FROM bidtime)",
        "bidtime - INTERVAL '1' HOUR",
        "make_array(1, 2)[1]",
        "COUNT(*) FILTER (WHERE price > 2) OVER ()",
        "bid.price",  # an unaliased call is named after its table
    ],
)
def test_sql_around_the_call_is_kept(expression: str) -> None:
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("bid", [BID.to_batches()])
    want = ctx.sql(f"SELECT {expression} AS x FROM bid").to_arrow_table()
    got = run(f"SELECT {expression} AS x FROM TUMBLE(bid, bidtime, INTERVAL '10' MINUTE)")
    assert sorted(map(str, got.column("x").to_pylist())) == sorted(map(str, want.column("x").to_pylist()))


def test_tumble_is_a_projection() -> None:
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("bid", [BID.to_batches()])
    plan = ctx.sql("EXPLAIN " + rewrite_windows(AGG.format(TUMBLE), lambda n: BID.schema)).to_pandas()
    text = "\n".join(plan["plan"])
    assert not re.search(r"Unnest|Join|Window", text), text


# --- pane pre-aggregation ------------------------------------------------------------------------

INT_BID = BID.set_column(1, "price", pc.cast(pc.cast(BID.column("price"), pa.float64()), pa.int64()))


@pytest.mark.parametrize("window", [HOP, CUMULATE])
def test_panes_match_the_generic_rewrite_exactly(window: str) -> None:
    sql = f"""SELECT window_start, window_end, supplier_id, SUM(price), COUNT(*), MIN(item) AS first_item,
                     MAX(price) AS top FROM {window} WHERE item <> 'E'
              GROUP BY window_start, window_end, supplier_id HAVING COUNT(*) > 0 ORDER BY 1, 2, 3"""
    assert "__sh_pane" in rewrite_windows(sql, lambda n: INT_BID.schema)
    assert run(sql, bid=INT_BID).equals(run(sql, panes=False, bid=INT_BID))
    # Through a CTE, next to another CTE whose own COUNT(*) must stay as it is.
    with_cte = f"""WITH b AS (SELECT * FROM bid WHERE price > 1), n AS (SELECT COUNT(*) AS n FROM bid)
        SELECT window_start, window_end, COUNT(*) AS c, SUM(price) AS s, MAX(n.n) AS n
        FROM {window.replace("TABLE Bid", "TABLE b")} CROSS JOIN n GROUP BY window_start, window_end"""
    plain = with_cte.replace(" CROSS JOIN n", "").replace(", MAX(n.n) AS n", "")
    assert "__sh_pane" in rewrite_windows(plain, lambda n: INT_BID.schema)
    assert "__sh_pane" not in rewrite_windows(with_cte, lambda n: INT_BID.schema)  # a join: generic
    for query in (plain, with_cte):
        assert canonical(run(query, bid=INT_BID)).equals(canonical(run(query, panes=False, bid=INT_BID)))
    assert "__sh_pane" not in rewrite_windows(AGG.format(window), lambda n: BID.schema)  # decimal SUM


# --- the oracle ----------------------------------------------------------------------------------

TIME_TYPES = st.sampled_from([pa.timestamp("ms"), pa.timestamp("ms", tz="UTC")])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[ref.Event], pa.Table]:
    n = draw(st.integers(0, 30))
    base = draw(st.sampled_from([0, 1_586_937_900_000, -86_400_007]))  # epoch, 2020, before 1970
    times = draw(st.lists(st.one_of(st.none(), st.integers(-20_000, 20_000)), min_size=n, max_size=n))
    keys = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    values = draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n))
    triples = enumerate(zip(times, keys, values, strict=True))
    events = [(i, None if t is None else base + t, k, v) for i, (t, k, v) in triples]
    table = pa.table({"id": pa.array([e[0] for e in events], pa.int64()),
                      "ts": pa.array([e[1] for e in events], draw(TIME_TYPES)),
                      "k": pa.array(keys, pa.string()), "v": pa.array(values, pa.int64())})  # fmt: skip
    return events, table


@st.composite
def window_calls(draw: st.DrawFn) -> tuple[str, str, dict[str, int], bool]:
    """(kind, SQL call on table t, reference parameters, keyed)."""
    kind = draw(st.sampled_from(["TUMBLE", "HOP", "CUMULATE", "SESSION"]))
    keyed = draw(st.booleans())
    step = draw(st.integers(1, 4000))
    size = step * draw(st.integers(1, 5))
    offset = draw(st.integers(-10_000, 10_000))

    def ms(value: int) -> str:
        return f"INTERVAL '{value}' MILLISECOND"

    if kind == "SESSION":
        by = " PARTITION BY k" if keyed else ""
        return kind, f"SESSION(TABLE t{by}, DESCRIPTOR(ts), {ms(step)})", {"size": step}, keyed
    if kind == "TUMBLE":
        call = f"TUMBLE(TABLE t, DESCRIPTOR(ts), {ms(size)}, {ms(offset)})"
        return kind, call, {"size": size, "offset": offset}, keyed
    call = f"{kind}(TABLE t, DESCRIPTOR(ts), {ms(step)}, {ms(size)}, {ms(offset)})"
    return kind, call, {"size": size, "step": step, "offset": offset}, keyed


def as_ms(table: pa.Table, column: str) -> list[int]:
    return pc.cast(table.column(column), pa.int64()).to_pylist()


@settings(max_examples=25, deadline=None)
@given(streams(), window_calls())
def test_window_rows_match_the_reference(stream: tuple[list[ref.Event], pa.Table], call: Any) -> None:
    (events, table), (kind, sql_call, params, keyed) = stream, call
    out = run(f"SELECT id, window_start, window_end, window_time FROM TABLE({sql_call})", t=table)
    got = sorted(zip(out.column("id").to_pylist(), as_ms(out, "window_start"), as_ms(out, "window_end"), strict=True))
    assert got == sorted(ref.assign(kind, events, keyed=keyed, **params))
    assert as_ms(out, "window_time") == [e - 1 for e in as_ms(out, "window_end")]
    assert out.schema.field("window_start").type == table.schema.field("ts").type


@settings(max_examples=25, deadline=None)
@given(streams(), window_calls(), st.booleans())
def test_grouped_counts_and_sums_match_the_reference(
    stream: tuple[list[ref.Event], pa.Table], call: Any, panes: bool
) -> None:
    (events, table), (kind, sql_call, params, keyed) = stream, call
    key = ", k" if keyed else ""
    sql = (f"SELECT window_start, window_end{key}, COUNT(*) AS c, SUM(v) AS s FROM TABLE({sql_call}) "
           f"GROUP BY window_start, window_end{key}")  # fmt: skip
    out = run(sql, panes=panes, t=table)
    if panes and kind in ("HOP", "CUMULATE"):
        assert "__sh_pane" in rewrite_windows(sql, lambda name: table.schema)
    keys = out.column("k").to_pylist() if keyed else [None] * out.num_rows
    columns = [as_ms(out, "window_start"), as_ms(out, "window_end"), keys, *(out.column(c).to_pylist() for c in "cs")]
    got = {(s, e, k): (c, v) for s, e, k, c, v in zip(*columns, strict=True)}
    assert got == ref.grouped(kind, events, keyed=keyed, **params)
    if kind in ("HOP", "CUMULATE"):  # the other plan: identical table, names and types included
        assert canonical(out).equals(canonical(run(sql, panes=not panes, t=table)))


def canonical(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


# --- malformed calls -----------------------------------------------------------------------------

T = "TABLE bid, DESCRIPTOR(bidtime)"
MINUTE = "INTERVAL '1' MINUTE"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (f"HOP({T}, INTERVAL '2' SECOND, INTERVAL '7' SECOND)",
         "HOP: size INTERVAL '7' SECOND is not a multiple of slide INTERVAL '2' SECOND (argument 4)"),
        (f"CUMULATE({T}, INTERVAL '3' MINUTE, INTERVAL '10' MINUTE)",
         "CUMULATE: size INTERVAL '10' MINUTE is not a multiple of step INTERVAL '3' MINUTE (argument 4)"),
        (f"TUMBLE(TABLE bid, DESCRIPTOR(nope), {MINUTE})", "TUMBLE: time column 'nope' (argument 2) is not a column"),
        (f"TUMBLE(TABLE bid, DESCRIPTOR(price), {MINUTE})",
         "TUMBLE: time column 'price' (argument 2) has type decimal128(10, 2); it must be a TIMESTAMP"),
        (f"TUMBLE(TABLE nowhere, DESCRIPTOR(ts), {MINUTE})", "TUMBLE: unknown table 'nowhere'"),
        (f"TUMBLE({T})", "TUMBLE: expected TUMBLE(data, timecol, size [, offset]), got 2 arguments; missing size"),
        (f"HOP({T}, {MINUTE}, {MINUTE}, {MINUTE}, 5)",
         "HOP: expected HOP(data, timecol, slide, size [, offset]), got 6 arguments"),
        (f"TUMBLE({T}, 10)", "TUMBLE: size 10 (argument 3) is not an INTERVAL"),
        (f"TUMBLE({T}, INTERVAL '0' MINUTE)", "TUMBLE: size INTERVAL '0' MINUTE (argument 3) must be positive"),
        (f"HOP({T}, INTERVAL '-1' SECOND, {MINUTE})",
         "HOP: slide INTERVAL '-1' SECOND (argument 3) must be positive"),
        (f"TUMBLE({T}, INTERVAL '1' MONTH)", "TUMBLE: size INTERVAL '1' MONTH (argument 3) MONTH has no fixed length"),
        (f"SESSION({T}, 'soon')", "SESSION: gap 'soon' (argument 3) is not an INTERVAL"),
        (f"SESSION(TABLE bid PARTITION BY nope, DESCRIPTOR(bidtime), {MINUTE})", "SESSION: partition key 'nope'"),
        (f"TUMBLE(TABLE bid PARTITION BY item, DESCRIPTOR(bidtime), {MINUTE})", "only SESSION takes PARTITION BY"),
        (f"TUMBLE(1, bidtime, {MINUTE})", "TUMBLE: argument 1 (data) must be TABLE name"),
        (f"TUMBLE({T}, WIDTH => {MINUTE})", "TUMBLE: unknown argument name WIDTH"),
        (f"TUMBLE((SELECT bidtime, 1 AS window_end FROM bid), bidtime, {MINUTE})",
         "TUMBLE: the subquery already has a column named window_end"),
    ],
)  # fmt: skip
def test_malformed_calls_name_the_argument(call: str, message: str) -> None:
    with pytest.raises(SqlError, match=re.escape(message)) as info:
        run(f"SELECT * FROM {call}")
    assert info.value.position is not None and info.value.position[0] == 1


def test_errors_carry_position_and_name() -> None:
    sql = "SELECT *\nFROM TABLE(HOP(TABLE bid, DESCRIPTOR(bidtime),\n     INTERVAL '2' SECOND, INTERVAL '7' SECOND))"
    with pytest.raises(SqlError) as info:
        run(sql)
    assert info.value.position == (3, 27) and "(line 3, column 27)" in str(info.value)
    with pytest.raises(SqlError) as unknown:
        run("SELECT * FROM TUMBLE(nowhere, ts, INTERVAL '1' SECOND)")
    assert unknown.value.name == "nowhere"
    with pytest.raises(SqlError, match="only be used in FROM or JOIN"):
        run("SELECT COUNT(*) FROM bid GROUP BY TUMBLE(bidtime, INTERVAL '1' MINUTE)")


def test_syntax_errors_have_line_and_column() -> None:
    with pytest.raises(SqlError, match="syntax error") as info:
        run("SELECT window_start\nFROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(bidtime), INTERVAL '1' MINUTE)) WHERE (")
    assert info.value.position is not None and info.value.position[0] == 2
    with pytest.raises(SqlError, match="SELEC") as typo:
        run("SELEC * FROM bid")
    assert typo.value.position == (1, 1)
