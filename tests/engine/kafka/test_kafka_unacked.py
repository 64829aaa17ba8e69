"""The bookkeeping of unacknowledged idempotent batches (engine/kafka/unacked.py): what a new
epoch voids, and that an answer made while the void is being stored never says written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streamhouse.kafka.idempotence import ProducerStates
from streamhouse.kafka.unacked import Unacknowledged
from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.model import partition_resource
from streamhouse.storage.partition.unanswered import UnansweredBatches

KEY = ("t", 0, 7)


def _batch(epoch: int, first: int, base: int, n: int = 5) -> ProducerBatch:
    return ProducerBatch(7, epoch, first, first + n - 1, base, n)


async def test_a_new_epoch_voids_only_older_unanswered_batches() -> None:
    stored: list[list[ProducerBatch]] = []

    async def void(topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        stored.append(list(batches))

    unacked = Unacknowledged(void)
    answered, left = _batch(0, 0, 0), _batch(0, 5, 5)
    for b in (answered, left):
        unacked.written(KEY, b)
    assert unacked.is_answerable(KEY, 0, 0)
    unacked.acknowledge(KEY, 0, 0)
    await unacked.new_epoch(KEY, 0)  # not newer: nothing
    await unacked.new_epoch(("t", 1, 7), 1)  # another partition: nothing
    assert stored == []
    await unacked.new_epoch(KEY, 1)
    assert stored == [[left]]
    assert not unacked.is_answerable(KEY, 0, 5) and unacked.is_answerable(KEY, 0, 0)
    unacked.written(KEY, left)  # a retry of the voided batch answered with its offsets: stays voided
    assert unacked.pending(KEY) == []
    fresh = _batch(1, 0, 10)
    unacked.written(KEY, fresh)
    await unacked.new_epoch(KEY, 1)  # the same epoch again: nothing more
    assert stored == [[left]] and unacked.pending(KEY) == [fresh]


async def test_a_newer_epoch_counts_from_its_arrival() -> None:
    """Once a batch of a newer epoch is read, the older epochs' batches are no longer answered
    with success (the client timed them out: finding 8), and the new epoch's void takes them."""
    stored: list[list[ProducerBatch]] = []

    async def void(topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        stored.append(list(batches))

    unacked = Unacknowledged(void)
    old = _batch(0, 0, 0)
    unacked.written(KEY, old)
    unacked.arrived(KEY, 0)  # its own epoch: nothing changes
    assert unacked.is_answerable(KEY, 0, 0)
    unacked.arrived(KEY, 1)
    assert not unacked.is_answerable(KEY, 0, 0)
    unacked.arrived(KEY, 0)  # a late batch of the old epoch does not undo it
    assert not unacked.is_answerable(KEY, 0, 0) and unacked.is_answerable(KEY, 1, 0)
    assert unacked.is_answerable(("t", 1, 7), 0, 0) and unacked.is_answerable(("t", 0, 8), 0, 0)
    await unacked.new_epoch(KEY, 1)
    assert stored == [[old]]


async def test_a_success_answer_acknowledges_the_earlier_batches_of_its_epoch_too() -> None:
    """librdkafka takes a success answer as delivering the earlier messages of the partition it
    still waited to retry (its implicit ack): a new epoch must not void those."""
    stored: list[list[ProducerBatch]] = []

    async def void(topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        stored.append(list(batches))

    unacked = Unacknowledged(void)
    early, late, later = _batch(0, 0, 0), _batch(0, 5, 5), _batch(0, 10, 10)
    other = ProducerBatch(7, 0, 0, 4, 20, 5)
    for b in (early, late, later):
        unacked.written(KEY, b)
    unacked.written(("t", 1, 7), other)  # another partition's batch is not this one's
    unacked.acknowledge(KEY, 0, 5)
    assert unacked.pending(KEY) == [later]
    await unacked.new_epoch(KEY, 1)
    assert stored == [[later]]
    assert unacked.pending(("t", 1, 7)) == [other]


async def test_an_answer_during_the_void_is_refused_and_a_failed_void_keeps_the_batches() -> None:
    release = asyncio.Event()
    outcome: list[BaseException | None] = [None]

    async def void(topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        await release.wait()
        if outcome[0] is not None:
            raise outcome[0]

    unacked = Unacknowledged(void)
    left = _batch(0, 0, 0)
    unacked.written(KEY, left)
    outcome[0] = StorageUnavailableError("store down")
    voiding = asyncio.create_task(unacked.new_epoch(KEY, 1))
    await asyncio.sleep(0)
    # Its acknowledgement comes while the rows are being written: it must not say written.
    assert not unacked.is_answerable(KEY, 0, 0)
    release.set()
    with pytest.raises(StorageUnavailableError):
        await voiding
    assert unacked.pending(KEY) == [left] and unacked.is_answerable(KEY, 0, 0)  # not stored: as before
    outcome[0] = None
    await unacked.new_epoch(KEY, 1)
    assert unacked.pending(KEY) == [] and not unacked.is_answerable(KEY, 0, 0)


async def test_a_batch_placed_after_its_request_was_cancelled_is_still_tracked() -> None:
    """The request goes away (its connection closed) while its batch is being appended: the
    append goes on, and the batch must still be noted, under the producer's lock, so the
    producer's next epoch can void it (seed 2032's duplicates)."""
    states = ProducerStates()
    noted: list[ProducerBatch] = []
    batch = _batch(0, 0, 100)
    state: list[ProducerState | None] = [None]
    placed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    go = asyncio.Event()

    async def lookup() -> ProducerState | None:
        return state[0]

    async def append(skip: int) -> int:
        await go.wait()
        state[0] = ProducerState(7, 0, (batch,))
        placed.set_result(None)
        await asyncio.sleep(0.05)  # its acknowledgement
        return 100

    write = asyncio.ensure_future(states.write("t", 0, 7, 0, 0, 5, lookup, append, placed, None, None, noted.append))
    await asyncio.sleep(0.01)
    write.cancel()
    await asyncio.sleep(0.01)
    assert not write.done()  # the lock is held until the batch is placed and noted
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await write
    assert noted == [batch]
    await asyncio.sleep(0.1)  # the append ends by itself


class _KeptIn:
    """The front end's kept rows of one partition ("t", 0), through the writer's own bookkeeping
    (storage/partition/unanswered.py) on a real metadata store."""

    def __init__(self, known: UnansweredBatches) -> None:
        self.known = known

    async def unanswered(self, topic: str, partition: int, producer_id: int) -> tuple[ProducerBatch, ...]:
        return self.known.of(producer_id)

    async def keep_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        await self.known.keep(batches)

    async def drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        await self.known.drop(batches)


async def _kept_on(
    store: MetadataStore,
) -> tuple[UnansweredBatches, Unacknowledged, list[list[ProducerBatch]]]:
    """Agent "a" leading ("t", 0) on `store`: its kept rows, the bookkeeping over them, and the
    batches each void stored, in order."""
    await store.create_topic("t", 1)
    lease = await store.acquire_lease(partition_resource("t", 0), "a", 30_000)
    known = UnansweredBatches(store, "t", 0, "a", lease.epoch)
    stored: list[list[ProducerBatch]] = []

    async def void(topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        stored.append(list(batches))

    return known, Unacknowledged(void, _KeptIn(known)), stored


async def test_kept_rows_are_voided_by_a_new_epoch_unless_an_answer_acknowledged_them(
    metadata_store: MetadataStore,
) -> None:
    """Rows another leader kept join this agent's own in the void; a success answer deletes the
    rows it acknowledges, its epoch's earlier ones included (the implicit ack), and nothing else."""
    known, unacked, stored = await _kept_on(metadata_store)
    e0a, e0b, e0c, e1 = _batch(0, 0, 0), _batch(0, 5, 5), _batch(0, 10, 10), _batch(1, 0, 15)
    await known.keep([e0a, e0b, e0c, e1])  # as an earlier leader left them
    token, dropped = await unacked.answering(KEY, e0b)
    assert dropped == [e0a, e0b]  # itself and the earlier one of its epoch
    assert [b.base_offset for b in await metadata_store.kafka_unanswered("t", 0)] == [10, 15]
    unacked.settled(KEY, token)
    unacked.not_answered(KEY, [e0a, e0b])  # the answer could not be made after all: kept again
    await asyncio.sleep(0.2)
    assert [b.base_offset for b in await metadata_store.kafka_unanswered("t", 0)] == [0, 5, 10, 15]
    token, _ = await unacked.answering(KEY, e0b)
    unacked.acknowledge(KEY, 0, 5, e0b.base_offset)
    unacked.settled(KEY, token)
    await unacked.new_epoch(KEY, 2)  # voids what no answer covered, of the older epochs
    assert stored == [[e0c, e1]]
    assert not unacked.is_answerable(KEY, 0, 10) and unacked.is_answerable(KEY, 0, 5)
    assert await metadata_store.kafka_unanswered("t", 0) == [] and known.of(7) == ()


async def test_a_retry_answered_while_the_original_is_kept_is_never_voided(metadata_store: MetadataStore) -> None:
    """The original request's answer goes to a closed connection (kept as unanswered, in the
    background) while its retry, on a new connection, is answered with success: the row must
    not outlive that acknowledgement (seed 2043's 48-min run: three acknowledged values voided
    when the row was written after the retry's answer had looked for it)."""
    _, unacked, stored = await _kept_on(metadata_store)
    batch = _batch(0, 0, 0)
    unacked.written(KEY, batch)
    token, dropped = await unacked.answering(KEY, batch)  # the retry's answer: no row yet
    assert dropped == []
    unacked.not_answered(KEY, [batch])  # the original's answer: its client has gone
    await asyncio.sleep(0.2)  # the keep waits for the answer in the making
    assert await metadata_store.kafka_unanswered("t", 0) == []
    unacked.acknowledge(KEY, 0, 0, batch.base_offset)  # the retry's answer is written
    unacked.settled(KEY, token)
    await asyncio.sleep(0.3)
    assert await metadata_store.kafka_unanswered("t", 0) == []  # acknowledged: not kept
    await unacked.new_epoch(KEY, 1)
    assert stored == []

    # The other order: rows being written when an answer starts are waited for and deleted.
    later = _batch(0, 5, 5)
    unacked.written(KEY, later)
    unacked.not_answered(KEY, [later])
    await asyncio.sleep(0.2)  # kept (no answer in the making)
    assert await metadata_store.kafka_unanswered("t", 0) == [later]
    token, dropped = await unacked.answering(KEY, later)
    assert dropped == [later] and await metadata_store.kafka_unanswered("t", 0) == []
