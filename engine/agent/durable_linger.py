"""What one led partition keeps for its acks=durable group commit (DurableRounds in
engine/agent/durable_rounds.py), and how long its next durable roll waits for more records.

Each durable roll has a fixed cost on top of its records' (Parquet writer set-up and footer,
a new object: a file create and two fsyncs, or an S3 PUT; a metadata commit): about 1.5 ms of
CPU. Rolling the moment an ack waits made a roll per produce request under load (70-130 per
million records at ~1 M rec/s), and those fixed costs were a third of the agent's CPU per
record. So a roll about to start waits a little for the records that are on their way, but
only where they are: when the partition's recent arrival rate brings at least
LINGER_MIN_BYTES within LINGER_MAX_S. A partition receiving less (a producer paced at 10 k
rec/s of 100 B is ~1.2 MB/s; the threshold is ~17 MB/s) never waits, so its latency is
unchanged. The wait ends as soon as LINGER_TARGET_BYTES are buffered, after LINGER_MAX_S,
or when no produce arrives for twice the recent gap between them (the producer has stopped,
or waits for these very acks: its in-flight window is full)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from streamhouse.storage.partition.writer import PartitionWriter

# Durable group commit (DurableRounds._rounds): the bytes that must arrive while one
# roll commits for the next to start before that commit ends. About 10 k Kafka records of 100 B:
# below it a second roll in flight is mostly fixed cost.
PIPELINED_ROLL_BYTES = 1 << 20
# A roll this big starts at once. Below what a producer keeps in flight while the previous roll
# commits (5 requests of up to 1 MB for a Kafka client with the Java defaults' max.in.flight):
# 4 MiB (with 20 ms) made fewer rolls (~30 per M records) but its bench runs were slower more
# often: a producer bound by its window cannot fill such a roll, which then waits it out.
LINGER_TARGET_BYTES = 3 << 20
LINGER_MAX_S = 0.015  # the most a roll waits for more records
LINGER_MIN_BYTES = 256 << 10  # a roll waits only if the arrival rate brings this much in LINGER_MAX_S
_MIN_GAP_S = 0.001


@dataclass
class ArrivalRate:
    """A partition's acks=durable arrivals, measured at each roll's cut: bytes per second and
    the mean gap between produces (each halfway towards the last interval's value)."""

    bytes_per_s: float = 0.0
    gap_s: float = 0.0
    arrivals: int = 0  # durable waits added since the last cut
    last_cut_at: float | None = None

    def cut(self, now: float, nbytes: int) -> None:
        if self.last_cut_at is not None and now > self.last_cut_at:
            interval = now - self.last_cut_at
            rate, gap = nbytes / interval, interval / max(self.arrivals, 1)
            first = self.bytes_per_s == 0
            self.bytes_per_s = rate if first else (self.bytes_per_s + rate) / 2
            self.gap_s = gap if first else (self.gap_s + gap) / 2
        self.last_cut_at = now
        self.arrivals = 0

    def linger_s(self, uncut: int, now: float) -> float:
        """How long a roll about to cut `uncut` bytes at `now` may wait for more (0: roll now).
        The rate is also bounded by what arrived since the last cut: a partition that went
        quiet after a burst does not make its next lone produce wait."""
        rate = self.bytes_per_s
        if self.last_cut_at is not None:
            rate = min(rate, uncut / max(now - self.last_cut_at, 1e-6))
        if uncut >= LINGER_TARGET_BYTES or rate * LINGER_MAX_S < LINGER_MIN_BYTES:
            return 0.0
        return min(LINGER_MAX_S, (LINGER_TARGET_BYTES - uncut) / rate)


@dataclass
class Led:
    """One led partition: its writer and the durable acks waiting for its next roll."""

    writer: PartitionWriter
    durable_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    # Group commit for acks=durable: the next durable roll starts once the last one has
    # uploaded and a new ack waits (see DurableRounds._rounds). `durable_at` is when the last
    # durable roll started (monotonic seconds), for the optional minimum gap `durable_flush_ms`.
    durable_at: float = float("-inf")
    durable_task: asyncio.Task[None] | None = None
    waiter_added: asyncio.Event = field(default_factory=asyncio.Event)
    arrival: ArrivalRate = field(default_factory=ArrivalRate)

    def add_waiter(self, end: int, done: asyncio.Future[None]) -> None:
        self.durable_waiters.append((end, done))
        self.arrival.arrivals += 1
        self.waiter_added.set()

    async def linger(self) -> None:
        """Before a durable roll cuts: wait while more records are on their way (module doc),
        then note the cut in the arrival rate."""
        now = time.monotonic()
        left = self.arrival.linger_s(self.writer.uncut_bytes, now)
        if left > 0:
            deadline = now + left
            gap = max(2 * self.arrival.gap_s, _MIN_GAP_S)
            while left > 0 and self.writer.uncut_bytes < LINGER_TARGET_BYTES:
                self.waiter_added.clear()
                try:
                    await asyncio.wait_for(self.waiter_added.wait(), min(left, gap))
                except TimeoutError:
                    break  # nothing arrived within twice the usual gap: roll what is there
                left = deadline - time.monotonic()
        self.durable_at = time.monotonic()
        self.arrival.cut(self.durable_at, self.writer.uncut_bytes)


async def first_of(*waits: Awaitable[Any]) -> None:
    """Wait until the first of `waits` ends; the others go on (tasks) or are dropped."""
    tasks = [w if isinstance(w, asyncio.Future) else asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task, wait in zip(tasks, waits, strict=True):
            if task is not wait:
                task.cancel()
