"""The transaction coordinator (engine/kafka/txn_coordinator.py) over a real SQLite store, and
the read_committed view (txn_reads.py): epochs and fencing, begin/commit/abort, the timeout
abort that fences the abandoning producer, and the records a read_committed reader is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.metadata.transactions import COMPLETE_ABORT, EMPTY, TxnBatch
from streamhouse.storage.metadata.txn_reads import CommittedReads, stable_from
from streamhouse.storage.model import SegmentInfo, partition_resource
from streamhouse.storage.records.schema import make_batch
from tests.engine.kafka.txn_store import coordinator, refusal_kind, store_with_topic


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    async with store_with_topic(tmp_path, 2) as store:
        yield store


async def test_epochs_fence_and_end(store: MetadataStore) -> None:
    coord = coordinator(store)
    assert await coord.init_producer_id("app", 10_000, -1, -1) == (100, 0)
    # Requests of one id queue behind each other here: none loses the store's compare-and-set.
    await asyncio.gather(*(coord.add("app", 100, 0, partitions=[("out", i % 2)], groups=[f"g{i}"]) for i in range(8)))
    state = await store.txn_get("app")
    assert state is not None and state.partitions == {("out", 0), ("out", 1)} and len(state.groups) == 8
    await store.txn_open_batch("app", 100, 0, "out", 0, 0, 0)
    await store.txn_place_batch("out", 0, 100, 0, 0, 0, 3)
    # A second instance: the open transaction is aborted, the epoch moves, the first is fenced.
    assert await coord.init_producer_id("app", 10_000, -1, -1) == (100, 1)
    assert await store.txn_batches("out", 0) == [TxnBatch(100, 0, 3, True)]
    assert await refusal_kind(coord.end("app", 100, 0, True)) == "fenced"
    assert await refusal_kind(coord.add("app", 100, 0, partitions=[("out", 1)])) == "fenced"
    assert await refusal_kind(coord.init_producer_id("app", 10_000, 100, 0)) == "fenced"  # KIP-360 with an old epoch
    assert await refusal_kind(coord.init_producer_id("app", 0, -1, -1)) == "timeout"
    assert await refusal_kind(coord.end("nobody", 1, 0, True)) == "unknown"
    await coord.end("app", 100, 1, True)  # nothing open: an empty transaction ends quietly
    await coord.add("app", 100, 1, partitions=[("out", 1)], groups=["g"])
    await coord.end("app", 100, 1, False)
    await coord.end("app", 100, 1, False)  # a retried abort is answered as done
    assert await refusal_kind(coord.end("app", 100, 1, True)) == "state"  # but not a commit of it
    state = await store.txn_get("app")
    assert state is not None and (state.state, state.partitions) == (COMPLETE_ABORT, frozenset())


async def test_timeout_aborts_and_fences(store: MetadataStore) -> None:
    coord = coordinator(store)
    pid, epoch = await coord.init_producer_id("slow", 1, -1, -1)
    await coord.add("slow", pid, epoch, partitions=[("out", 1)])
    await store.txn_open_batch("slow", pid, epoch, "out", 1, 0, 7)
    assert await coord.expire() in (0, 1)  # 1 ms: may or may not have passed yet
    while (await store.txn_get("slow")).state != COMPLETE_ABORT:  # type: ignore[union-attr]
        await coord.expire()
    assert await refusal_kind(coord.end("slow", pid, epoch, True)) == "fenced"  # can never commit
    assert await coord.init_producer_id("slow", 60_000, -1, -1) == (pid, epoch + 2)
    assert (await store.txn_get("slow")).state == EMPTY  # type: ignore[union-attr]
    reads = CommittedReads(store)
    assert (await reads.stable("out", 1, 0)).last_stable is None  # aborted, never placed: hides nothing


async def test_open_batch_holds_the_stable_offset(store: MetadataStore) -> None:
    reads = CommittedReads(store)
    coord = coordinator(store)
    coord.on_end = reads.changed
    pid, epoch = await coord.init_producer_id("app", 10_000, -1, -1)
    await coord.add("app", pid, epoch, partitions=[("out", 0)])
    await store.txn_open_batch("app", pid, epoch, "out", 0, 0, 4)
    reads.changed([("out", 0)])
    view = await reads.stable("out", 0, 0)
    assert view.last_stable == 4 and view.stable_end(10) == 4
    await coord.end("app", pid, epoch, True)
    assert (await reads.stable("out", 0, 0)).last_stable is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.booleans()), max_size=12), st.integers(0, 60))
def test_committed_view_drops_aborted_and_unstable(spans: list[tuple[int, int, bool]], lso: int) -> None:
    """Against a plain per-record rule, over disjoint batches laid out one after the other."""
    batches, at = [], 0
    for gap, size, aborted in spans:
        at += gap
        batches.append(TxnBatch(1, at, at + size, True) if aborted else None)
        at += size
    placed = [b for b in batches if b is not None]
    view = stable_from([*placed, TxnBatch(2, lso, None, False)])
    records = make_batch([b"%d" % i for i in range(at + 5)])
    kept = view.committed(pa.Table.from_batches([records])).column("offset").to_pylist()
    hidden = {o for b in placed for o in range(b.base_offset, b.end_offset or 0)}
    assert kept == [o for o in range(at + 5) if o < lso and o not in hidden]
    assert np.all(np.diff(view.bases) > 0) or len(view.bases) <= 1


async def test_an_ended_transaction_wakes_read_committed_waiters(store: MetadataStore) -> None:
    reads = CommittedReads(store)
    first, second = asyncio.ensure_future(reads.moved()), asyncio.ensure_future(reads.moved())
    await asyncio.sleep(0.01)
    assert not first.done()
    first.cancel()  # one waiter gone (its fetch answered): the other still wakes
    reads.ended([("out", 0)])
    await asyncio.wait_for(second, 1)


async def _aborted_unplaced(store: MetadataStore) -> tuple[int, int]:
    """A transaction aborted while its one batch was registered but not yet placed: the state a
    produce stalled on its durable round leaves behind when the client gives up and aborts."""
    coord = coordinator(store)
    pid, epoch = await coord.init_producer_id("late", 10_000, -1, -1)
    await coord.add("late", pid, epoch, partitions=[("out", 0)])
    await store.txn_open_batch("late", pid, epoch, "out", 0, 0, 0)
    await coord.end("late", pid, epoch, False)
    return pid, epoch


async def test_a_reader_holding_records_reads_the_view_after_them(store: MetadataStore) -> None:
    """Another agent's segment commit places the aborted batch (and makes its records readable)
    within CACHE_S of this agent caching its view: a reader holding those records asks fresh."""
    pid, epoch = await _aborted_unplaced(store)
    reads = CommittedReads(store)
    assert (await reads.stable("out", 0, 0)).shows_all  # aborted, not placed: nothing to hide yet
    await store.txn_place_batch("out", 0, pid, epoch, 0, 0, 3)  # the commit, on another agent
    view = await reads.stable("out", 0, 0, fresh=True)
    assert (view.bases.tolist(), view.ends.tolist()) == ([0], [3])
    kept = view.committed(pa.Table.from_batches([make_batch([b"a", b"b", b"c", b"d"])]))
    assert kept.column("offset").to_pylist() == [3]


async def test_a_view_read_across_a_change_here_is_not_kept(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that began before this agent's commit placed the batch answers without the
    placement; it must not be cached past the commit's drop of the entry."""
    pid, epoch = await _aborted_unplaced(store)
    reads = CommittedReads(store)
    gate, began = asyncio.Event(), asyncio.Event()
    query = store.txn_batches

    async def slow(topic: str, partition: int, from_offset: int = 0) -> list[TxnBatch]:
        found = await query(topic, partition, from_offset)
        began.set()
        await gate.wait()
        return found

    monkeypatch.setattr(store, "txn_batches", slow)
    overtaken = asyncio.ensure_future(reads.stable("out", 0, 0))
    await began.wait()
    await store.txn_place_batch("out", 0, pid, epoch, 0, 0, 3)
    reads.changed([("out", 0)])  # what the roll does right after its commit
    gate.set()
    assert (await overtaken).shows_all  # read before the placement: right for that caller only
    monkeypatch.setattr(store, "txn_batches", query)
    view = await reads.stable("out", 0, 0)  # within CACHE_S, not fresh: must not be the old answer
    assert view.ends.tolist() == [3]


