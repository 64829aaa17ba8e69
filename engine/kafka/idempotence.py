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

A batch refused without being written (a stall, a lost leadership, a store outage: retriable
answers) leaves a gap its producer fills by retrying in order. The batches it already had in
flight behind that one are refused retriably as well (NOT_ENOUGH_REPLICAS), not as out of
order: librdkafka answers OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID there by bumping
its epoch, which renumbers from sequence 0 every message waiting for a retry, messages this
leader has already written under the old epoch included (issue 19, finding 1).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata.producer_state import SEQUENCE_SPAN, ProducerBatch, ProducerState
from streamhouse.storage.tasks import retrieve

log = logging.getLogger(__name__)

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59
NOT_ENOUGH_REPLICAS = 19  # retriable, "not written": the client retries in order, same epoch
UNKNOWN_OFFSET = -1  # a batch answered without one base offset (only its tail was written)
MAX_REFUSED = 10_000  # remembered refusals (producer x partition), the oldest go first

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


def _expected(state: ProducerState | None, epoch: int) -> int:
    """The sequence a batch of `epoch` must start at unless it repeats a kept batch."""
    return state.next_sequence if state is not None and epoch == state.producer_epoch else 0


def _place(placed: asyncio.Future[None], *_: object) -> None:
    if not placed.done():
        placed.set_result(None)


async def _placed_then_noted(
    placed: asyncio.Future[None],
    written: Callable[[ProducerBatch], None],
    task: asyncio.Future[int],
    lookup: Callable[[], Awaitable[ProducerState | None]],
    epoch: int,
    first_sequence: int,
    last: int,
) -> None:
    """Once the batch is placed, hands `written` the batch with its offsets, from the leader's
    state (it is the newest batch there, or the original a retry repeats). Refused before it
    was placed, not found, or the state not read: the batch is not tracked, which only means
    it is never voided (unacked.py)."""
    await placed
    if task.done() and (task.cancelled() or task.exception() is not None):
        return  # refused before it was placed
    try:
        state = await lookup()
    except StreamHouseError:
        return
    found = state.find(epoch, first_sequence, last) if state is not None else None
    if found is not None:
        written(found)


