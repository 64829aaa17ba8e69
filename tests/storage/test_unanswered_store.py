"""Committed idempotent batches left unanswered (migration 0015, storage/metadata/unanswered.py),
over SQLite and PostgreSQL: only the partition's leader at its lease epoch may keep rows (a
fenced agent's insert changes nothing), rows are listed by producer and offset, dropped by name,
and go with their topic; a row that is not a written batch is refused."""

from __future__ import annotations

import pytest

from streamhouse.storage.errors import FencedError, InvalidInputError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.model import partition_resource
from streamhouse.storage.partition.unanswered import UnansweredBatches


async def test_only_the_leader_at_its_epoch_keeps_rows(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.create_topic("idem", 2)
    lease = await store.acquire_lease(partition_resource("idem", 0), "a", 30_000)
    b1, b2 = ProducerBatch(9, 0, 0, 4, 10, 5), ProducerBatch(9, 0, 5, 5, 15, 1)
    other = ProducerBatch(3, 1, 0, 1, 16, 2)
    await store.kafka_keep_unanswered("idem", 0, "a", lease.epoch, [b2, other, b1])
    await store.kafka_keep_unanswered("idem", 0, "a", lease.epoch, [b1])  # kept already: one row
    assert await store.kafka_unanswered("idem", 0) == [other, b1, b2]
    assert await store.kafka_unanswered("idem", 1) == []
    with pytest.raises(FencedError):  # another holder, or the same one at an older epoch
        await store.kafka_keep_unanswered("idem", 0, "b", lease.epoch, [ProducerBatch(4, 0, 0, 0, 20, 1)])
    with pytest.raises(FencedError):
        await store.kafka_keep_unanswered("idem", 0, "a", lease.epoch + 1, [ProducerBatch(4, 0, 0, 0, 20, 1)])
    with pytest.raises(FencedError):  # no lease on partition 1 at all
        await store.kafka_keep_unanswered("idem", 1, "a", lease.epoch, [ProducerBatch(4, 0, 0, 0, 20, 1)])
    with pytest.raises(InvalidInputError):
        await store.kafka_keep_unanswered("idem", 0, "a", lease.epoch, [ProducerBatch(4, 0, 0, 0, -1, 1)])
    assert await store.kafka_unanswered("idem", 0) == [other, b1, b2]  # the refused ones changed nothing
    await store.kafka_drop_unanswered("idem", 0, [b1, ProducerBatch(77, 0, 0, 0, 0, 1)])  # unknown: ignored
    assert await store.kafka_unanswered("idem", 0) == [other, b2]
    await store.delete_topic("idem")
    await store.create_topic("idem", 1)
    assert await store.kafka_unanswered("idem", 0) == []


async def test_a_writer_loads_the_rows_and_keeps_and_drops_through_the_store(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.create_topic("idem", 1)
    old = await store.acquire_lease(partition_resource("idem", 0), "a", 30_000)
    await store.kafka_keep_unanswered("idem", 0, "a", old.epoch, [ProducerBatch(9, 0, 0, 4, 0, 5)])
    await store.release_lease(partition_resource("idem", 0), "a", old.epoch)
    lease = await store.acquire_lease(partition_resource("idem", 0), "b", 30_000)
    known = UnansweredBatches(store, "idem", 0, "b", lease.epoch)
    await known.load({9}, 5)
    assert known.of(9) == (ProducerBatch(9, 0, 0, 4, 0, 5),) and known.of(8) == ()
    await known.keep([ProducerBatch(9, 1, 0, 0, 5, 1)])
    with pytest.raises(FencedError):  # a stale writer of the partition keeps nothing
        await UnansweredBatches(store, "idem", 0, "a", old.epoch).keep([ProducerBatch(9, 1, 1, 1, 6, 1)])
    assert [b.base_offset for b in await store.kafka_unanswered("idem", 0)] == [0, 5]
    await known.drop(list(known.of(9)[:1]))
    assert known.of(9) == (ProducerBatch(9, 1, 0, 0, 5, 1),)
    assert await store.kafka_unanswered("idem", 0) == [ProducerBatch(9, 1, 0, 0, 5, 1)]


async def test_rows_of_producers_whose_state_expired_are_forgotten_at_take_over(metadata_store: MetadataStore) -> None:
    """A row below the committed end whose producer has no stored state left (silent past
    EXPIRY_MS) is dropped when a writer loads the rows; rows of known producers, and rows past
    the committed end (their producer's state may not be stored yet), are kept."""
    store = metadata_store
    await store.create_topic("idem", 1)
    old = await store.acquire_lease(partition_resource("idem", 0), "a", 30_000)
    live, expired, pending = (
        ProducerBatch(7, 0, 0, 4, 0, 5),
        ProducerBatch(8, 0, 0, 4, 5, 5),
        ProducerBatch(8, 0, 5, 5, 12, 1),
    )
    await store.kafka_keep_unanswered("idem", 0, "a", old.epoch, [live, expired, pending])
    await store.release_lease(partition_resource("idem", 0), "a", old.epoch)
    lease = await store.acquire_lease(partition_resource("idem", 0), "b", 30_000)
    known = UnansweredBatches(store, "idem", 0, "b", lease.epoch)
    await known.load({7}, 10)
    assert known.of(7) == (live,) and known.of(8) == (pending,)
    assert await store.kafka_unanswered("idem", 0) == [live, pending]
