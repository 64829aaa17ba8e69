"""The idempotent producer (KIP-98) on the Kafka face: sequence checks per (topic, partition,
producer id) against the state the partition's leader keeps (docs/DESIGN.md §10).

The state itself is not kept here. The partition's writer holds it (storage/partition/writer.py):
each batch of an idempotent producer is tagged with (producer id, epoch, first sequence)
(storage/metadata/producer_state.py), the tag is written in the batch's WAL entry, and the
producer's epoch and last five batches with their offsets are committed with the segment that
holds them. A new leader (after a restart or a leader move) loads the committed states and
adds what its WAL recovery re-appends before it accepts a produce, and the writer answers a
tagged batch it has already written with the original's offsets instead of writing it again.

What this module adds is Kafka's answer to each batch, decided under one lock per producer
and partition: a batch continuing the sequence is appended; a retry of one of the last five
written batches is appended too, and the writer turns it into the original's offsets (then
waits for this request's acks like any produce: with acks=all until the original is committed);
a stale epoch gets INVALID_PRODUCER_EPOCH, a gap OUT_OF_ORDER_SEQUENCE_NUMBER, and a producer
the leader does not know that does not start at sequence 0 UNKNOWN_PRODUCER_ID (what Kafka
answers since KAFKA-15591; clients then start a new epoch). The lock is held until the batch
has its offsets (`placed`), i.e. is in the writer's state or failed: a duplicate of a batch
still being written waits for it, and is never acknowledged before its original is written.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.storage.metadata.producer_state import SEQUENCE_SPAN, ProducerState

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59

Key = tuple[str, int, int]


class SequenceError(KafkaProtocolError):
    """A batch refused by its producer id, epoch or sequence; `error_code` says which."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason, api="Produce", field="base_sequence")
        self.error_code = code


@dataclass(eq=False)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders and waiters: the slot goes when the last one leaves


def check_sequence(
    state: ProducerState | None, producer_id: int, epoch: int, first_sequence: int, last_sequence: int, where: str
) -> None:
    """Raises SequenceError unless the batch continues the producer's sequence or repeats one
    of its kept batches (the writer deduplicates that one)."""
    if state is None or epoch > state.producer_epoch:
        if first_sequence != 0:
            code = UNKNOWN_PRODUCER_ID if state is None else OUT_OF_ORDER_SEQUENCE_NUMBER
            known = "is unknown" if state is None else f"starts epoch {epoch}"
            raise SequenceError(f"producer {producer_id} {known} on {where} at sequence {first_sequence}, not 0", code)
        return
    if epoch < state.producer_epoch:
        raise SequenceError(
            f"producer {producer_id} epoch {epoch} is fenced by epoch {state.producer_epoch} on {where}",
            INVALID_PRODUCER_EPOCH,
        )
    if state.find(epoch, first_sequence, last_sequence) is not None:
        return
    if first_sequence != state.next_sequence:
        raise SequenceError(
            f"producer {producer_id} sent sequence {first_sequence} on {where}, expected {state.next_sequence}",
            OUT_OF_ORDER_SEQUENCE_NUMBER,
        )


def _place(placed: asyncio.Future[None], *_: object) -> None:
    if not placed.done():
        placed.set_result(None)


def _retrieve(task: asyncio.Future[int]) -> None:
    """Marks a failure as seen: a shielded append whose request went away still fails quietly."""
    if not task.cancelled():
        task.exception()


class ProducerStates:
    """One lock per (topic, partition, producer id) while a request of that producer is being
    checked and placed; nothing else is remembered here."""

    def __init__(self) -> None:
        self._slots: dict[Key, _Slot] = {}

    async def write(
        self,
        topic: str,
        partition: int,
        producer_id: int,
        epoch: int,
        first_sequence: int,
        count: int,
        lookup: Callable[[], Awaitable[ProducerState | None]],
        append: Callable[[], Awaitable[int]],
        placed: asyncio.Future[None] | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> int:
        """The base offset of the batch: `append()`'s, which is the original's for a retry.
        `lookup()` reads the leader's state of the producer; `placed`, if given, is resolved by
        `append()` once the batch has its offsets, and releases the lock. `admit()`, if given,
        may refuse a batch that would be written anew (ack_stalls.py), before the lock is
        taken; a retry of a written batch is not asked."""
        if producer_id < 0:
            return await append()
        last = (first_sequence + count - 1) % SEQUENCE_SPAN
        if admit is not None:
            known = await lookup()
            if known is None or known.find(epoch, first_sequence, last) is None:
                await admit()
        key = (topic, partition, producer_id)
        slot = self._slots.setdefault(key, _Slot())
        slot.users += 1
        try:
            async with slot.lock:
                state = await lookup()
                check_sequence(state, producer_id, epoch, first_sequence, last, f"{topic}/{partition}")
                if placed is None:
                    return await append()
                # Shielded: a cancelled request (its connection closed) does not cancel an
                # append a duplicate may be about to find; it ends by itself with its ack.
                task = asyncio.ensure_future(append())
                task.add_done_callback(_retrieve)
                task.add_done_callback(functools.partial(_place, placed))  # refused before placing
                await asyncio.shield(placed)
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(key) is slot:
                del self._slots[key]
        # Acknowledged outside the lock, so the producer's next batch is checked meanwhile.
        return await asyncio.shield(task)
