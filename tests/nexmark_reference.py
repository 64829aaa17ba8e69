"""Plain-Python Nexmark queries (q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q11): the oracle for the SQL texts.

Each function takes the generated tables and returns the query's rows as tuples, in no
particular order; tests sort them. Loops over rows, no cleverness: every window rule of Flink
is written out directly.

- TUMBLE(size): an event at t is in [start, start + size) with start = t - t mod size (aligned
  to the epoch).
- HOP(slide, size): an event at t is in every [start, start + size) with start a multiple of
  `slide` and start <= t < start + size (size / slide windows when slide divides size).
- SESSION(gap) per key: events sorted by time; a new session starts when the next event comes
  more than `gap` after the previous one (Flink merges windows that touch); a session is
  [first, last + gap).

Times are handled as integer epoch milliseconds and returned as naive UTC `datetime`s, the way
pyarrow's `to_pylist` returns `timestamp[ms]` values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from streamhouse.datagen.nexmark import NexmarkData

_EPOCH = datetime(1970, 1, 1)

Row = tuple[Any, ...]


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of a naive UTC datetime."""
    return (value - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """Naive UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def tumble_start(t_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding t."""
    return t_ms - t_ms % size_ms


def hop_starts(t_ms: int, slide_ms: int, size_ms: int) -> Iterator[int]:
    """Starts of every hopping window holding t, latest first."""
    start = t_ms - t_ms % slide_ms
    while start > t_ms - size_ms:
        yield start
        start -= slide_ms


def sessions(times_ms: list[int], gap_ms: int) -> list[tuple[int, int, int]]:
    """(start, end, count) of the sessions of one key's event times."""
    result: list[tuple[int, int, int]] = []
    ordered = sorted(times_ms)
    first = last = ordered[0]
    count = 0
    for t in ordered:
        if t - last > gap_ms:
            result.append((first, last + gap_ms, count))
            first, count = t, 0
        last = t
        count += 1
    result.append((first, last + gap_ms, count))
    return result


def q0(data: NexmarkData) -> list[Row]:
    """Pass-through of every bid."""
    return [(b["auction"], b["bidder"], b["price"], b["date_time"], b["extra"]) for b in _rows(data.bid)]


def q1(data: NexmarkData) -> list[Row]:
    """Every bid with its price in euros (× 0.908)."""
    return [(b["auction"], b["bidder"], 0.908 * b["price"], b["date_time"], b["extra"]) for b in _rows(data.bid)]


def q2(data: NexmarkData) -> list[Row]:
    """(auction, price) of the bids on auctions whose id is a multiple of 123."""
    return [(b["auction"], b["price"]) for b in _rows(data.bid) if b["auction"] % 123 == 0]


def q3(data: NexmarkData) -> list[Row]:
    """(name, city, state, auction id) of category-10 auctions by sellers in OR, ID or CA."""
    people = {p["id"]: p for p in _rows(data.person) if p["state"] in ("OR", "ID", "CA")}
    return [
        (people[a["seller"]]["name"], people[a["seller"]]["city"], people[a["seller"]]["state"], a["id"])
        for a in _rows(data.auction)
        if a["category"] == 10 and a["seller"] in people
    ]


def _winning(data: NexmarkData) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """auction id → (auction, its winning bid): the highest price inside [date_time, expires],
    ties to the earlier bid, then the lower bidder."""
    auctions = {a["id"]: a for a in _rows(data.auction)}
    best: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for b in _rows(data.bid):
        a = auctions.get(b["auction"])
        if a is None or not a["date_time"] <= b["date_time"] <= a["expires"]:
            continue
        rank = (-b["price"], b["date_time"], b["bidder"])
        if a["id"] not in best or rank < (
            -best[a["id"]][1]["price"],
            best[a["id"]][1]["date_time"],
            best[a["id"]][1]["bidder"],
        ):
            best[a["id"]] = (a, b)
    return best


def q4(data: NexmarkData) -> list[Row]:
    """(category, average final price) over the auctions with a bid inside their life."""
    finals: dict[int, list[int]] = defaultdict(list)
    for a, b in _winning(data).values():
        finals[a["category"]].append(b["price"])
    return [(category, sum(prices) / len(prices)) for category, prices in finals.items()]


def q4_per_auction(data: NexmarkData) -> list[Row]:
    """(auction id, category, final price) of the auctions with a bid inside their life."""
    return [(a["id"], a["category"], b["price"]) for a, b in _winning(data).values()]


def q6(data: NexmarkData, *, preceding: int = 10) -> list[Row]:
    """(seller, average final price of the seller's auction and its `preceding` before it, by
    the auction's last bid time inside its life), one row per auction with such a bid."""
    auctions = {a["id"]: a for a in _rows(data.auction)}
    last: dict[int, tuple[int, datetime]] = {}  # auction id → (final price, last bid time)
    for b in _rows(data.bid):
        a = auctions.get(b["auction"])
        if a is None or not a["date_time"] <= b["date_time"] <= a["expires"]:
            continue
        price, when = last.get(a["id"], (b["price"], b["date_time"]))
        last[a["id"]] = (max(price, b["price"]), max(when, b["date_time"]))
    by_seller: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for auction, (price, when) in last.items():
        by_seller[auctions[auction]["seller"]].append((when, price))
    rows: list[Row] = []
    for seller, sold in by_seller.items():
        prices = [price for _, price in sorted(sold)]
        for i in range(len(prices)):
            window = prices[max(0, i - preceding) : i + 1]
            rows.append((seller, sum(window) / len(window)))
    return rows


def q9(data: NexmarkData) -> list[Row]:
    """Each auction's columns, then its winning bid's auction, bidder, price, time and extra."""
    return [
        (*a.values(), b["auction"], b["bidder"], b["price"], b["date_time"], b["extra"])
        for a, b in _winning(data).values()
    ]


def q5(data: NexmarkData, *, slide_ms: int = 2_000, size_ms: int = 10_000) -> list[Row]:
    """(auction, bid count) of each hopping window's most-bid auctions (ties all kept)."""
    counts: dict[tuple[int, int], int] = defaultdict(int)  # (window start, auction) → bids
    for b in _rows(data.bid):
        for start in hop_starts(to_ms(b["date_time"]), slide_ms, size_ms):
            counts[(start, b["auction"])] += 1
    most: dict[int, int] = defaultdict(int)
    for (start, _), num in counts.items():
        most[start] = max(most[start], num)
    return [(auction, num) for (start, auction), num in counts.items() if num >= most[start]]


def q7(data: NexmarkData, *, size_ms: int = 10_000) -> list[Row]:
    """Bids priced at some tumbling window's maximum and timed in [window_end - size, window_end].

    Literally Flink's join: the time condition is on the window end, inclusive at both ends, so
    a bid exactly at a window's end is also checked against that window's maximum.
    """
    bids = _rows(data.bid)
    top: dict[int, int] = {}  # window start → max price
    for b in bids:
        start = tumble_start(to_ms(b["date_time"]), size_ms)
        top[start] = max(top.get(start, b["price"]), b["price"])
    by_price: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for b in bids:
        by_price[b["price"]].append(b)
    result: list[Row] = []
    for start, price in top.items():
        end = start + size_ms
        for b in by_price[price]:
            if end - size_ms <= to_ms(b["date_time"]) <= end:
                result.append((b["auction"], b["bidder"], b["price"], b["date_time"], b["extra"]))
    return result


def q8(data: NexmarkData, *, size_ms: int = 10_000) -> list[Row]:
    """(id, name, window start) of people who opened an auction in the window they registered in."""
    people = {(p["id"], p["name"], tumble_start(to_ms(p["date_time"]), size_ms)) for p in _rows(data.person)}
    sellers = {(a["seller"], tumble_start(to_ms(a["date_time"]), size_ms)) for a in _rows(data.auction)}
    return [(pid, name, from_ms(start)) for pid, name, start in people if (pid, start) in sellers]


def q11(data: NexmarkData, *, gap_ms: int = 10_000) -> list[Row]:
    """(bidder, bids, session start, session end) of every bidder's sessions."""
    times: dict[int, list[int]] = defaultdict(list)
    for b in _rows(data.bid):
        times[b["bidder"]].append(to_ms(b["date_time"]))
    return [
        (bidder, count, from_ms(start), from_ms(end))
        for bidder, ts in times.items()
        for start, end, count in sessions(ts, gap_ms)
    ]


REFERENCE = {"q0": q0, "q1": q1, "q2": q2, "q3": q3, "q5": q5, "q7": q7, "q8": q8, "q11": q11}
