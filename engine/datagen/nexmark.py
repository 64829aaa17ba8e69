"""Deterministic, column-wise Nexmark event generator (person, auction and bid tables).

Follows the Nexmark generator of Apache Beam (`org.apache.beam.sdk.nexmark.sources.generator`:
GeneratorConfig, PersonGenerator, AuctionGenerator, BidGenerator, PriceGenerator,
StringsGenerator) with NexmarkConfiguration's defaults, plus the bid `channel`/`url` columns of
the Flink `nexmark` repository's BidGenerator. Beam builds one event at a time from a
`java.util.Random` seeded with the event id; here every column of a kind is drawn at once with
numpy, so the values differ from Beam's while the rules that shape them are the same:

- Event number `n` (0-based) is a person when `n % 50 == 0`, an auction when `n % 50` is 1–3 and
  a bid otherwise (proportions 1 : 3 : 46).
- Person and auction ids come from the event number ("last base-0 id" logic, first ids 1000).
- Sellers, bidders and auctions referenced by events are mostly "hot" ones (ratios 4, 4 and 2)
  and otherwise one of the recently created ones, possibly up to 10 ids ahead of the last one
  generated (Beam's deliberate "lead": the referenced person or auction appears shortly after).
- Event time is `first_event_ms + n * 1000 // events_per_second`: no wall clock, no randomness.

Generation runs in fixed chunks of `CHUNK_EVENTS` events, each drawn from its own random stream
derived from `seed`, and a partial last chunk is generated whole then cut. So the tables of
`generate(n)` are exact prefixes of those of `generate(m)` for `n <= m` with the same seed and
rate, and the work per call never depends on a Python loop over events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.datagen import nexmark_strings as strings
from streamhouse.datagen.nexmark_config import (  # noqa: F401  # re-exported: callers import them from here
    AUCTION_ID_LEAD,
    AUCTION_PROPORTION,
    AUCTION_SCHEMA,
    AVG_AUCTION_BYTE_SIZE,
    AVG_BID_BYTE_SIZE,
    AVG_PERSON_BYTE_SIZE,
    BID_PROPORTION,
    BID_SCHEMA,
    CHANNELS_NUMBER,
    CHUNK_EVENTS,
    DEFAULT_EVENTS_PER_SECOND,
    DEFAULT_FIRST_EVENT_MS,
    FIRST_AUCTION_ID,
    FIRST_CATEGORY_ID,
    FIRST_NAMES,
    FIRST_PERSON_ID,
    HOT_AUCTION_BATCH,
    HOT_AUCTION_RATIO,
    HOT_BIDDER_BATCH,
    HOT_BIDDERS_RATIO,
    HOT_CHANNELS,
    HOT_CHANNELS_RATIO,
    HOT_SELLER_BATCH,
    HOT_SELLERS_RATIO,
    LAST_NAMES,
    NUM_ACTIVE_PEOPLE,
    NUM_CATEGORIES,
    NUM_IN_FLIGHT_AUCTIONS,
    PERSON_ID_LEAD,
    PERSON_PROPORTION,
    PERSON_SCHEMA,
    PROPORTION_DENOMINATOR,
    URL_PREFIX,
    URL_SUFFIX,
    US_CITIES,
    US_STATES,
)

# pyarrow-stubs type variadic compute kernels too narrowly (scalars vs arrays); the kernels
# themselves check their arguments at run time.
pc: Any = _pc

I64 = npt.NDArray[np.int64]


# Spawn keys of the random streams below `seed`: one for the channel table, one per
# (chunk, kind) so a kind's columns never shift when another kind changes.
_CHANNELS_STREAM: Final = 0
_CHUNK_STREAM: Final = 1
_PERSON, _AUCTION, _BID = 0, 1, 2


@dataclass(frozen=True)
class NexmarkData:
    """The three Nexmark tables, each ordered by event number (hence by `date_time`)."""

    person: pa.Table
    auction: pa.Table
    bid: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        """The tables by their SQL names ("person", "auction", "bid")."""
        return {"person": self.person, "auction": self.auction, "bid": self.bid}


def generate(
    events: int,
    *,
    seed: int = 0,
    first_event_ms: int = DEFAULT_FIRST_EVENT_MS,
    events_per_second: int = DEFAULT_EVENTS_PER_SECOND,
) -> NexmarkData:
    """The first `events` Nexmark events (event numbers `0 … events-1`) split into their tables.

    `seed` picks the random streams (numpy PCG64DXSM); the same arguments always give equal
    tables. `events_per_second` spaces event times `1e6 / events_per_second` µs apart starting
    at `first_event_ms` (ms since the epoch, UTC; columns are `timestamp[ms]` without zone).
    """
    if events < 0:
        raise ValueError(f"events must be >= 0, got {events}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if events_per_second <= 0:
        raise ValueError(f"events_per_second must be > 0, got {events_per_second}")
    clock = _Clock(first_event_ms, events_per_second)
    channels, urls = _channel_table(np.random.SeedSequence(seed, spawn_key=(_CHANNELS_STREAM,)))
    parts: list[tuple[pa.Table, pa.Table, pa.Table]] = []
    for chunk in range(-(-events // CHUNK_EVENTS)):
        numbers = _event_numbers(chunk * CHUNK_EVENTS)

        def stream(kind: int, chunk: int = chunk) -> np.random.Generator:
            seq = np.random.SeedSequence(seed, spawn_key=(_CHUNK_STREAM, chunk, kind))
            return np.random.Generator(np.random.PCG64DXSM(seq))

        # The whole chunk is always drawn, then cut: what a row gets never depends on `events`.
        person = _persons(numbers["person"], stream(_PERSON), clock)
        auction = _auctions(numbers["auction"], stream(_AUCTION), clock)
        bid = _bids(numbers["bid"], stream(_BID), clock, channels, urls)
        parts.append(
            (
                _cut(person, numbers["person"], events),
                _cut(auction, numbers["auction"], events),
                _cut(bid, numbers["bid"], events),
            )
        )
    return NexmarkData(
        person=_concat([p for p, _, _ in parts], PERSON_SCHEMA),
        auction=_concat([a for _, a, _ in parts], AUCTION_SCHEMA),
        bid=_concat([b for _, _, b in parts], BID_SCHEMA),
    )


# --- event numbers and ids (GeneratorConfig / PersonGenerator / AuctionGenerator) -------------


@dataclass(frozen=True)
class _Clock:
    """Event time of an event number (GeneratorConfig.timestampAndInterEventDelayUsForEvent)."""

    first_event_ms: int
    events_per_second: int

    def ms(self, event_numbers: I64) -> I64:
        # Beam: baseTime + n * interEventDelayUs / 1000 with the delay rounded to whole µs; the
        # exact rational form agrees whenever 1e6 / rate is whole and never drifts otherwise.
        return self.first_event_ms + (event_numbers * 1000) // self.events_per_second


def _event_numbers(lo: int) -> dict[str, I64]:
    """Event numbers of each kind in the chunk starting at event `lo`, ascending."""
    epochs = lo + PROPORTION_DENOMINATOR * np.arange(CHUNK_EVENTS // PROPORTION_DENOMINATOR, dtype=np.int64)
    offsets = np.arange(PROPORTION_DENOMINATOR, dtype=np.int64)
    all_numbers = (epochs[:, None] + offsets[None, :]).ravel()
    rem = all_numbers % PROPORTION_DENOMINATOR
    return {
        "person": all_numbers[rem < PERSON_PROPORTION],
        "auction": all_numbers[(rem >= PERSON_PROPORTION) & (rem < PERSON_PROPORTION + AUCTION_PROPORTION)],
        "bid": all_numbers[rem >= PERSON_PROPORTION + AUCTION_PROPORTION],
    }


def last_base0_person_id(event_numbers: I64) -> I64:
    """Last person id generated at or before each event, minus FIRST_PERSON_ID (PersonGenerator)."""
    epoch, offset = np.divmod(event_numbers, PROPORTION_DENOMINATOR)
    return epoch * PERSON_PROPORTION + np.minimum(offset, PERSON_PROPORTION - 1)


def last_base0_auction_id(event_numbers: I64) -> I64:
    """Last auction id generated at or before each event, minus FIRST_AUCTION_ID (AuctionGenerator).

    -1 before the first auction (event 0, a person).
    """
    epoch, offset = np.divmod(event_numbers, PROPORTION_DENOMINATOR)
    in_epoch = np.clip(offset - PERSON_PROPORTION, 0, AUCTION_PROPORTION - 1)
    # A person event comes before this epoch's auctions: go back to the previous epoch's last.
    return np.where(
        offset < PERSON_PROPORTION,
        (epoch - 1) * AUCTION_PROPORTION + AUCTION_PROPORTION - 1,
        epoch * AUCTION_PROPORTION + in_epoch,
    )


def _next_base0_person_id(event_numbers: I64, rng: np.random.Generator) -> I64:
    """A random recent person (PersonGenerator.nextBase0PersonId).

    One of the last NUM_ACTIVE_PEOPLE people, or up to PERSON_ID_LEAD ids ahead: limiting to the
    active ones keeps the density of bids per person constant on long runs, and the lead makes
    some person/auction events look swapped in time.
    """
    num_people = last_base0_person_id(event_numbers) + 1
    active = np.minimum(num_people, NUM_ACTIVE_PEOPLE)
    return num_people - active + rng.integers(0, active + PERSON_ID_LEAD)


def _next_base0_auction_id(event_numbers: I64, rng: np.random.Generator) -> I64:
    """A random auction likely still in flight, or up to AUCTION_ID_LEAD ids ahead (AuctionGenerator)."""
    last = last_base0_auction_id(event_numbers)
    low = np.maximum(last - NUM_IN_FLIGHT_AUCTIONS, 0)
    return low + rng.integers(0, last - low + 1 + AUCTION_ID_LEAD)


def _hot(rng: np.random.Generator, ratio: int, n: int) -> npt.NDArray[np.bool_]:
    """Beam's `random.nextInt(ratio) > 0`: true with probability 1 - 1/ratio."""
    return rng.integers(0, ratio, n) > 0