async def test_a_cached_view_serves_records_below_the_committed_end_it_read(store: MetadataStore) -> None:
    """A view is good for records below the committed end read before its rows: every batch
    among them was placed by the commit that moved that end. Records past it read again (the
    same commit places an aborted batch and makes it readable), and one read serves the rest."""
    pid, epoch = await _aborted_unplaced(store)  # registered at 0, aborted before its commit
    reads = CommittedReads(store)
    assert (await reads.stable("out", 0, 0, upto=0)).shows_all  # nothing committed yet
    lease = await store.acquire_lease(partition_resource("out", 0), "agent", 60_000)
    batch = ProducerBatch(pid, epoch, 0, 2, 0, 3)  # the aborted batch, at offsets [0, 3)
    segment = SegmentInfo(topic="out", partition=0, base_offset=0, end_offset=3, min_timestamp=1, max_timestamp=1,
                          size_bytes=1, object_key="p/topics/out/00000/0-1.parquet", epoch=lease.epoch,
                          footer_length=1, footer_crc=0)  # fmt: skip
    await store.commit_segment(segment, "agent", lease.epoch, [ProducerState(pid, epoch, (batch,))], [batch])
    # Another agent committed: nothing told this one. Records below 0: the cached view still serves.
    assert (await reads.stable("out", 0, 0, upto=0)).shows_all
    # Records up to 3 (the fetch saw the new end): read again, and the batch is hidden.
    view = await reads.stable("out", 0, 0, upto=3)
    assert (view.bases.tolist(), view.ends.tolist()) == ([0], [3])
    assert (await reads.stable("out", 0, 0, upto=3)) is view  # cached for the next reader
