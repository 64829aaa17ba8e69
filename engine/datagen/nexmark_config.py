"""Nexmark's constants and table schemas (Beam's GeneratorConfig and NexmarkConfiguration
defaults, the private constants of its person/auction/bid generators, Flink nexmark's channel
and url columns). Kept apart from the generator (nexmark.py) so the rules it follows can be
read in one place; nexmark.py re-exports every name."""

from __future__ import annotations

from typing import Final

import pyarrow as pa

# --- GeneratorConfig -------------------------------------------------------------------------
FIRST_PERSON_ID: Final = 1000
FIRST_AUCTION_ID: Final = 1000
FIRST_CATEGORY_ID: Final = 10
PERSON_PROPORTION: Final = 1
AUCTION_PROPORTION: Final = 3
BID_PROPORTION: Final = 46
PROPORTION_DENOMINATOR: Final = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION

# --- NexmarkConfiguration defaults -----------------------------------------------------------
HOT_AUCTION_RATIO: Final = 2  # P(bid on a hot auction) = 1 - 1/2
HOT_SELLERS_RATIO: Final = 4  # P(auction by a hot seller) = 1 - 1/4
HOT_BIDDERS_RATIO: Final = 4  # P(bid by a hot bidder) = 1 - 1/4
NUM_IN_FLIGHT_AUCTIONS: Final = 100
NUM_ACTIVE_PEOPLE: Final = 1000
AVG_PERSON_BYTE_SIZE: Final = 200
AVG_AUCTION_BYTE_SIZE: Final = 500
AVG_BID_BYTE_SIZE: Final = 100

# --- constants private to Beam's PersonGenerator / AuctionGenerator / BidGenerator -----------
PERSON_ID_LEAD: Final = 10  # people ids a reference may run ahead of the last person
AUCTION_ID_LEAD: Final = 10  # auction ids a reference may run ahead of the last auction
HOT_SELLER_BATCH: Final = 100  # hot seller = first person of the last batch of 100 people
HOT_BIDDER_BATCH: Final = 100  # hot bidder = second person of that batch (no collision)
HOT_AUCTION_BATCH: Final = 100  # hot auction = first auction of the last batch of 100
NUM_CATEGORIES: Final = 5
US_STATES: Final = ("AZ", "CA", "ID", "OR", "WA", "WY")
US_CITIES: Final = (
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
)
FIRST_NAMES: Final = ("Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter")
LAST_NAMES: Final = ("Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris")

# --- Flink nexmark's BidGenerator (channel / url) ---------------------------------------------
HOT_CHANNELS: Final = ("Google", "Facebook", "Baidu", "Apple")
HOT_CHANNELS_RATIO: Final = 2  # P(bid through a hot channel) = 1 - 1/2
CHANNELS_NUMBER: Final = 10_000  # long-tail channels "channel-0" … "channel-9999"
URL_PREFIX: Final = "https://www.nexmark.com/"
URL_SUFFIX: Final = "item.htm?query=1"

# 2026-01-01T00:00:00Z: a fixed instant so equal arguments give equal tables on every machine.
DEFAULT_FIRST_EVENT_MS: Final = 1_767_225_600_000
DEFAULT_EVENTS_PER_SECOND: Final = 10_000

# Events per independently seeded chunk; a multiple of 50 so every chunk holds whole epochs.
CHUNK_EVENTS: Final = 100_000

PERSON_SCHEMA: Final = pa.schema(
    [  # type: ignore[arg-type]  # pyarrow-stubs reject a list of differently typed fields
        pa.field("id", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("email_address", pa.string()),
        pa.field("credit_card", pa.string()),
        pa.field("city", pa.string()),
        pa.field("state", pa.string()),
        pa.field("date_time", pa.timestamp("ms")),
        pa.field("extra", pa.string()),
    ]
)
AUCTION_SCHEMA: Final = pa.schema(
    [  # type: ignore[arg-type]  # pyarrow-stubs reject a list of differently typed fields
        pa.field("id", pa.int64()),
        pa.field("item_name", pa.string()),
        pa.field("description", pa.string()),
        pa.field("initial_bid", pa.int64()),
        pa.field("reserve", pa.int64()),
        pa.field("date_time", pa.timestamp("ms")),
        pa.field("expires", pa.timestamp("ms")),
        pa.field("seller", pa.int64()),
        pa.field("category", pa.int64()),
        pa.field("extra", pa.string()),
    ]
)
BID_SCHEMA: Final = pa.schema(
    [  # type: ignore[arg-type]  # pyarrow-stubs reject a list of differently typed fields
        pa.field("auction", pa.int64()),
        pa.field("bidder", pa.int64()),
        pa.field("price", pa.int64()),
        pa.field("channel", pa.string()),
        pa.field("url", pa.string()),
        pa.field("date_time", pa.timestamp("ms")),
        pa.field("extra", pa.string()),
    ]
)
