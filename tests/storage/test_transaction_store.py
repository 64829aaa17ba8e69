"""Kafka transactions in the metadata store (issue 18, migration 0012), over SQLite and
PostgreSQL: the compare-and-set of a transactional id's row, batches registered only for a
partition of the open transaction at the current epoch, commit and abort in one database
transaction (the batch rows and the TxnOffsetCommit offsets together), a refused request
changing nothing."""

from __future__ import annotations

import dataclasses

import pytest

from streamhouse.storage.errors import InvalidInputError, TransactionError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.metadata.transactions import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    ONGOING,
    TxnBatch,
    TxnState,
)


async def _ongoing(store: MetadataStore, tid: str, pid: int, parts: frozenset[tuple[str, int]]) -> TxnState:
    first = await store.txn_put(TxnState(tid, pid, 0))
    return await store.txn_put(
        dataclasses.replace(first, state=ONGOING, started_ms=1, partitions=parts, groups=frozenset({"g"}))
    )


async def test_put_is_a_compare_and_set(metadata_store: MetadataStore) -> None:
    store = metadata_store
    assert await store.txn_get("t1") is None
    stored = await store.txn_put(TxnState("t1", 7, 0, timeout_ms=5000))
    assert stored.version == 1 and await store.txn_get("t1") == stored
    with pytest.raises(TransactionError) as refused:
        await store.txn_put(TxnState("t1", 8, 0))  # a second first write loses
    assert refused.value.kind == "concurrent"
    bumped = await store.txn_put(dataclasses.replace(stored, producer_epoch=1))
    with pytest.raises(TransactionError):
        await store.txn_put(dataclasses.replace(stored, producer_epoch=2))  # read version 1, now 2
    assert await store.txn_get("t1") == bumped and bumped.version == 2
    with pytest.raises(InvalidInputError):
        TxnState("t1", 7, 0, state="Weird")


async def test_batches_only_for_added_partitions_at_the_current_epoch(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.create_topic("out", 2)
    state = await _ongoing(store, "t2", 11, frozenset({("out", 0)}))
    for tid, pid, epoch, partition, kind in (
        ("nobody", 11, 0, 0, "unknown"), ("t2", 11, 0, 1, "state"), ("t2", 12, 0, 0, "unknown"),
    ):  # fmt: skip
        with pytest.raises(TransactionError) as refused:
            await store.txn_open_batch(tid, pid, epoch, "out", partition, 0, 0)
        assert refused.value.kind == kind
    assert await store.txn_batches("out", 1) == []
    await store.txn_open_batch("t2", 11, 0, "out", 0, 0, 5)
    await store.txn_open_batch("t2", 11, 0, "out", 0, 0, 5)  # a retry: one row
    assert await store.txn_batches("out", 0) == [TxnBatch(11, 5, None, False)]
    await store.txn_place_batch("out", 0, 11, 0, 0, 6, 9)
    assert await store.txn_batches("out", 0, 9) == [TxnBatch(11, 6, 9, False)]  # open: always (it holds the LSO)
    # A newer epoch fences the old one (InitProducerId), and an abort keeps the range.
    aborted = await store.txn_end(state, False, 1)
    assert (aborted.state, aborted.producer_epoch, aborted.partitions) == (COMPLETE_ABORT, 1, frozenset())
    assert await store.txn_batches("out", 0) == [TxnBatch(11, 6, 9, True)]
    assert await store.txn_batches("out", 0, 9) == []  # aborted, ending at 9: nothing to skip from 9 on
    with pytest.raises(TransactionError) as refused:
        await store.txn_open_batch("t2", 11, 0, "out", 0, 3, 9)
    assert refused.value.kind == "fenced"
    with pytest.raises(TransactionError):  # the ended transaction's partition is no longer in one
        await store.txn_open_batch("t2", 11, 1, "out", 0, 0, 9)
    with pytest.raises(TransactionError):
        await store.txn_end(state, True, 1)  # the version moved: a second end is refused


async def test_commit_moves_offsets_and_batches_together(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.create_topic("in", 1)
    await store.create_topic("out", 1)
    state = await _ongoing(store, "t3", 21, frozenset({("out", 0)}))
    await store.txn_open_batch("t3", 21, 0, "out", 0, 0, 0)
    await store.txn_place_batch("out", 0, 21, 0, 0, 0, 4)
    with pytest.raises(TransactionError):
        await store.txn_commit_offsets("t3", 21, 0, "other", "in", {0: 9})  # group not added
    await store.txn_commit_offsets("t3", 21, 0, "g", "in", {0: 7})
    await store.txn_commit_offsets("t3", 21, 0, "g", "in", {0: 9})
    assert await store.fetch_offsets("g") == {}  # not before the commit
    assert await store.txn_ongoing() == [state]
    done = await store.txn_end(state, True, 0)
    assert done.state == COMPLETE_COMMIT and done.version == state.version + 1
    assert await store.fetch_offsets("g") == {("in", 0): 9}
    assert await store.txn_batches("out", 0) == []  # committed: plain records
    assert await store.txn_ongoing() == []
    await store.delete_topic("out")  # an aborted range goes with its topic
    await store.create_topic("out", 1)
    assert await store.txn_batches("out", 0) == []


async def test_voided_idempotent_batches_are_aborted_ranges_and_settled(metadata_store: MetadataStore) -> None:
    """An idempotent batch left unacknowledged by its producer's new epoch (engine/kafka/unacked.py)
    is an aborted range every read_committed reader skips, and a WAL recovery's settled batch."""
    store = metadata_store
    await store.create_topic("idem", 1)
    left = [ProducerBatch(21, 0, 0, 9, 100, 10), ProducerBatch(21, 0, 10, 14, 115, 5)]
    await store.txn_void_batches("idem", 0, left)
    await store.txn_void_batches("idem", 0, left[:1])  # again (a retry after a lost answer): one row
    assert await store.txn_batches("idem", 0) == [
        TxnBatch(21, 100, 110, True, 0, 0),
        TxnBatch(21, 115, 120, True, 0, 10),
    ]
    assert await store.txn_batches("idem", 0, 110) == [TxnBatch(21, 115, 120, True, 0, 10)]
    assert await store.txn_settled("idem", 0) == {(21, 0, 0), (21, 0, 10)}
    assert await store.txn_batches("idem", 0, 120) == []
