"""The idempotent producer (KIP-98): producer ids and per-partition sequence numbers.

A producer gets an id from InitProducerId and numbers its batches per partition. A batch
is written only if its first sequence follows the last written one; a retried batch (same
sequences as one of the last five written) is answered with the offsets it got the first
time and not written again; anything else is OUT_OF_ORDER_SEQUENCE_NUMBER.

Checks and writes for one producer on one partition run under one lock, and a duplicate
is never acknowledged before its original: it waits for the original's acknowledgement.
Given `placed` (resolved once the batch has its offsets, before a durable ack), the lock is
held only until then, so the producer's next batch (pipelined on its connection) is checked
and appended while this one waits for its segment commit; without it, until acknowledged.

LIMIT (issue 12 asks for more): this state lives in the agent's memory. It does not yet
survive an agent restart or travel with the partition to a new leader; a producer whose
state is unknown gets UNKNOWN_PRODUCER_ID and starts a new epoch (clients do so by
themselves), so a batch retried across a restart may be written twice.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.storage.clock import now_ms

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59
KEPT_BATCHES = 5  # Kafka's max.in.flight.requests.per.connection bound for idempotence
_MAX_SEQUENCE = 2**31 - 1


class SequenceError(KafkaProtocolError):
    """A batch refused by its producer id, epoch or sequence; `error_code` says which."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason, api="Produce", field="base_sequence")
        self.error_code = code


@dataclass(frozen=True)
class Written:
    first_sequence: int
    last_sequence: int
    outcome: asyncio.Future[int]  # the base offset once acknowledged, or the append's failure


@dataclass(eq=False)
class _State:
    epoch: int
    written: deque[Written] = field(default_factory=lambda: deque(maxlen=KEPT_BATCHES))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _resolved(base: int) -> asyncio.Future[int]:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    future.set_result(base)
    return future


def _place(placed: asyncio.Future[None], *_: object) -> None:
    if not placed.done():
        placed.set_result(None)


def _retrieve(task: asyncio.Future[int]) -> None:
    """Marks a failure as seen: a shielded append whose request went away still fails quietly
    (its duplicates, if any, get the failure)."""
    if not task.cancelled():
        task.exception()


def _next(sequence: int) -> int:
    return 0 if sequence == _MAX_SEQUENCE else sequence + 1


class ProducerStates:
    """Producer ids handed out by this agent and the sequence state per (topic, partition,
    producer id). At most `max_states` states are kept; the least recently used go first
    (their producers then get UNKNOWN_PRODUCER_ID and start a new epoch)."""

    def __init__(self, max_states: int = 100_000) -> None:
        # Time-based so ids from an earlier run of this agent are not handed out again; the
        # random low bits keep two agents started in the same millisecond apart.
        self._next_id = (now_ms() << 12) | random.getrandbits(12)
        self.max_states = max_states
        self.states: OrderedDict[tuple[str, int, int], _State] = OrderedDict()

    def new_producer(self) -> int:
        pid = self._next_id
        self._next_id += 1 << 12
        return pid

    async def write(
        self,
        topic: str,
        partition: int,
        producer_id: int,
        epoch: int,
        first_sequence: int,
        count: int,
        append: Callable[[], Awaitable[int]],
        placed: asyncio.Future[None] | None = None,
    ) -> int:
        """The base offset of the batch: `append()`'s, or the original's for a retry. `placed`,
        if given, is resolved by `append()` once the batch has its offsets."""
        if producer_id < 0:
            return await append()
        key = (topic, partition, producer_id)
        state = self.states.get(key)
        if state is None:
            if first_sequence != 0:
                raise SequenceError(
                    f"producer {producer_id} is unknown on {topic}/{partition} (sequence {first_sequence})",
                    UNKNOWN_PRODUCER_ID,
                )
            state = self.states[key] = _State(epoch)
            while len(self.states) > self.max_states:
                self.states.popitem(last=False)
        self.states.move_to_end(key)
        last = (first_sequence + count - 1) % (_MAX_SEQUENCE + 1)
        async with state.lock:
            if epoch < state.epoch:
                raise SequenceError(f"producer {producer_id} epoch {epoch} is fenced by {state.epoch}",
                                    INVALID_PRODUCER_EPOCH)  # fmt: skip
            if epoch > state.epoch:
                if first_sequence != 0:
                    raise SequenceError(f"a new epoch starts at sequence 0, not {first_sequence}",
                                        OUT_OF_ORDER_SEQUENCE_NUMBER)  # fmt: skip
                state.epoch = epoch
                state.written.clear()
            original = None
            for done in state.written:
                if done.first_sequence == first_sequence and done.last_sequence == last:
                    original = done.outcome
            if original is None:
                expected = _next(state.written[-1].last_sequence) if state.written else 0
                if first_sequence != expected:
                    raise SequenceError(
                        f"producer {producer_id} sent sequence {first_sequence} on {topic}/{partition}, "
                        f"expected {expected}",
                        OUT_OF_ORDER_SEQUENCE_NUMBER,
                    )
                if placed is None:
                    base = await append()
                    state.written.append(Written(first_sequence, last, _resolved(base)))
                    return base
                # Shielded: a cancelled request (its connection closed) does not cancel an
                # append others may wait on as duplicates; it ends by itself with its ack.
                task = asyncio.ensure_future(append())
                task.add_done_callback(_retrieve)
                task.add_done_callback(functools.partial(_place, placed))  # refused before placing
                await asyncio.shield(placed)
                if task.done() and (task.cancelled() or task.exception() is not None):
                    return await task  # refused before it was written: nothing to remember
                state.written.append(Written(first_sequence, last, task))
                original = task
        # A retry is acknowledged with its original's offsets once the original is (outside
        # the lock, so the producer's later batches are not held up).
        return await asyncio.shield(original)
