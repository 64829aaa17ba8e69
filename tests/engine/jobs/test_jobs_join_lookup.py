"""A lookup (temporal) join as a job on the embedded engine (issue 17): each order meets the rate
in effect at its time once the watermark of both topics passes it; EXPLAIN shows the lookup
join and its state."""

from __future__ import annotations

from pathlib import Path

from tests.engine.jobs.embedded import open_engine, rows, wait_for

T0 = 1_700_000_000_000
ORDERS = (
    "CREATE TOPIC orders (oid BIGINT, cur VARCHAR, amount BIGINT, ts TIMESTAMP(3), "
    "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (partitions = 2)"
)
RATES = (
    "CREATE TOPIC rates (code VARCHAR, rate BIGINT, rt TIMESTAMP(3), "
    "WATERMARK FOR rt AS rt - INTERVAL '1' SECOND) WITH (partitions = 1)"
)
LOOKUP = (
    "SELECT o.oid AS oid, o.amount * r.rate AS total FROM orders AS o "
    "JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.cur = r.code"
)


def test_a_lookup_join_view_uses_the_version_in_effect_at_each_rows_time(tmp_path: Path) -> None:
    codes = ["EUR", "GBP", "JPY"]
    orders = [{"oid": i, "cur": codes[i % 3], "amount": i, "ts": T0 + i * 1000} for i in range(40)]
    rates = [{"code": codes[j % 3], "rate": j + 1, "rt": T0 + j * 3000 + 500} for j in range(13)]
    # Orders reach 39 s − 1 s, rates 36.5 s − 1 s: the watermark 35.5 s lets orders 0-35 out.
    expected = []
    for o in orders[:36]:
        versions = [r for r in rates if r["code"] == o["cur"] and r["rt"] <= o["ts"]]
        if versions:
            expected.append((o["oid"], o["amount"] * max(versions, key=lambda r: r["rt"])["rate"]))
    assert 20 < len(expected) < 36
    with open_engine(tmp_path) as sh:
        sh.sql(ORDERS)
        sh.sql(RATES)
        sh.sql(f"CREATE MATERIALIZED VIEW priced WITH ('checkpoint-interval' = '100ms') AS {LOOKUP}")
        sh.produce_batch("orders", orders)
        sh.produce_batch("rates", rates)
        wait_for(lambda: rows(sh, "SELECT oid, total FROM priced") == sorted(expected))
        plan = sh.sql(f"EXPLAIN CREATE MATERIALIZED VIEW other AS {LOOKUP}").to_pylist()
        assert plan[0]["plan"].startswith("lookup join: each orders row meets the rates version in effect at its ts")


def test_the_record_key_of_a_keyed_topic_is_a_lookup_key(tmp_path: Path) -> None:
    """A keyed (e.g. compacted) topic looked up by its record key `_key`, as Flink's upsert
    tables are: each order meets the value its currency's key had at the order's time."""
    with open_engine(tmp_path) as sh:
        sh.sql(ORDERS)
        sh.sql(
            "CREATE TOPIC fx (rate BIGINT, rt TIMESTAMP(3), WATERMARK FOR rt AS rt - INTERVAL '1' SECOND) "
            "WITH (partitions = 1)"
        )
        sh.sql(
            "CREATE MATERIALIZED VIEW keyed WITH ('checkpoint-interval' = '100ms') AS SELECT o.oid AS oid, "
            "r.rate AS rate FROM orders AS o JOIN fx FOR SYSTEM_TIME AS OF o.ts AS r ON o.cur = r._key"
        )
        rates = [(T0, "EUR", 2), (T0, "USD", 3), (T0 + 10_000, "EUR", 5), (T0 + 60_000, "EUR", 7)]
        sh.produce_batch("fx", [{"rate": r, "rt": t} for t, _, r in rates], keys=[k for _, k, _ in rates])
        orders = [(1, "EUR", T0 + 5_000), (2, "USD", T0 + 6_000), (3, "EUR", T0 + 12_000), (4, "GBP", T0 + 13_000)]
        sh.produce_batch("orders", [{"oid": i, "cur": c, "amount": 1, "ts": t} for i, c, t in orders], partition=0)
        sh.produce_batch("orders", [{"oid": 9, "cur": "EUR", "amount": 1, "ts": T0 + 60_000}], partition=1)
        wait_for(lambda: rows(sh, "SELECT oid, rate FROM keyed") == [(1, 2), (2, 3), (3, 5)])