def _prices(rng: np.random.Generator, n: int) -> I64:
    """PriceGenerator: round(10^(6·U) · 100), i.e. log-uniform cents between $1 and $1,000,000."""
    # floor(x + 0.5) is Java's Math.round for these positive values.
    return np.floor(np.power(10.0, rng.random(n) * 6.0) * 100.0 + 0.5).astype(np.int64)


# --- the three kinds ---------------------------------------------------------------------------


def _persons(numbers: I64, rng: np.random.Generator, clock: _Clock) -> pa.Table:
    """PersonGenerator.nextPerson for each person event number."""
    n = len(numbers)
    first = strings.pick(FIRST_NAMES, rng, n)
    last = strings.pick(LAST_NAMES, rng, n)
    name = pc.binary_join_element_wise(first, last, " ")
    email = strings.join(strings.next_strings(rng, n, 7), "@", strings.next_strings(rng, n, 5), ".com")
    credit_card = _credit_cards(rng, n)
    city = strings.pick(US_CITIES, rng, n)
    state = strings.pick(US_STATES, rng, n)
    size = (
        8
        + strings.lengths(name)
        + strings.lengths(email)
        + strings.lengths(credit_card)
        + strings.lengths(city)
        + strings.lengths(state)
    )
    return pa.Table.from_arrays(
        [
            pa.array(last_base0_person_id(numbers) + FIRST_PERSON_ID, type=pa.int64()),
            name,
            email,
            credit_card,
            city,
            state,
            _timestamps(clock.ms(numbers)),
            strings.extras(rng, size, AVG_PERSON_BYTE_SIZE),
        ],
        schema=PERSON_SCHEMA,
    )


