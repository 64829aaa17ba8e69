"""What a read_committed reader sees of a partition (issue 18): records below the last stable
offset (the lowest base of an open transactional batch, storage/metadata/transactions.py), less
the records of aborted batches.

Our own readers (gRPC, REST, the SDK, SQL and jobs) are filtered here: one searchsorted over the
offsets (no loop per record). A Kafka read_committed Fetch is answered as Kafka does instead
(engine/kafka/fetch_txn.py): records up to the last stable offset, aborted ones included, with
the aborted ranges' producer ids (`Stable.pids`) in their batch headers and the list of aborted
transactions, and the client drops them.

The batch rows are read from the metadata store, at most once per CACHE_S per partition: a
change made through this agent (a batch registered or placed, a transaction ended) drops the
partition's entry at once; a change made by another agent is seen within CACHE_S. Partitions
never written transactionally answer from the same one query.

A reader that already holds records says how far they go (`upto`): the view must know every
placement among them. A segment commit places the aborted batches it holds in its own database
transaction (transactions.placements), the one that moves the partition's committed end; so a
view is good for records below the committed end read before its batch rows (`valid_below`).
A cached view read earlier (another agent's commit within CACHE_S, or a query of this agent that
started before the commit and answered after it) could otherwise show an aborted batch as
committed. At the head of a partition that means one fresh read per commit and agent, shared
by every reader of it there, not one per fetch. Whatever else a cached view misses within CACHE_S
only holds records back (an open batch committed or aborted since): never shows one it should
not. `fresh=True` always reads (SQL: once per query).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.metadata.transactions import TxnBatch

CACHE_S = 0.1


@dataclass(frozen=True)
class Stable:
    """A partition's last stable offset (None: no open transaction) and its aborted ranges
    [bases[i], ends[i]) from the offset asked for, sorted and disjoint."""

    last_stable: int | None
    bases: np.ndarray
    ends: np.ndarray
    pids: np.ndarray | None = None  # the aborted ranges' producer ids (Kafka Fetch's aborted list)
    epochs: np.ndarray | None = None  # and their producer epochs (the batch headers Kafka Fetch sends)
    # Aborted batches not yet placed, by (producer id, epoch, first sequence): one may be in the
    # leader's buffer, at offsets only that buffer knows until a segment commit places it (with_tail).
    unplaced_aborted: frozenset[tuple[int, int, int]] = frozenset()

    def committed(self, records: pa.Table) -> pa.Table:
        """`records` (RECORD_SCHEMA rows) less those at or past the LSO and the aborted ones."""
        if not records.num_rows:
            return records
        offsets = records.column("offset").to_numpy()
        keep = np.ones(len(offsets), dtype=np.bool_)
        if self.last_stable is not None:
            keep &= offsets < self.last_stable
        if len(self.bases):
            at = np.searchsorted(self.bases, offsets, side="right") - 1
            inside = (at >= 0) & (offsets < self.ends[np.maximum(at, 0)])
            keep &= ~inside
        return records if keep.all() else records.filter(pa.array(keep))

    @property
    def shows_all(self) -> bool:
        """Nothing to hold back or skip: `committed` returns its rows as they are."""
        return self.last_stable is None and not len(self.bases)

    def stable_end(self, end_offset: int) -> int:
        return end_offset if self.last_stable is None else min(self.last_stable, end_offset)

    def with_tail(self, producers: Iterable[ProducerBatch]) -> Stable:
        """This view for a read that includes a leader's unflushed tail, whose producer batches
        (pinned with the tail: PartitionView.producers) are `producers`: an aborted batch not
        yet placed is hidden at the offsets the buffer gives it. One not among them is not in
        that tail (a batch leaves the buffer only by the segment commit that places it)."""
        if not self.unplaced_aborted:
            return self
        found = [b for b in producers if (b.producer_id, b.producer_epoch, b.first_sequence) in self.unplaced_aborted]
        if not found:
            return self
        ranges = sorted(
            [
                *zip(
                    self.bases.tolist(),
                    self.ends.tolist(),
                    _listed(self.pids, self.bases),
                    _listed(self.epochs, self.bases),
                    strict=True,
                ),
                *((b.base_offset, b.end_offset, b.producer_id, b.producer_epoch) for b in found),
            ]
        )
        bases, ends, pids, epochs = _arrays(ranges)
        return replace(self, bases=bases, ends=ends, pids=pids, epochs=epochs)


def _listed(values: np.ndarray | None, like: np.ndarray) -> list[int]:
    return [0] * len(like) if values is None else values.tolist()


def _arrays(ranges: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """bases, ends, producer ids and epochs of sorted ranges (base, end, producer id, epoch)."""
    columns = [np.array([r[i] for r in ranges], dtype=np.int64) for i in range(4)]
    return columns[0], columns[1], columns[2], columns[3]


def stable_from(batches: Iterable[TxnBatch]) -> Stable:
    batches = list(batches)
    opened = [b.base_offset for b in batches if not b.aborted]
    unplaced = frozenset(
        (b.producer_id, b.producer_epoch, b.first_sequence) for b in batches if b.aborted and b.end_offset is None
    )
    ranges = sorted(
        (b.base_offset, b.end_offset, b.producer_id, b.producer_epoch)
        for b in batches
        if b.aborted and b.end_offset is not None
    )
    bases, ends, pids, epochs = _arrays(ranges)
    return Stable(min(opened) if opened else None, bases, ends, pids, epochs, unplaced)


class CommittedReads:
    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata
        # (read at, from offset, view, valid below: the committed end read before it, or -1)
        self._cache: dict[tuple[str, int], tuple[float, int, Stable, int]] = {}
        # A query that began before a change made here to its partition is not cached: each
        # change is numbered (`_ticks`), and `_changed` keeps the last per partition (bounded:
        # when cleared, `_cleared` stands for every partition's).
        self._ticks = 0
        self._changed: dict[tuple[str, int], int] = {}
        self._cleared = 0
        self._moved: asyncio.Future[None] | None = None

    def changed(self, partitions: Iterable[tuple[str, int]]) -> None:
        for key in partitions:
            self._cache.pop(key, None)
            self._ticks += 1
            if len(self._changed) > 10_000:
                self._changed.clear()
                self._cleared = self._ticks
            self._changed[key] = self._ticks

    def ended(self, partitions: Iterable[tuple[str, int]]) -> None:
        """A transaction ended here: its partitions' entries go, and read_committed fetches
        waiting for more (`moved`) look again. A marker appended here wakes fetches of its
        partition as new data; this also wakes those whose partition another agent leads."""
        self.changed(partitions)
        if self._moved is not None and not self._moved.done():
            self._moved.set_result(None)
        self._moved = None

    async def moved(self) -> None:
        """Returns when a transaction next ends on this agent."""
        if self._moved is None:
            self._moved = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._moved)  # a cancelled waiter leaves the future to the others

    async def stable(
        self, topic: str, partition: int, from_offset: int, *, upto: int | None = None, fresh: bool = False
    ) -> Stable:
        """The view from `from_offset`. `upto`: the caller holds records below this offset,
        and the view must know every placement among them; `fresh`: read now."""
        key = (topic, partition)
        hit = self._cache.get(key)
        now = time.monotonic()
        if (
            not fresh
            and hit is not None
            and now - hit[0] < CACHE_S
            and hit[1] <= from_offset
            and (upto is None or upto <= hit[3])
        ):
            return hit[2]
        began = self._ticks
        # The committed end first: every record below it was placed before the rows are read.
        valid_below = await self.metadata.get_end_offset(topic, partition) if upto is not None or fresh else -1
        found = stable_from(await self.metadata.txn_batches(topic, partition, from_offset))
        if max(self._changed.get(key, 0), self._cleared) > began:
            return found  # changed here meanwhile: right for this caller, too old to keep
        if len(self._cache) > 10_000:  # bounded: an agent reading many partitions keeps the recent ones
            self._cache.clear()
        self._cache[key] = (now, from_offset, found, valid_below)
        return found


_SHARED: weakref.WeakKeyDictionary[MetadataStore, CommittedReads] = weakref.WeakKeyDictionary()


def shared_reads(metadata: MetadataStore) -> CommittedReads:
    """The one view per store in this process: the Kafka listener's produce path and EndTxn drop
    its entries as they change them, so every face of the agent (Kafka, gRPC, REST, the SDK)
    sees a transactional batch from the moment it is registered, not up to CACHE_S later."""
    found = _SHARED.get(metadata)
    if found is None:
        found = _SHARED[metadata] = CommittedReads(metadata)
    return found
