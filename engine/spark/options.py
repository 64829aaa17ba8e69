"""The options of the `streamhouse` Spark data source, checked once on the driver: a bad one is an
InvalidInputError naming the option before any task runs.

    bootstrap              agents, "host:port[,host:port]" (required: executors connect themselves)
    topic                  the topic to read or write (required)
    apiKey                 `<key_id>.<secret>` (default: STREAMHOUSE_API_KEY in the executor's environment)
    startingOffsets        "earliest" (default), "latest", or JSON {"<partition>": <offset>, ...}
    endingOffsets          batch reads only: "latest" (default) or JSON like startingOffsets
    maxRecordsPerTrigger   streaming reads: at most this many records per micro-batch
    fetchRecords           records per fetch call and per Arrow batch handed to Spark (default 50000)
    sinkId                 writes: names the sink's exactly-once state (one per query writing a topic)
    keyColumn, timestampColumn, valueColumn   writes: what becomes the record key, timestamp, value
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamhouse.client.client import Client, connect
from streamhouse.storage.errors import InvalidInputError

DEFAULT_FETCH_RECORDS = 50_000
_STARTS = ("earliest", "latest")


@dataclass(frozen=True)
class SourceOptions:
    """What every reader and writer of one query needs; plain values, so Spark can pickle them to
    executors (which open their own connections)."""

    bootstrap: str
    topic: str
    api_key: str | None = None
    starting: str | dict[int, int] = "earliest"
    ending: str | dict[int, int] = "latest"
    max_records_per_trigger: int | None = None
    fetch_records: int = DEFAULT_FETCH_RECORDS
    sink_id: str | None = None
    key_column: str | None = None
    timestamp_column: str | None = None
    value_column: str | None = None

    def connect(self, *, retries: bool = True) -> Client:
        options: dict[str, Any] = {"retries": retries}
        if self.api_key is not None:
            options["api_key"] = self.api_key
        return connect(self.bootstrap, **options)


def parse_options(raw: Mapping[str, str]) -> SourceOptions:
    """The data source's options (Spark passes them case-insensitively) as SourceOptions."""
    given = {k.lower(): v for k, v in raw.items() if k.lower() != "path"}
    topic = given.get("topic") or raw.get("path")
    for name, value in (("bootstrap", given.get("bootstrap")), ("topic", topic)):
        if not value:
            raise InvalidInputError(f"the streamhouse data source needs option {name!r}")
    return SourceOptions(
        bootstrap=str(given["bootstrap"]),
        topic=str(topic),
        api_key=given.get("apikey"),
        starting=_position("startingOffsets", given.get("startingoffsets", "earliest"), _STARTS),
        ending=_position("endingOffsets", given.get("endingoffsets", "latest"), ("latest",)),
        max_records_per_trigger=_positive("maxRecordsPerTrigger", given.get("maxrecordspertrigger")),
        fetch_records=_positive("fetchRecords", given.get("fetchrecords")) or DEFAULT_FETCH_RECORDS,
        sink_id=given.get("sinkid"),
        key_column=given.get("keycolumn"),
        timestamp_column=given.get("timestampcolumn"),
        value_column=given.get("valuecolumn"),
    )


def _positive(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInputError(f"option {name!r} must be a positive integer, not {text!r}")
    return value


def _position(name: str, text: str, words: tuple[str, ...]) -> str | dict[int, int]:
    if text in words:
        return text
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            f'option {name!r} must be {" or ".join(map(repr, words))} or JSON like {{"0": 42}}, not {text!r}'
        )
    offsets: dict[int, int] = {}
    for key, value in parsed.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"option {name!r}: {key!r}: {value!r} is not a partition number and an offset >= 0")
        offsets[int(key)] = value
    return offsets
