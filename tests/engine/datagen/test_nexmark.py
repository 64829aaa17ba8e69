"""Nexmark: the generator keeps Beam's rules, and the SQL queries agree with a plain-Python oracle.

Expected values here are computed independently of `streamhouse.datagen.nexmark`'s helpers: event
numbers and "last id" bounds are re-derived from the 1 : 3 : 46 layout with plain arithmetic.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from streamhouse.api.values import batch_from_table
from streamhouse.datagen import nexmark
from streamhouse.datagen.nexmark import DEFAULT_FIRST_EVENT_MS, NexmarkData, generate
from streamhouse.datagen.nexmark_queries import QUERIES, WINDOWED_QUERIES
from streamhouse.sql.windows.rewrite import rewrite_windows
from tests.nexmark_reference import REFERENCE, Row, from_ms

# --- event-number layout, re-derived ---------------------------------------------------------


def person_numbers(data: NexmarkData) -> np.ndarray[Any, Any]:
    """Event number of each person row: person k is event 50·k."""
    return 50 * np.arange(data.person.num_rows)


def auction_numbers(data: NexmarkData) -> np.ndarray[Any, Any]:
    """Event number of each auction row: auctions 3e, 3e+1, 3e+2 are events 50e+1 … 50e+3."""
    k = np.arange(data.auction.num_rows)
    return 50 * (k // 3) + 1 + k % 3


def bid_numbers(data: NexmarkData) -> np.ndarray[Any, Any]:
    """Event number of each bid row: bids fill offsets 4 … 49 of every 50 events."""
    k = np.arange(data.bid.num_rows)
    return 50 * (k // 46) + 4 + k % 46


def column(table: pa.Table, name: str) -> np.ndarray[Any, Any]:
    return table.column(name).to_numpy()


def times_ms(table: pa.Table, name: str = "date_time") -> np.ndarray[Any, Any]:
    return table.column(name).cast(pa.int64()).to_numpy()


# --- (a) generator properties ----------------------------------------------------------------


@pytest.mark.parametrize("events", [0, 1, 4, 5, 50, 123, 5_000, 100_049, 250_000])
def test_counts_follow_the_1_3_46_layout(events: int) -> None:
    data = generate(events)
    rem = np.arange(events) % 50
    assert data.person.num_rows == int(np.count_nonzero(rem == 0))
    assert data.auction.num_rows == int(np.count_nonzero((rem >= 1) & (rem <= 3)))
    assert data.bid.num_rows == int(np.count_nonzero(rem >= 4))
    if events % 50 == 0:
        assert (data.person.num_rows, data.auction.num_rows, data.bid.num_rows) == (
            events // 50,
            3 * events // 50,
            46 * events // 50,
        )


def test_schemas_are_snake_case_and_typed() -> None:
    data = generate(100)
    assert data.person.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("email_address", pa.string()),
            ("credit_card", pa.string()),
            ("city", pa.string()),
            ("state", pa.string()),
            ("date_time", pa.timestamp("ms")),
            ("extra", pa.string()),
        ]
    )
    assert data.auction.schema.names == [
        "id",
        "item_name",
        "description",
        "initial_bid",
        "reserve",
        "date_time",
        "expires",
        "seller",
        "category",
        "extra",
    ]
    assert data.auction.schema.field("expires").type == pa.timestamp("ms")
    assert data.bid.schema.names == ["auction", "bidder", "price", "channel", "url", "date_time", "extra"]
    assert data.tables() == {"person": data.person, "auction": data.auction, "bid": data.bid}


def test_empty_generation_has_the_schemas() -> None:
    data = generate(0)
    assert data.person.schema == nexmark.PERSON_SCHEMA and data.person.num_rows == 0
    assert data.auction.schema == nexmark.AUCTION_SCHEMA and data.auction.num_rows == 0
    assert data.bid.schema == nexmark.BID_SCHEMA and data.bid.num_rows == 0


@pytest.mark.parametrize("kwargs", [{"events": -1}, {"events": 10, "seed": -1}, {"events": 10, "events_per_second": 0}])
def test_bad_arguments_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_ids_come_from_event_numbers() -> None:
    data = generate(30_000)
    assert column(data.person, "id").tolist() == list(range(1000, 1000 + data.person.num_rows))
    assert column(data.auction, "id").tolist() == list(range(1000, 1000 + data.auction.num_rows))


@pytest.mark.parametrize(
    ("first_event_ms", "events_per_second"),
    [(DEFAULT_FIRST_EVENT_MS, 10_000), (DEFAULT_FIRST_EVENT_MS + 3_701, 3), (0, 7_000)],
)
def test_event_times_come_from_event_numbers(first_event_ms: int, events_per_second: int) -> None:
    data = generate(20_000, first_event_ms=first_event_ms, events_per_second=events_per_second)
    numbers, times = [], []
    for table, n in [
        (data.person, person_numbers(data)),
        (data.auction, auction_numbers(data)),
        (data.bid, bid_numbers(data)),
    ]:
        t = times_ms(table)
        assert t.tolist() == (first_event_ms + n * 1000 // events_per_second).tolist()
        numbers.append(n)
        times.append(t)
    merged = np.concatenate(times)[np.argsort(np.concatenate(numbers), kind="stable")]
    assert np.all(np.diff(merged) >= 0), "event time must not decrease with the event number"
    assert int(merged[0]) == first_event_ms


def test_default_start_is_2026() -> None:
    first = generate(1).person.column("date_time")[0].as_py()
    assert first.isoformat() == "2026-01-01T00:00:00"


def test_same_seed_same_tables() -> None:
    a, b = generate(30_000, seed=5), generate(30_000, seed=5)
    for name, table in a.tables().items():
        assert table.equals(b.tables()[name]), name


def test_different_seeds_differ() -> None:
    a, b = generate(30_000, seed=5), generate(30_000, seed=6)
    assert not a.bid.column("price").equals(b.bid.column("price"))
    assert not a.person.column("name").equals(b.person.column("name"))
    assert not a.auction.column("seller").equals(b.auction.column("seller"))
    # Ids and times do not depend on the seed.
    assert a.person.column("id").equals(b.person.column("id"))
    assert a.bid.column("date_time").equals(b.bid.column("date_time"))


@pytest.mark.parametrize(("short", "long"), [(1_234, 20_000), (100_123, 130_000)])
def test_shorter_runs_are_prefixes(short: int, long: int) -> None:
    small, big = generate(short, seed=9), generate(long, seed=9)
    for name, table in small.tables().items():
        assert table.equals(big.tables()[name].slice(0, table.num_rows)), name


@pytest.fixture(scope="module")
def sample() -> NexmarkData:
    return generate(60_000, seed=1)


def test_bids_reference_recent_auctions_and_people(sample: NexmarkData) -> None:
    """Beam's promise: referenced ids are recent, and at most 10 beyond the last one generated."""
    n = bid_numbers(sample)
    last_auction = 3 * (n // 50) + 2  # base 0: every bid follows its epoch's three auctions
    last_person = n // 50
    auction = column(sample.bid, "auction") - 1000
    bidder = column(sample.bid, "bidder") - 1000
    assert np.all(auction <= last_auction + nexmark.AUCTION_ID_LEAD)
    assert np.all(auction >= np.maximum(last_auction - nexmark.NUM_IN_FLIGHT_AUCTIONS, 0))
    assert np.all(bidder <= last_person + nexmark.PERSON_ID_LEAD)
    people = last_person + 1
    assert np.all(bidder >= people - np.minimum(people, nexmark.NUM_ACTIVE_PEOPLE))
    # "Future" ids are the exception: mostly the referenced row already exists.
    assert np.mean(auction <= last_auction) > 0.9
    assert np.mean(bidder <= last_person) > 0.97


def test_sellers_are_recent_people(sample: NexmarkData) -> None:
    last_person = auction_numbers(sample) // 50
    seller = column(sample.auction, "seller") - 1000
    assert np.all(seller <= last_person + nexmark.PERSON_ID_LEAD)
    people = last_person + 1
    assert np.all(seller >= people - np.minimum(people, nexmark.NUM_ACTIVE_PEOPLE))


def test_hot_ratios(sample: NexmarkData) -> None:
    n = bid_numbers(sample)
    hot_auction = 1000 + ((3 * (n // 50) + 2) // 100) * 100
    hot_bidder = 1000 + ((n // 50) // 100) * 100 + 1
    # 1 - 1/ratio of the rows are hot, plus the few random picks that hit the hot id.
    assert 0.49 < np.mean(column(sample.bid, "auction") == hot_auction) < 0.53  # ratio 2
    assert 0.73 < np.mean(column(sample.bid, "bidder") == hot_bidder) < 0.78  # ratio 4
    hot_seller = 1000 + ((auction_numbers(sample) // 50) // 100) * 100
    assert 0.72 < np.mean(column(sample.auction, "seller") == hot_seller) < 0.82  # ratio 4


def reversed_bits_abs(value: int) -> int:
    """|Integer.reverse(value)| for 0 <= value < 2^31, written the slow obvious way."""
    reversed_value = int(f"{value:032b}"[::-1], 2)
    return abs(reversed_value - (1 << 32) if reversed_value >= 1 << 31 else reversed_value)


def test_channels_and_urls(sample: NexmarkData) -> None:
    channels = sample.bid.column("channel").to_pylist()
    urls = sample.bid.column("url").to_pylist()
    hot = [c for c in channels if c in nexmark.HOT_CHANNELS]
    assert 0.48 < len(hot) / len(channels) < 0.52  # HOT_CHANNELS_RATIO 2
    for name in nexmark.HOT_CHANNELS:
        assert 0.11 < hot.count(name) / len(channels) < 0.14
    url_of: dict[str, str] = {}
    for channel, url in zip(channels, urls, strict=True):
        assert url_of.setdefault(channel, url) == url, "one url per channel"
    shape = re.compile(r"https://www\.nexmark\.com/[a-z_]{3,4}/[a-z_]{3,4}/[a-z_]{3,4}/item\.htm\?query=1(.*)")
    with_id = 0
    tail = {c: u for c, u in url_of.items() if c not in nexmark.HOT_CHANNELS}
    for channel, url in url_of.items():
        match = shape.fullmatch(url)
        assert match, url
        if channel in nexmark.HOT_CHANNELS:
            assert match.group(1) == ""
            continue
        number = int(channel.removeprefix("channel-"))
        assert channel == f"channel-{number}" and 0 <= number < nexmark.CHANNELS_NUMBER
        if match.group(1):
            assert match.group(1) == f"&channel_id={reversed_bits_abs(number)}"
            with_id += 1
    assert len(tail) > 5_000
    assert 0.87 < with_id / len(tail) < 0.93  # 9 in 10 long-tail urls carry the channel id


def test_prices_follow_the_log_uniform_distribution(sample: NexmarkData) -> None:
    price = column(sample.bid, "price")
    assert price.min() >= 100 and price.max() <= 100_000_000
    decades = np.log10(price / 100)  # uniform on [0, 6]
    assert abs(np.median(decades) - 3) < 0.1
    assert abs(np.mean(decades < 1) - 1 / 6) < 0.02
    initial, reserve = column(sample.auction, "initial_bid"), column(sample.auction, "reserve")
    assert np.all(initial >= 100) and np.all(reserve >= initial + 100)


def test_auction_fields(sample: NexmarkData) -> None:
    category = column(sample.auction, "category")
    assert set(category.tolist()) == {10, 11, 12, 13, 14}
    n = auction_numbers(sample)
    start, expires = times_ms(sample.auction), times_ms(sample.auction, "expires")
    # Beam's auction length: 1 + uniform[0, 2·horizon), horizon = time for 1666 more events.
    horizon = (n + 1666) * 1000 // 10_000 - n * 1000 // 10_000
    length = expires - start
    assert np.all(length >= 1) and np.all(length <= 2 * horizon)
    assert abs(np.mean(length) - np.mean(horizon)) < 0.1 * np.mean(horizon)


def test_string_fields(sample: NexmarkData) -> None:
    people = sample.person.to_pylist()
    for p in people:
        first, last = p["name"].split(" ")
        assert first in nexmark.FIRST_NAMES and last in nexmark.LAST_NAMES
        assert re.fullmatch(r"[a-z ]{0,6}@[a-z ]{0,4}\.com", p["email_address"]), p["email_address"]
        assert re.fullmatch(r"\d{4} \d{4} \d{4} \d{4}", p["credit_card"])
        assert p["city"] in nexmark.US_CITIES and p["state"] in nexmark.US_STATES
    for a in sample.auction.slice(0, 2_000).to_pylist():
        assert a["item_name"] == a["item_name"].strip() and len(a["item_name"]) <= 19
        assert a["description"] == a["description"].strip() and len(a["description"]) <= 99
        assert re.fullmatch(r"[a-z ]*", a["item_name"] + a["description"])
    extra = pc.binary_length(sample.bid.column("extra")).to_numpy()
    # Bid: 32 bytes of numbers, 68 missing to the 100-byte average, spread ±20 % (14).
    assert extra.min() >= 54 and extra.max() <= 81
    assert re.fullmatch(r"[a-z]*", sample.bid.column("extra")[0].as_py())


def test_rows_average_beams_idealized_sizes(sample: NexmarkData) -> None:
    """nextExtra pads each row so its idealized size averages avgPersonByteSize / avgAuctionByteSize."""

    def size(table: pa.Table, names: list[str], fixed: int) -> float:
        total = np.full(table.num_rows, fixed)
        for name in names:
            total += pc.binary_length(table.column(name)).to_numpy()
        return float(np.mean(total))

    person = size(sample.person, ["name", "email_address", "credit_card", "city", "state", "extra"], 8)
    auction = size(sample.auction, ["item_name", "description", "extra"], 8 + 5 * 8)
    assert abs(person - nexmark.AVG_PERSON_BYTE_SIZE) < 2
    assert abs(auction - nexmark.AVG_AUCTION_BYTE_SIZE) < 3


def test_tables_convert_to_record_values() -> None:
    bid = generate(500).bid
    batch = batch_from_table(bid, timestamp_column="date_time")
    assert batch.num_rows == bid.num_rows
    first = json.loads(batch.column("value")[0].as_py())
    assert set(first) == {"auction", "bidder", "price", "channel", "url", "date_time", "extra"}
    assert batch.column("timestamp").to_pylist() == times_ms(bid).tolist()


# --- (b) the SQL queries against the reference ---------------------------------------------

DATASETS: dict[str, dict[str, int]] = {
    # 20,000 events over 100 s: ten 10 s tumbling windows, many sessions.
    "aligned": {"events": 20_000, "seed": 3, "events_per_second": 200},
    # Windows straddle the first event (start 3.7 s past a window boundary).
    "offset": {
        "events": 20_000,
        "seed": 11,
        "events_per_second": 500,
        "first_event_ms": DEFAULT_FIRST_EVENT_MS + 3_700,
    },
}


def session_for(data: NexmarkData) -> datafusion.SessionContext:
    ctx = datafusion.SessionContext()
    for name, table in data.tables().items():
        ctx.register_record_batches(name, [table.to_batches()])
    return ctx


@pytest.fixture(scope="module", params=sorted(DATASETS))
def dataset(request: pytest.FixtureRequest) -> Iterator[tuple[NexmarkData, datafusion.SessionContext]]:
    data = generate(**DATASETS[request.param])
    yield data, session_for(data)


def run(query: str, data: NexmarkData, ctx: datafusion.SessionContext) -> list[Row]:
    """The query's rows: window calls rewritten, then run by DataFusion over the three tables."""
    tables = data.tables()
    sql = rewrite_windows(QUERIES[query], lambda name: tables[name].schema)
    return result_rows(ctx.sql(sql).to_arrow_table())


def result_rows(table: pa.Table) -> list[Row]:
    """Rows as tuples, timestamps as naive ms datetimes whatever unit/zone the engine chose."""
    columns = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("ms", tz=col.type.tz)).cast(pa.timestamp("ms"))
        columns.append(col.to_pylist())
    return list(zip(*columns, strict=True))


def assert_same_rows(query: str, got: list[Row], expected: list[Row]) -> None:
    assert expected, f"{query}: the data set must exercise the query"
    assert got == sorted(got), f"{query}: the result must come out in ORDER BY order"
    expected = sorted(expected)
    assert len(got) == len(expected), query
    if query == "q1":  # money converted with a float constant: compare the price with tolerance
        for g, e in zip(got, expected, strict=True):
            assert g[:2] + g[3:] == e[:2] + e[3:]
            assert math.isclose(g[2], e[2], rel_tol=1e-12)
    else:
        assert got == expected, query


@pytest.mark.parametrize("query", ["q0", "q1", "q2"])
def test_plain_queries_run_directly(query: str, dataset: tuple[NexmarkData, datafusion.SessionContext]) -> None:
    data, ctx = dataset
    got = result_rows(ctx.sql(QUERIES[query]).to_arrow_table())
    assert_same_rows(query, got, REFERENCE[query](data))


@pytest.mark.parametrize("query", sorted(QUERIES, key=lambda q: int(q[1:])))
def test_query_matches_reference(query: str, dataset: tuple[NexmarkData, datafusion.SessionContext]) -> None:
    data, ctx = dataset
    assert_same_rows(query, run(query, data, ctx), REFERENCE[query](data))


def from_ms_after(t0: int) -> Callable[[int], datetime]:
    return lambda offset: from_ms(t0 + offset)


def edge_data() -> NexmarkData:
    """A few hand-placed events on window and session boundaries (times in ms after T0).

    T0 is aligned to 10 s. Bidder 1 bids at 0, 10 000 (gap exactly 10 s: same session, and
    exactly the end of window [0, 10 s)), 15 000 and 25 001 (gap 10.001 s: a new session).
    """
    t0 = DEFAULT_FIRST_EVENT_MS

    def ts(offsets: list[int]) -> pa.Array[Any]:
        return pa.array([t0 + o for o in offsets], type=pa.int64()).cast(pa.timestamp("ms"))

    bids = [  # auction, bidder, price, time
        (1000, 1, 5, 0),
        (1000, 1, 5, 10_000),
        (1001, 1, 7, 15_000),
        (1001, 1, 3, 25_001),
        (1002, 2, 7, 19_999),
        (1002, 2, 2, 20_000),
        (1003, 3, 9, 29_999),
    ]
    bid = pa.Table.from_arrays(
        [
            pa.array([b[0] for b in bids], type=pa.int64()),
            pa.array([b[1] for b in bids], type=pa.int64()),
            pa.array([b[2] for b in bids], type=pa.int64()),
            pa.array(["Google"] * len(bids)),
            pa.array(["https://www.nexmark.com/a/b/c/item.htm?query=1"] * len(bids)),
            ts([b[3] for b in bids]),
            pa.array([f"e{i}" for i in range(len(bids))]),
        ],
        schema=nexmark.BID_SCHEMA,
    )
    person_times = [9_999, 10_000, 20_000]
    person = pa.Table.from_arrays(
        [
            pa.array([1000, 1001, 1002], type=pa.int64()),
            pa.array(["Peter Smith", "Kate White", "Saul Jones"]),
            *[pa.array(["x"] * 3) for _ in range(4)],
            ts(person_times),
            pa.array([""] * 3),
        ],
        schema=nexmark.PERSON_SCHEMA,
    )
    auctions = [(1000, 9_999), (1001, 9_999), (1001, 19_999), (1002, 29_999)]  # seller, time
    auction = pa.Table.from_arrays(
        [
            pa.array(range(1000, 1000 + len(auctions)), type=pa.int64()),
            pa.array(["item"] * len(auctions)),
            pa.array(["desc"] * len(auctions)),
            pa.array([100] * len(auctions), type=pa.int64()),
            pa.array([200] * len(auctions), type=pa.int64()),
            ts([a[1] for a in auctions]),
            ts([a[1] + 1_000 for a in auctions]),
            pa.array([a[0] for a in auctions], type=pa.int64()),
            pa.array([10] * len(auctions), type=pa.int64()),
            pa.array([""] * len(auctions)),
        ],
        schema=nexmark.AUCTION_SCHEMA,
    )
    return NexmarkData(person=person, auction=auction, bid=bid)


def test_reference_on_window_edges() -> None:
    """The oracle itself, checked by hand on boundary cases."""
    data = edge_data()
    t = from_ms_after(DEFAULT_FIRST_EVENT_MS)
    # q7: window [0, 10 s) has max 5 and its BETWEEN also takes the 5 at exactly 10 s;
    # [10 s, 20 s) has max 7 twice; [20 s, 30 s) has max 9.
    assert sorted(REFERENCE["q7"](data)) == [
        (1000, 1, 5, t(0), "e0"),
        (1000, 1, 5, t(10_000), "e1"),
        (1001, 1, 7, t(15_000), "e2"),
        (1002, 2, 7, t(19_999), "e4"),
        (1003, 3, 9, t(29_999), "e6"),
    ]
    # q11: a gap of exactly 10 s continues a session, 10.001 s starts a new one.
    assert sorted(REFERENCE["q11"](data)) == [
        (1, 1, t(25_001), t(35_001)),
        (1, 3, t(0), t(25_000)),
        (2, 2, t(19_999), t(30_000)),
        (3, 1, t(29_999), t(39_999)),
    ]
    # q8: person 1001 (10 s) has an auction in its window (19.999 s), not the one at 9.999 s.
    assert sorted(REFERENCE["q8"](data)) == [
        (1000, "Peter Smith", t(0)),
        (1001, "Kate White", t(10_000)),
        (1002, "Saul Jones", t(20_000)),
    ]
    # q5: auction 1000's bids at 0 and at exactly 10 s share no window ([0, 10 s) ends before the
    # second), so it tops each of the 5 windows of either bid alone with 1 bid, never with 2.
    q5 = REFERENCE["q5"](data)
    assert (1000, 2) not in q5 and q5.count((1000, 1)) == 10


@pytest.mark.parametrize("query", sorted(WINDOWED_QUERIES))
def test_queries_on_window_edges(query: str) -> None:
    data = edge_data()
    assert_same_rows(query, run(query, data, session_for(data)), REFERENCE[query](data))


def test_query_catalogue() -> None:
    assert set(QUERIES) == {"q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11"}
    assert {q for q, sql in QUERIES.items() if "TABLE(" in sql} == WINDOWED_QUERIES
    for query, sql in QUERIES.items():
        assert "ORDER BY" in sql.splitlines()[-1], query
        assert "dateTime" not in sql, query
    assert "0.908 * price" in QUERIES["q1"] and "auction % 123 = 0" in QUERIES["q2"]
