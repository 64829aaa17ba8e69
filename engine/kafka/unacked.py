"""Idempotent batches an agent wrote but never acknowledged, voided once their producer starts
a new epoch (issue 19, the last finding of the fault runs; docs/DESIGN.md §10).

When the object store stays unreachable past an idempotent client's `message.timeout.ms`, the
acks=all batches a leader appended before the stall showed (ack_stalls.py) cannot be
acknowledged. librdkafka then bumps its producer epoch by itself (KIP-360) and sends every
message still waiting for a retry again, from sequence 0 of the new epoch. The sequence check
cannot tie those to the copies already written, so when the store came back both were
committed: 3,053 values twice in a 42-minute fault run. A Kafka broker writes them twice too.

The leader knows more than a broker uses: which of the producer's batches it never answered
with success. A client that never had an answer for a batch cannot count on it being written
(librdkafka reports it "possibly persisted" if it gives up on it, and sends it again if it
does not). So when the first batch of a newer epoch comes, the older batches this agent wrote
and has not acknowledged are voided before the new batch is written: stored as aborted ranges
(storage/metadata/transactions.py), which every read_committed reader (Kafka read_committed
fetches, SQL, jobs, the SDK's reads) skips like an aborted transaction's records. Their offsets
stay, so nothing moves. From then on none of them is answered with success: a late
acknowledgement and a retry under the old epoch both get INVALID_PRODUCER_EPOCH.

A success answer counts when it is written, not when its handler ends (answers.py: they go
out in request order), and not when written after the client closed its side of the
connection: librdkafka closes it when a request times out and then re-sends those messages
(handlers_produce.py `_answer`).

Batches written by another leader (the partition moved meanwhile) are known through the
metadata store (issue 19, finding 6: 496 values twice when the leader that had committed
them without answering was killed before the client came back): a batch whose success answer
could not be made (the client had closed) is kept there (`Kept`, storage/partition/
unanswered.py), the new epoch's void takes the producer's kept rows of older epochs with
this agent's own, and a success answer first deletes the kept rows it acknowledges (itself,
and by the implicit ack the epoch's earlier ones), so no acknowledged batch is ever voided.

What this does not cover, written down in README "Durability under faults": read_uncommitted
readers still see both copies (as they see aborted transactions); a batch committed before
its void was readable until then; a batch whose leader lost its lease, or died, between the
commit and keeping its row is not known elsewhere and stays; a success answer that reaches
the client after it gave up on the request but before its close reached this agent
(connection.py asks the socket, so that is microseconds) counts as acknowledged. A request
cancelled before its batch is placed (its connection closed) still tracks it: idempotence.py
notes the batch under the producer's lock. Only acks=all batches are tracked: acks=1 is
answered as soon as it is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.tasks import retrieve

log = logging.getLogger(__name__)

Key = tuple[str, int, int]  # topic, partition, producer id
Void = Callable[[str, int, Sequence[ProducerBatch]], Awaitable[None]]
# Producers (x partition) with batches waiting for an answer, and voided batches remembered for
# their late answers; past these the oldest go (a forgotten batch is simply not voided).
MAX_PRODUCERS = 10_000
MAX_BATCHES = 1_000  # per producer and partition (a stall refuses new batches long before)
MAX_VOIDED = 10_000


class Kept(Protocol):
    """The batches the partition's leaders committed and could not answer, kept in the
    metadata store (the front end's unanswered, keep_unanswered and drop_unanswered)."""

    async def unanswered(self, topic: str, partition: int, producer_id: int) -> tuple[ProducerBatch, ...]: ...

    async def keep_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None: ...

    async def drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None: ...


class Unacknowledged:
    """Per (topic, partition, producer id): its written batches not yet answered with success."""

    def __init__(self, void: Void, kept: Kept | None = None) -> None:
        self._void = void
        self._kept = kept
        self._keeping: set[asyncio.Task[None]] = set()
        self._pending: dict[Key, dict[tuple[int, int], ProducerBatch]] = {}  # oldest producer first
        self._voided: dict[tuple[Key, int, int], None] = {}  # (key, epoch, first sequence), oldest first

    def written(self, key: Key, batch: ProducerBatch) -> None:
        """`batch` has its offsets and waits for its acknowledgement."""
        if (key, batch.producer_epoch, batch.first_sequence) in self._voided:
            return  # a retry of a voided batch answered with the original's offsets: stays voided
        batches = self._pending.pop(key, None) or {}
        batches[(batch.producer_epoch, batch.first_sequence)] = batch
        if len(batches) > MAX_BATCHES:
            del batches[next(iter(batches))]
        self._pending[key] = batches  # re-inserted last: the dict's order is its age
        if len(self._pending) > MAX_PRODUCERS:
            del self._pending[next(iter(self._pending))]

    def is_answerable(self, key: Key, epoch: int, first_sequence: int) -> bool:
        """Whether the batch may still be answered with success (False: it was voided)."""
        return (key, epoch, first_sequence) not in self._voided

    def acknowledge(self, key: Key, epoch: int, first_sequence: int) -> None:
        """The batch is being answered with success: it is never voided after this. Called as
        the answer is made, after `is_answerable`, with nothing awaited in between.

        So are its producer's earlier batches of the epoch still waiting here: librdkafka takes
        a success answer as delivering every earlier message of the partition it still waits
        to retry (its "implicit ack"), so voiding one of them would hide records the client
        was told are written. That includes the head of a batch only whose tail was written
        (idempotence.py), which lies in an earlier batch."""
        batches = self._pending.get(key)
        if batches is None:
            return
        done = batches.pop((epoch, first_sequence), None)
        if done is not None and batches:
            earlier = [n for n, b in batches.items() if b.producer_epoch == epoch and b.base_offset < done.base_offset]
            for name in earlier:
                del batches[name]
        if not batches:
            del self._pending[key]

    async def new_epoch(self, key: Key, epoch: int) -> None:
        """Before the first batch of `epoch` is written: the producer's older batches still
        unanswered are stored as voided (StorageUnavailableError and the like refuse the new
        batch, retriably, and nothing changes), then never answered with success."""
        batches = self._pending.get(key) or {}
        older = [b for b in batches.values() if b.producer_epoch < epoch]
        # Kept rows of older epochs: this agent's (already among `older`) and other leaders'.
        kept = [] if self._kept is None else [
            b for b in await self._kept.unanswered(key[0], key[1], key[2]) if b.producer_epoch < epoch
        ]  # fmt: skip
        mine = {(b.producer_epoch, b.first_sequence) for b in older}
        older += [b for b in kept if (b.producer_epoch, b.first_sequence) not in mine]
        if not older:
            return
        # Voided here before the store has them: an acknowledgement due while the rows are
        # written must not say written about a batch they are about to hide.
        for b in older:
            batches.pop((b.producer_epoch, b.first_sequence), None)
            self._voided[(key, b.producer_epoch, b.first_sequence)] = None
        try:
            await self._void(key[0], key[1], older)
        except BaseException:
            for b in older:  # not stored: still unanswered (a refusal meanwhile is only an error)
                self._voided.pop((key, b.producer_epoch, b.first_sequence), None)
                batches[(b.producer_epoch, b.first_sequence)] = b
            self._pending[key] = batches
            raise
        if not batches and self._pending.get(key) is batches:
            del self._pending[key]
        while len(self._voided) > MAX_VOIDED:
            del self._voided[next(iter(self._voided))]
        if kept and self._kept is not None:
            try:  # voided now: a row left behind (the store just went away) is voided again, harmlessly
                await self._kept.drop_unanswered(key[0], key[1], kept)
            except StreamHouseError as exc:
                log.info("kafka %s/%s: kept rows of voided batches not deleted: %s", key[0], key[1], exc)

    async def answering(self, key: Key, batch: ProducerBatch) -> list[ProducerBatch]:
        """Before `batch` is answered with success: the kept rows that answer acknowledges (the
        batch's own and its epoch's earlier ones, the implicit ack) are deleted from the store,
        so no leader voids them later. Returns them, to be kept again if the answer is not
        made after all (`not_answered`). StorageUnavailableError and the like: nothing may be
        answered with success."""
        if self._kept is None:
            return []
        kept = await self._kept.unanswered(key[0], key[1], key[2])
        acked = [b for b in kept if b.producer_epoch == batch.producer_epoch and b.base_offset <= batch.base_offset]
        if acked:
            await self._kept.drop_unanswered(key[0], key[1], acked)
        return acked

    def not_answered(self, key: Key, batches: Sequence[ProducerBatch]) -> None:
        """`batches` are committed and their success answer could not be made (the client had
        closed): kept in the store, in the background, for whichever agent leads the partition
        when the producer starts a new epoch."""
        if self._kept is None or not batches:
            return
        task = asyncio.ensure_future(self._keep(key, list(batches)))
        self._keeping.add(task)
        task.add_done_callback(self._keeping.discard)
        task.add_done_callback(retrieve)

    async def _keep(self, key: Key, batches: list[ProducerBatch]) -> None:
        assert self._kept is not None
        try:
            await self._kept.keep_unanswered(key[0], key[1], batches)
        except StreamHouseError as exc:  # lost the lease, or the store is away: known here only
            log.warning("kafka %s/%s: %d unanswered batches of producer %d known to this agent only: %s",
                        key[0], key[1], len(batches), key[2], exc)  # fmt: skip

    def pending(self, key: Key) -> list[ProducerBatch]:
        """The producer's batches waiting for an answer, oldest epoch and offset first (tests, metrics)."""
        return sorted((self._pending.get(key) or {}).values(), key=lambda b: (b.producer_epoch, b.base_offset))