def _credit_cards(rng: np.random.Generator, n: int) -> pa.Array[Any]:
    """Four zero-padded groups of 4 random digits separated by spaces ("%04d %04d %04d %04d")."""
    groups = rng.integers(0, 10_000, (n, 4))
    powers = np.array([1000, 100, 10, 1])
    digits = (groups[:, :, None] // powers[None, None, :]) % 10  # n × 4 groups × 4 digits
    cells = np.full((n, 4, 5), ord(" "), dtype=np.uint8)  # each group plus a trailing space
    cells[:, :, :4] = digits + ord("0")
    text = cells.reshape(n, 20)[:, :19]  # drop the last group's trailing space
    return strings.string_array(text.ravel(), np.full(n, 19, dtype=np.int64))


def _auctions(numbers: I64, rng: np.random.Generator, clock: _Clock) -> pa.Table:
    """AuctionGenerator.nextAuction for each auction event number."""
    n = len(numbers)
    hot_seller = (last_base0_person_id(numbers) // HOT_SELLER_BATCH) * HOT_SELLER_BATCH
    seller = np.where(_hot(rng, HOT_SELLERS_RATIO, n), hot_seller, _next_base0_person_id(numbers, rng))
    category = FIRST_CATEGORY_ID + rng.integers(0, NUM_CATEGORIES, n)
    initial_bid = _prices(rng, n)
    date_time = clock.ms(numbers)
    expires = date_time + _auction_lengths_ms(numbers, rng, clock)
    item_name = strings.next_strings(rng, n, 20)
    description = strings.next_strings(rng, n, 100)
    reserve = initial_bid + _prices(rng, n)
    size = 8 + strings.lengths(item_name) + strings.lengths(description) + 8 + 8 + 8 + 8 + 8
    return pa.Table.from_arrays(
        [
            pa.array(last_base0_auction_id(numbers) + FIRST_AUCTION_ID, type=pa.int64()),
            item_name,
            description,
            pa.array(initial_bid, type=pa.int64()),
            pa.array(reserve, type=pa.int64()),
            _timestamps(date_time),
            _timestamps(expires),
            pa.array(seller + FIRST_PERSON_ID, type=pa.int64()),
            pa.array(category, type=pa.int64()),
            strings.extras(rng, size, AVG_AUCTION_BYTE_SIZE),
        ],
        schema=AUCTION_SCHEMA,
    )


def _auction_lengths_ms(numbers: I64, rng: np.random.Generator, clock: _Clock) -> I64:
    """AuctionGenerator.nextAuctionLengthMs: 1 + uniform[0, 2·horizon) ms.

    The horizon is the time until NUM_IN_FLIGHT_AUCTIONS more auctions will have been created,
    so on average about that many auctions are open at any time.
    """
    events_ahead = (NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR) // AUCTION_PROPORTION
    horizon = clock.ms(numbers + events_ahead) - clock.ms(numbers)
    return np.asarray(1 + rng.integers(0, np.maximum(horizon * 2, 1)), dtype=np.int64)


def _bids(
    numbers: I64, rng: np.random.Generator, clock: _Clock, channels: pa.Array[Any], urls: pa.Array[Any]
) -> pa.Table:
    """BidGenerator.nextBid for each bid event number (with Flink nexmark's channel and url)."""
    n = len(numbers)
    hot_auction = (last_base0_auction_id(numbers) // HOT_AUCTION_BATCH) * HOT_AUCTION_BATCH
    auction = np.where(_hot(rng, HOT_AUCTION_RATIO, n), hot_auction, _next_base0_auction_id(numbers, rng))
    hot_bidder = (last_base0_person_id(numbers) // HOT_BIDDER_BATCH) * HOT_BIDDER_BATCH + 1
    bidder = np.where(_hot(rng, HOT_BIDDERS_RATIO, n), hot_bidder, _next_base0_person_id(numbers, rng))
    price = _prices(rng, n)
    # Rows 0–3 of the channel table are the hot channels, the long tail follows.
    channel_row = np.where(
        _hot(rng, HOT_CHANNELS_RATIO, n),
        rng.integers(0, len(HOT_CHANNELS), n),
        len(HOT_CHANNELS) + rng.integers(0, CHANNELS_NUMBER, n),
    )
    return pa.Table.from_arrays(
        [
            pa.array(auction + FIRST_AUCTION_ID, type=pa.int64()),
            pa.array(bidder + FIRST_PERSON_ID, type=pa.int64()),
            pa.array(price, type=pa.int64()),
            channels.take(channel_row),
            urls.take(channel_row),
            _timestamps(clock.ms(numbers)),
            strings.extras(rng, np.full(n, 8 + 8 + 8 + 8, dtype=np.int64), AVG_BID_BYTE_SIZE),
        ],
        schema=BID_SCHEMA,
    )


def _channel_table(seq: np.random.SeedSequence) -> tuple[pa.Array[Any], pa.Array[Any]]:
    """Channel names and urls: the 4 hot channels, then "channel-0" … "channel-9999".

    Flink's BidGenerator gives each channel one url "https://www.nexmark.com/<w>/<w>/<w>/
    item.htm?query=1" (w: a 3–4 character nextString with "_" for space) and, for 9 in 10 long-tail
    channels, "&channel_id=<|Integer.reverse(number)|>". Flink draws those urls from an unseeded
    Random once per process; here they come from `seed`, so they are reproducible too.
    """
    rng = np.random.Generator(np.random.PCG64DXSM(seq))
    total = len(HOT_CHANNELS) + CHANNELS_NUMBER
    base = strings.join(
        URL_PREFIX,
        strings.next_strings(rng, total, 5, "_"),
        "/",
        strings.next_strings(rng, total, 5, "_"),
        "/",
        strings.next_strings(rng, total, 5, "_"),
        "/",
        URL_SUFFIX,
    )
    numbers = np.arange(CHANNELS_NUMBER, dtype=np.int64)
    with_id = rng.integers(0, 10, CHANNELS_NUMBER) > 0
    tail_base = base[len(HOT_CHANNELS) :]
    tail_urls = pc.if_else(
        pa.array(with_id),
        strings.join(tail_base, "&channel_id=", strings.decimal(_reversed_bits_abs(numbers))),
        tail_base,
    )
    names = pa.concat_arrays([pa.array(HOT_CHANNELS), strings.join("channel-", strings.decimal(numbers))])
    urls = pa.concat_arrays([base[: len(HOT_CHANNELS)], tail_urls])
    return names, urls


def _reversed_bits_abs(values: I64) -> I64:
    """|Integer.reverse(v)|: the 32-bit two's complement bit reversal, as a non-negative int64.

    Java's Math.abs overflows for Integer.MIN_VALUE (v = 1); int64 gives 2^31 instead.
    """
    v = values.astype(np.uint32)
    out = np.zeros_like(v)
    for bit in range(32):  # 32 vector steps over all channels, not a loop per value
        out |= ((v >> np.uint32(bit)) & np.uint32(1)) << np.uint32(31 - bit)
    return np.abs(out.view(np.int32).astype(np.int64))


# --- assembly ----------------------------------------------------------------------------------


def _timestamps(ms: I64) -> pa.Array[Any]:
    return pa.array(ms, type=pa.int64()).cast(pa.timestamp("ms"))


def _cut(table: pa.Table, numbers: I64, events: int) -> pa.Table:
    """The rows of a whole chunk whose event number is below `events` (rows are ascending)."""
    return table.slice(0, int(np.searchsorted(numbers, events)))


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    # Chunks stay separate record batches: string offsets are 32-bit, and one 10 M-event bid
    # table holds more than 2 GiB of text.
    return pa.concat_tables(parts) if parts else schema.empty_table()
