"""Reading a topic: positions per partition, long-polling fetches, commits to a consumer
group, seeks. A group here is a named set of committed offsets (as kafka-consumer-groups
shows them); partitions are not balanced between members of a group.

Retention (engine/agent/retention.py) removes the oldest records; "earliest" is the log start,
and a position that falls below it (a slow consumer, an old committed offset) is reset as
Kafka's consumer does with its auto.offset.reset: to the log start ("latest": to the end), with
a warning saying how many records were skipped; `resets` counts them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from streamhouse.api.types import TopicDescription
from streamhouse.client.transport import Transport
from streamhouse.storage.errors import InvalidInputError, OffsetOutOfRangeError
from streamhouse.storage.metadata.isolation import parse_isolation
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.wording import plural

log = logging.getLogger(__name__)
# How long a poll that has records waits for more acknowledged ones past the high watermark
# (their durable round is under way: about one roll).
_SETTLE_S = 0.5

Start = Literal["earliest", "latest", "committed"]


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def text(self) -> str | None:
        return None if self.value is None else self.value.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The value parsed as JSON (the SDK encodes dicts that way)."""
        return None if self.value is None else json.loads(self.value)


class ConsumerClient(Protocol):
    """What a consumer uses of the Client that opens it (client.py builds consumers, so this
    module names only these, not the Client)."""

    @property
    def transport(self) -> Transport: ...

    def describe(self, topic: str) -> TopicDescription: ...

    def _partition_count(self, topic: str) -> int: ...


