"""What a partition's leader knows of the idempotent batches that were committed and never
answered (issue 19, finding 6; engine/kafka/unacked.py decides when a batch is one).

A Kafka client that bumps its producer epoch sends again, from sequence 0, every message it had
no answer for. The leader voids the older copies it wrote, but after a leader move the new
leader did not know which of the old leader's batches went unanswered: 496 values twice in a
fault run, when an agent committed batches after its client had closed the connection and was
killed before the client came back under a new epoch. So such batches are kept in the metadata
store (migration 0015), and every writer loads the partition's rows when it takes the lease.
Only the leader at its lease epoch may add rows (the store fences the insert), so the rows a
writer loaded plus the ones it added are all there are while it leads: the Kafka layer asks
it, without IO, before it answers a batch with success (rows that answer covers are deleted
first) and before it writes a producer's newer epoch (older rows are voided).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence

from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch

log = logging.getLogger(__name__)

# Rows one partition keeps; past it the oldest are forgotten, store and memory together (a
# forgotten batch is only never voided, never wrongly voided).
MAX_ROWS = 10_000

Name = tuple[int, int, int]  # producer id, epoch, first sequence


def _name(b: ProducerBatch) -> Name:
    return (b.producer_id, b.producer_epoch, b.first_sequence)


class UnansweredBatches:
    """One partition's unanswered batches as its writer (holder at lease epoch) knows them."""

    def __init__(self, metadata: MetadataStore, topic: str, partition: int, holder: str, epoch: int) -> None:
        self._metadata = metadata
        self.topic = topic
        self.partition = partition
        self.holder = holder
        self.epoch = epoch
        self._rows: dict[Name, ProducerBatch] = {}  # oldest first
        self._producers: dict[int, int] = {}  # producer id -> its rows here

    async def load(self, producers: Collection[int], committed_end: int) -> None:
        """The stored rows, read once the lease is held (no other agent adds any after that).

        `producers` are the ids the store has producer states for, `committed_end` the end of
        the partition's committed segments. A row's batch below that end was committed with
        its producer's state, so a row whose producer has none left belongs to a producer
        silent past EXPIRY_MS: forgotten, as Kafka forgets it, rather than kept until MAX_ROWS.
        Rows past the end are kept whatever the producer (their state may not be stored yet)."""
        expired: list[ProducerBatch] = []
        for b in await self._metadata.kafka_unanswered(self.topic, self.partition):
            if b.producer_id not in producers and b.end_offset <= committed_end:
                expired.append(b)
            self._add(b)
        if expired:
            try:
                await self.drop(expired)
            except StreamHouseError as exc:  # a clean-up: the take-over goes on, the rows stay
                log.warning("%s/%d: kept unanswered batches of expired producers not forgotten: %s",
                            self.topic, self.partition, exc)  # fmt: skip
            else:
                log.info("%s/%d: %d kept unanswered batches of expired producers forgotten",
                         self.topic, self.partition, len(expired))  # fmt: skip
        if self._rows:
            log.info("%s/%d: %d idempotent batches committed and left unanswered by an earlier leader are known",
                     self.topic, self.partition, len(self._rows))  # fmt: skip

    def of(self, producer_id: int) -> tuple[ProducerBatch, ...]:
        """The producer's unanswered batches, by epoch and offset (asked before every success
        answer: no rows, the usual case, costs one set lookup)."""
        if producer_id not in self._producers:
            return ()
        found = [b for b in self._rows.values() if b.producer_id == producer_id]
        return tuple(sorted(found, key=lambda b: (b.producer_epoch, b.base_offset)))

    async def keep(self, batches: Iterable[ProducerBatch]) -> None:
        """Store `batches` as unanswered (FencedError if this writer no longer leads)."""
        new = [b for b in batches if _name(b) not in self._rows]
        if not new:
            return
        await self._metadata.kafka_keep_unanswered(self.topic, self.partition, self.holder, self.epoch, new)
        for b in new:
            self._add(b)
        if len(self._rows) > MAX_ROWS:
            await self.drop(list(self._rows.values())[: len(self._rows) - MAX_ROWS])

    async def drop(self, batches: Sequence[ProducerBatch]) -> None:
        """Forget `batches` (answered after all, or voided): deleted from the store first."""
        known = [b for b in batches if _name(b) in self._rows]
        if not known:
            return
        await self._metadata.kafka_drop_unanswered(self.topic, self.partition, known)
        for b in known:
            if self._rows.pop(_name(b), None) is not None:
                left = self._producers[b.producer_id] - 1
                if left:
                    self._producers[b.producer_id] = left
                else:
                    del self._producers[b.producer_id]

    def _add(self, b: ProducerBatch) -> None:
        if _name(b) not in self._rows:
            self._rows[_name(b)] = b
            self._producers[b.producer_id] = self._producers.get(b.producer_id, 0) + 1
