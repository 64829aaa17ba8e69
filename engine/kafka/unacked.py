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

What this does not cover, written down in README "Durability under faults": read_uncommitted
readers still see both copies (as they see aborted transactions); a batch committed before
its void was readable until then; batches written by another leader (the partition moved
meanwhile) are not known here and stay; a success answer that reaches the client after it gave
up on the request but before its close reached this agent (connection.py asks the socket, so
that is microseconds) counts as acknowledged. A request cancelled before its batch is placed
(its connection closed) still tracks it: idempotence.py notes the batch under the producer's
lock. Only acks=all batches are tracked: acks=1 is answered as soon as it is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from streamhouse.storage.metadata.producer_state import ProducerBatch

Key = tuple[str, int, int]  # topic, partition, producer id
Void = Callable[[str, int, Sequence[ProducerBatch]], Awaitable[None]]
# Producers (x partition) with batches waiting for an answer, and voided batches remembered for
# their late answers; past these the oldest go (a forgotten batch is simply not voided).
MAX_PRODUCERS = 10_000
MAX_BATCHES = 1_000  # per producer and partition (a stall refuses new batches long before)
MAX_VOIDED = 10_000


class Unacknowledged:
    """Per (topic, partition, producer id): its written batches not yet answered with success."""

    def __init__(self, void: Void) -> None:
        self._void = void
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
        batches = self._pending.get(key)
        if not batches:
            return
        older = [b for b in batches.values() if b.producer_epoch < epoch]
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

    def pending(self, key: Key) -> list[ProducerBatch]:
        """The producer's batches waiting for an answer, oldest epoch and offset first (tests, metrics)."""
        return sorted((self._pending.get(key) or {}).values(), key=lambda b: (b.producer_epoch, b.base_offset))