class ProducerStates:
    """One lock per (topic, partition, producer id) while a request of that producer is being
    checked and placed; nothing else is remembered here."""

    def __init__(self) -> None:
        self._slots: dict[Key, _Slot] = {}
        # The producer's next batch was refused without being written (a stall, a lost
        # leadership, a store outage): (epoch, its first sequence), oldest first.
        self._refused: dict[Key, tuple[int, int]] = {}

    async def write(
        self,
        topic: str,
        partition: int,
        producer_id: int,
        epoch: int,
        first_sequence: int,
        count: int,
        lookup: Callable[[], Awaitable[ProducerState | None]],
        append: Callable[[int], Awaitable[int]],
        placed: asyncio.Future[None] | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
        new_epoch: Callable[[], Awaitable[None]] | None = None,
        written: Callable[[ProducerBatch], None] | None = None,
        tail_only: bool = False,
    ) -> int:
        """The base offset of the batch: `append(0)`'s, which is the original's for a retry.
        `lookup()` reads the leader's state of the producer; `placed`, if given, is resolved by
        `append()` once the batch has its offsets, and releases the lock. `admit()`, if given,
        may refuse a batch that would be written anew (ack_stalls.py), before the lock is
        taken; a retry of a written batch is not asked. `new_epoch()`, if given, runs before
        the first batch of a newer epoch than the leader's is written, and `written(batch)`
        once the batch is placed with its offsets, both under the lock (unacked.py).

        `tail_only` (not for transactions, whose batches are registered by their first
        sequence): a batch whose first messages are written already and the rest not (it
        straddles the producer's last written sequence: see `_write`) has only its tail
        appended, `append(skip)` leaving out the first `skip` records, and is answered with
        UNKNOWN_OFFSET, since its records are not at consecutive offsets."""
        if producer_id < 0:
            return await append(0)
        last = (first_sequence + count - 1) % SEQUENCE_SPAN
        key = (topic, partition, producer_id)
        head = [False]  # the batch the producer's sequence continues with: a refusal is remembered
        try:
            if admit is not None:
                known = await lookup()
                if known is None or known.find(epoch, first_sequence, last) is None:
                    head[0] = first_sequence == _expected(known, epoch)
                    await admit()
            hooks = (new_epoch, written)
            return await self._write(key, epoch, first_sequence, last, lookup, append, placed, head, hooks, tail_only)
        except SequenceError:
            raise
        except StreamHouseError:
            if head[0]:
                self._note_refused(key, epoch, first_sequence)
            raise

    def _note_refused(self, key: Key, epoch: int, first_sequence: int) -> None:
        """The earliest refused batch of the epoch counts (several in flight may fail at once)."""
        known = self._refused.pop(key, None)  # re-inserted last: the dict's order is its age
        if known is not None and known[0] == epoch and (first_sequence - known[1]) % SEQUENCE_SPAN < SEQUENCE_SPAN // 2:
            first_sequence = known[1]
        self._refused[key] = (epoch, first_sequence)
        if len(self._refused) > MAX_REFUSED:
            del self._refused[next(iter(self._refused))]

    async def _write(
        self,
        key: Key,
        epoch: int,
        first_sequence: int,
        last: int,
        lookup: Callable[[], Awaitable[ProducerState | None]],
        append: Callable[[int], Awaitable[int]],
        placed: asyncio.Future[None] | None,
        head: list[bool],
        hooks: tuple[Callable[[], Awaitable[None]] | None, Callable[[ProducerBatch], None] | None] = (None, None),
        tail_only: bool = False,
    ) -> int:
        topic, partition, producer_id = key
        slot = self._slots.setdefault(key, _Slot())
        slot.users += 1
        try:
            async with slot.lock:
                state = await lookup()
                where = f"{topic}/{partition}"
                # A batch whose first messages are in the log and the rest not, its boundaries
                # unlike the written batches': after a leader move the client re-sent, from the
                # middle of what the old leader had written and not acknowledged, a batch
                # reaching past it (the fourteenth fault run). Answered OUT_OF_ORDER_SEQUENCE_
                # NUMBER, as a Kafka broker does, the client bumped its epoch and sent all of it
                # again: 1,495 values twice. Its tail continues the sequence, so only it is new.
                skip = state.written_head(epoch, first_sequence, last) if tail_only and state is not None else 0
                if skip:
                    log.info("kafka %s: batch of producer %d epoch %d sequences %d..%d holds %d written already; "
                             "the rest starts at sequence %d", where, producer_id, epoch, first_sequence, last, skip,
                             (first_sequence + skip) % SEQUENCE_SPAN)  # fmt: skip
                first_sequence = (first_sequence + skip) % SEQUENCE_SPAN
                self._refuse_behind_refused(key, state, epoch, first_sequence, last, where)
                check_sequence(state, producer_id, epoch, first_sequence, last, where)
                if first_sequence == _expected(state, epoch) and (
                    state is None or state.find(epoch, first_sequence, last) is None
                ):
                    head[0] = True
                    self._refused.pop(key, None)  # the gap is being filled
                new_epoch, written = hooks
                if new_epoch is not None and (state is None or epoch > state.producer_epoch):
                    await new_epoch()
                if placed is None:
                    base = await append(skip)
                    return UNKNOWN_OFFSET if skip else base
                # Shielded: a cancelled request (its connection closed) does not cancel an
                # append a duplicate may be about to find; it ends by itself with its ack.
                task = asyncio.ensure_future(append(skip))
                task.add_done_callback(retrieve)  # a request gone away: its append fails quietly
                task.add_done_callback(functools.partial(_place, placed))  # refused before placing
                if written is None:
                    await asyncio.shield(placed)
                else:
                    # Noted under the lock even when the request is cancelled meanwhile (its
                    # connection closed): the append goes on, and a batch not tracked could not
                    # be voided by its producer's next epoch (unacked.py).
                    noting = asyncio.ensure_future(_placed_then_noted(placed, written, task, lookup, epoch,
                                                                      first_sequence, last))  # fmt: skip
                    try:
                        await asyncio.shield(noting)
                    except asyncio.CancelledError:
                        await noting  # the lock is held until the batch is placed and noted
                        raise
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(key) is slot:
                del self._slots[key]
        # Acknowledged outside the lock, so the producer's next batch is checked meanwhile.
        base = await asyncio.shield(task)
        return UNKNOWN_OFFSET if skip else base

    def _refuse_behind_refused(
        self, key: Key, state: ProducerState | None, epoch: int, first_sequence: int, last: int, where: str
    ) -> None:
        """A batch behind a gap that a refused batch left (it was not written, and its
        producer will send it again) is refused the same retriable way, not with
        OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID: librdkafka answers those by
        bumping its producer epoch, which renumbers every message waiting for a retry from
        sequence 0, including messages already written under the old epoch (issue 19)."""
        refused = self._refused.get(key)
        if refused is None:
            return
        expected = _expected(state, epoch)
        if refused != (epoch, expected):
            return
        if first_sequence == expected or (state is not None and state.find(epoch, first_sequence, last)):
            return
        raise SequenceError(
            f"producer {key[2]} sent sequence {first_sequence} on {where} behind sequence {expected}, "
            "which was refused and not written: retry from there",
            NOT_ENOUGH_REPLICAS,
        )
