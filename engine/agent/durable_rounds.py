"""acks=durable group commit of an agent's led partitions (docs/DESIGN.md §6): the waits of
durable acks and the rounds of rolls that answer them. PartitionManager (partitions.py) owns
the led partitions and their flush; this class only decides when a durable roll starts and
wakes the acks a commit covers. How long a roll lingers for records on their way is
durable_linger.py's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.durable_linger import PIPELINED_ROLL_BYTES, Led, first_of
from streamhouse.agent.flush_health import FlushHealth
from streamhouse.storage.tasks import retrieve

Key = tuple[str, int]
# PartitionManager._flush: roll `led`'s buffer into a segment; `staged` is called once it has
# uploaded (the commit is still to come).
Flush = Callable[[Key, Led, Callable[[], None] | None], Coroutine[Any, Any, None]]


class DurableRounds:
    def __init__(self, config: AgentConfig, led: Mapping[Key, Led], flush: Flush, health: FlushHealth) -> None:
        self.config = config
        self._led = led  # the manager's own dict: a partition dropped there ends its rounds
        self._flush = flush
        self._health = health

    async def wait(self, key: Key, end: int) -> None:
        """Until a committed segment of the led partition `key` reaches `end`."""
        led = self._led[key]
        if led.writer.durable_end >= end:
            return
        await self.waiter(key, led, end)

    def waiter(self, key: Key, led: Led, end: int) -> asyncio.Future[None]:
        """A future acknowledged once a committed segment reaches `end`; starts the group
        commit (_rounds) if it is not running."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        led.add_waiter(end, done)
        if led.durable_task is None or led.durable_task.done():
            led.durable_task = asyncio.create_task(self._rounds(key, led))
        return done

    def make_durable(self, key: Key) -> None:
        """A durable round for what `key`'s leader acknowledged past its durable end, if no
        round is already promised to reach it; nobody awaits it (PartitionManager.make_durable)."""
        led = self._led.get(key)
        if led is None or led.writer.fenced:
            return
        end = led.writer.next_offset
        if led.writer.durable_end >= end or any(need >= end for need, _ in led.durable_waiters):
            return  # nothing past the durable end, or a round already promised to reach it
        self.waiter(key, led, end).add_done_callback(retrieve)  # nobody awaits it: a failure is the flush's to report

    async def _rounds(self, key: Key, led: Led) -> None:
        """Natural group commit: roll at once while durable acks wait. The acks that arrive
        while a roll encodes and uploads share the next roll, which starts the moment that
        one has uploaded and only waits for its commit (storage/partition/roll.py pipelines
        two rolls: one uploading, one committing). No fixed timer: a lone producer waits for
        one roll, a busy partition for one or two, and a roll's size follows the load (a timer
        bounded durable throughput at in-flight requests x batch size per window); only a
        partition receiving tens of MB/s lets a roll wait up to 15 ms for the records on their
        way (durable_linger.py), a roll per request being mostly fixed cost.
        `durable_flush_ms` > 0 keeps a minimum gap between a partition's durable roll
        starts: fewer, larger segments for more latency. A failed roll acknowledges nothing
        and the next waits out a backoff."""
        gap_s = self.config.durable_flush_ms / 1000
        rolls: set[asyncio.Task[None]] = set()
        try:
            while self._led.get(key) is led:
                if not led.durable_waiters:
                    if not rolls:
                        break
                    # A roll still releasing its WAL entries: an ack arriving meanwhile finds
                    # this task alive and relies on it.
                    led.waiter_added.clear()
                    await first_of(led.waiter_added.wait(), *rolls)
                    continue
                delay = max(led.durable_at + gap_s - time.monotonic(), self._health.wait_s(key))
                if delay > 0:
                    await asyncio.sleep(delay)
                await led.linger()  # a busy partition's roll waits for what is on its way
                before = led.writer.durable_end
                staged = asyncio.Event()
                led.waiter_added.clear()
                roll = asyncio.create_task(self._flush(key, led, staged.set))
                rolls.add(roll)
                roll.add_done_callback(rolls.discard)
                await first_of(staged.wait(), roll)
                # Uploaded, committing. A second roll in flight costs a whole roll's CPU to save
                # part of one commit's latency: start it now only once enough arrived since the
                # cut (a busy partition), else when this roll has committed.
                while not roll.done() and led.writer.uncut_bytes < PIPELINED_ROLL_BYTES:
                    led.waiter_added.clear()
                    await first_of(led.waiter_added.wait(), roll)
                moved = led.writer.durable_end != before
                if roll.done() and led.durable_waiters and not moved and self._health.wait_s(key) == 0:
                    # A roll that moved nothing yet left acks waiting must not turn this loop
                    # into a busy spin (without a gap nothing else slows it down).
                    await asyncio.sleep(self.config.flush_check_ms / 1000)
        finally:
            if rolls:
                await asyncio.wait(set(rolls))

    @staticmethod
    def wake(led: Led) -> None:
        """Acknowledge the durable waiters the writer's committed end now covers."""
        end = led.writer.durable_end
        still: list[tuple[int, asyncio.Future[None]]] = []
        for need, done in led.durable_waiters:
            if need <= end:
                if not done.done():
                    done.set_result(None)
            else:
                still.append((need, done))
        led.durable_waiters = still