class Consumer:
    def __init__(
        self,
        client: ConsumerClient,
        topic: str,
        *,
        group: str | None = None,
        start: Start = "committed",
        partitions: Sequence[int] | None = None,
        max_records: int = 50_000,
        auto_commit: bool = True,
        isolation: str = "read_committed",
    ) -> None:
        """start is the reset policy, Kafka's auto.offset.reset: it applies only to
        partitions the group has no committed offset for (or to every partition without a
        group). A committed offset always wins, so a group re-run with start="earliest"
        resumes where it committed instead of re-reading the topic. "earliest" and
        "committed" begin such partitions at their log start (0 until retention removed
        records), "latest" at their end offset."""
        self.client = client
        self.topic = topic
        self.group = group
        self.max_records = max_records
        self.auto_commit = auto_commit and group is not None
        self.isolation = parse_isolation(isolation, "isolation")  # Kafka's isolation.level
        description = client.describe(topic)
        wanted = list(range(description.info.partitions)) if partitions is None else list(partitions)
        for p in wanted:
            if not 0 <= p < description.info.partitions:
                count = plural(description.info.partitions, "partition")
                raise InvalidInputError(f"{topic} has {count}; no partition {p}")
        ends = description.durable_end_offsets  # "latest": the high watermark, as Kafka's
        starts = {s.partition: s.log_start for s in description.partitions}
        if start not in ("earliest", "latest", "committed"):
            raise InvalidInputError(f"start must be 'earliest', 'latest' or 'committed', not {start!r}")
        committed: dict[int, int] = {}
        if group is not None:
            # -1 is how the metadata store says "never committed".
            offsets = client.transport.fetch_offsets(group, topic)
            committed = {o.partition: o.committed_offset for o in offsets if o.committed_offset >= 0}
        self._positions: dict[int, int] = {}
        for p in wanted:
            if p in committed:
                self._positions[p] = committed[p]
            elif start == "latest":
                self._positions[p] = ends.get(p, 0)
            else:
                self._positions[p] = starts.get(p, 0)
        self._ends = {p: ends.get(p, 0) for p in wanted}
        self._start = start
        self.resets = 0  # positions found below the log start and reset (see the module docstring)
        # A consumer of the whole topic takes partitions added later (ALTER TOPIC … ADD
        # PARTITIONS) as it polls, from their start: nothing written into them is skipped.
        self._whole_topic = partitions is None
        self._turn = 0
        self._closed = False

    # -- positions ------------------------------------------------------------------------------
    @property
    def partitions(self) -> list[int]:
        return list(self._positions)

    def position(self, partition: int) -> int:
        return self._positions[self._check(partition)]

    def positions(self) -> dict[int, int]:
        return dict(self._positions)

    def seek(self, partition: int, offset: int) -> None:
        if offset < 0:
            raise InvalidInputError(f"offset must be >= 0, not {offset}")
        self._positions[self._check(partition)] = offset

    def seek_to_beginning(self) -> None:
        """Every position to its partition's log start."""
        starts = {s.partition: s.log_start for s in self.client.describe(self.topic).partitions}
        for p in self._positions:
            self._positions[p] = starts.get(p, 0)

    def seek_to_end(self) -> None:
        ends = self.client.describe(self.topic).durable_end_offsets
        for p in self._positions:
            self._positions[p] = ends.get(p, 0)

    def lag(self) -> int:
        """Records between the positions and the end offsets last seen."""
        return sum(max(self._ends[p] - self._positions[p], 0) for p in self._positions)

    def _check(self, partition: int) -> int:
        if partition not in self._positions:
            raise InvalidInputError(f"this consumer does not read partition {partition} of {self.topic}")
        return partition

    # -- reading --------------------------------------------------------------------------------
    def poll(self, timeout: float = 1.0, max_records: int | None = None) -> pa.Table:
        """The next records of every partition that has some (a `partition` column first,
        then the record columns), waiting up to `timeout` seconds for any to arrive. Empty if
        none did. Like Kafka's poll: one call may return records of several partitions."""
        limit = max_records or self.max_records
        deadline = time.monotonic() + max(timeout, 0)
        self._discover()
        parts = list(self._positions)
        tables: list[pa.Table] = []
        got = 0
        settle_until: float | None = None
        while True:
            # Round robin from where the last poll stopped, so one busy partition cannot
            # starve the others when `limit` cuts a pass short.
            remaining = deadline - time.monotonic()
            wait_ms = 0 if len(parts) > 1 or tables else max(int(remaining * 1000), 0)
            for i in range(len(parts)):
                p = parts[(self._turn + i) % len(parts)]
                try:
                    result = self.client.transport.fetch(
                        self.topic, p, self._positions[p], max_records=limit - got, max_wait_ms=wait_ms,
                        isolation=self.isolation,
                    )  # fmt: skip
                except OffsetOutOfRangeError as exc:
                    self._reset(p, exc)
                    continue
                self._ends[p] = result.end_offset
                n = result.records.num_rows
                if not n and result.next_offset > self._positions[p]:  # aborted records skipped
                    self._positions[p] = result.next_offset
                if n:
                    self._positions[p] = result.next_offset
                    tables.append(result.records.add_column(0, "partition", partition_column(p, n)))
                    got += n
                    if got >= limit:
                        self._turn = (self._turn + i + 1) % len(parts)
                        return pa.concat_tables(tables)
            now = time.monotonic()
            if tables:
                # Reads end at the high watermark: records acknowledged past it are being
                # committed by the round these fetches started. Waiting a moment for them (at
                # most _SETTLE_S, within the timeout) returns what was produced just before
                # the poll in one answer, instead of the part that happened to be durable.
                pending = any(self._ends.get(q, 0) > self._positions[q] for q in parts)
                settle_until = settle_until or min(deadline, now + _SETTLE_S)
                if not pending or now >= settle_until:
                    return pa.concat_tables(tables)
            elif now >= deadline:
                return empty_polled()
            if len(parts) > 1 or tables:
                time.sleep(min(0.02, max(deadline - time.monotonic(), 0)))

    def _reset(self, partition: int, exc: OffsetOutOfRangeError) -> None:
        """The position fell below the log start: move it per the reset policy (Kafka's
        auto.offset.reset), once, and say so."""
        description = self.client.describe(self.topic)
        state = next((s for s in description.partitions if s.partition == partition), None)
        log_start = max(exc.log_start, state.log_start if state is not None else 0)
        before = self._positions[partition]
        if self._start == "latest":
            after = description.durable_end_offsets.get(partition, log_start)
        else:
            after = log_start
        self._positions[partition] = max(after, log_start)
        self.resets += 1
        log.warning(
            "%s/%d: offset %d is below the log start %d (retention removed those records); "
            "reset to %d (%s), skipping %d offsets",
            self.topic,
            partition,
            before,
            log_start,
            self._positions[partition],
            "latest" if self._start == "latest" else "earliest",
            self._positions[partition] - before,
        )

    def _discover(self) -> None:
        """Partitions added since this consumer started: the group's committed offset, else 0.
        The client re-reads the partition count at most every few seconds."""
        if not self._whole_topic:
            return
        count = self.client._partition_count(self.topic)
        if count <= len(self._positions):
            return
        committed: dict[int, int] = {}
        if self.group is not None:
            offsets = self.client.transport.fetch_offsets(self.group, self.topic)
            committed = {o.partition: o.committed_offset for o in offsets if o.committed_offset >= 0}
        for p in range(len(self._positions), count):
            self._positions[p] = committed.get(p, 0)
            self._ends[p] = 0

    def __iter__(self) -> Iterator[ConsumedRecord]:
        """Every record from the current positions on, forever (stop with break or close)."""
        while not self._closed:
            yield from self.records(self.poll(timeout=1.0))

    def records(self, table: pa.Table) -> Iterator[ConsumedRecord]:
        """Plain records of a polled table (a per-record view for convenience, not speed)."""
        cols = table.to_pydict()
        for p, off, ts, key, value, headers in zip(
            cols["partition"],
            cols["offset"],
            cols["timestamp"],
            cols["key"],
            cols["value"],
            cols["headers"],
            strict=True,
        ):
            hdrs = tuple((h["key"], h["value"]) for h in headers) if headers else ()
            yield ConsumedRecord(self.topic, p, off, ts, key, value, hdrs)

    # -- commits --------------------------------------------------------------------------------
    def commit(self) -> None:
        """Store the current positions (the next offsets to read) for the group."""
        if self.group is None:
            raise InvalidInputError("commit() needs a consumer group: consumer(topic, group='…')")
        self.client.transport.commit_offsets(self.group, self.topic, self._positions)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.auto_commit:
            self.commit()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def partition_column(partition: int, n: int) -> pa.Array[Any]:
    return pa.array(np.full(n, partition, dtype=np.int32), type=pa.int32())


def empty_polled() -> pa.Table:
    return RECORD_SCHEMA.empty_table().add_column(0, "partition", pa.array([], pa.int32()))
