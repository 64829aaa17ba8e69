"""The Kafka transaction coordinator (KIP-98, issue 18): one per transactional id, the holder
of the lease `kafka-txn/<id>` (the group leases' take-over, group_leases.py), its state in the
metadata store (storage/metadata/transactions.py) so it survives restarts and moves.

Every operation reads the transactional id's row and writes it back with a compare-and-set,
under one lock per id here: an agent that lost the lease while paused can never move a
transaction its successor moved. What becomes visible when is decided by the store alone:
EndTxn is one database transaction that deletes the transaction's batch rows (the records are
then plain records, below every partition's last stable offset) and moves its TxnOffsetCommit
offsets into the group's, so records and offsets appear together. Then each partition of the
transaction gets its COMMIT/ABORT marker in the log (txn_markers.py), as Kafka's coordinator
writes them: what Kafka clients see, not what decides visibility.

Fencing: InitProducerId with a transactional id aborts whatever transaction the id had open and
bumps the epoch, so every request of an older producer of the id is refused (PRODUCER_FENCED),
and a batch of it is refused by the store before it is appended (txn_open_batch). A transaction
open longer than its timeout is aborted by `expire` with its epoch bumped, as Kafka does: the
abandoning producer is fenced too, and can never commit what it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from streamhouse.agent.failures import RoundLog
from streamhouse.kafka.group_leases import GroupLeases
from streamhouse.kafka.txn_markers import Append, PendingMarkers, write_markers
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import StreamHouseError, TransactionError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata import transactions as t

log = logging.getLogger(__name__)
LEASE_PREFIX = "kafka-txn/"
MAX_TIMEOUT_MS = 900_000  # Kafka's transaction.max.timeout.ms
EXPIRE_EVERY_S = 1.0


class TxnCoordinator:
    def __init__(
        self,
        metadata: MetadataStore,
        new_producer_id: Callable[[], Awaitable[int]],
        leases: GroupLeases | None = None,
        on_end: Callable[[Iterable[t.Partition]], None] | None = None,
        markers: Append | None = None,
    ) -> None:
        self.metadata = metadata
        self.new_producer_id = new_producer_id
        self.leases = leases
        self.on_end = on_end  # told the partitions whose batches an end changed (read caches)
        self.markers = markers  # appends a COMMIT/ABORT control row to a partition (txn_markers.py)
        self.pending = PendingMarkers(markers) if markers is not None else None  # retried by _expire_forever
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # lock and its holders + waiters
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._expire_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def mine(self, tid: str) -> bool:
        """True when this agent coordinates `tid` (holds or takes its lease); always without leases."""
        return self.leases is None or await self.leases.claim(tid)

    @contextlib.asynccontextmanager
    async def _locked(self, tid: str) -> AsyncIterator[None]:
        """One request per transactional id at a time here; the lock goes with its last user."""
        lock, users = self._locks.get(tid, (asyncio.Lock(), 0))
        self._locks[tid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[tid]
            if users == 1:
                del self._locks[tid]
            else:
                self._locks[tid] = (lock, users - 1)

    async def init_producer_id(self, tid: str, timeout_ms: int, producer_id: int, epoch: int) -> tuple[int, int]:
        """The id's producer id and its next epoch; whatever transaction it had open is aborted.
        A producer naming its id and epoch (KIP-360, v3+) must be the current one."""
        if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
            raise TransactionError(f"transaction timeout {timeout_ms} ms is outside 1..{MAX_TIMEOUT_MS}", "timeout")
        async with self._locked(tid):
            state = await self.metadata.txn_get(tid)
            if state is None:
                stored = await self.metadata.txn_put(t.TxnState(tid, await self.new_producer_id(), 0,
                                                                timeout_ms=timeout_ms))  # fmt: skip
                return stored.producer_id, stored.producer_epoch
            if producer_id >= 0:
                state.check_producer(producer_id, epoch)
            pid, next_epoch = state.producer_id, state.producer_epoch + 1
            if state.state == t.ONGOING:  # aborted at the new epoch: fenced in the same write
                state = await self._end(state, False, next_epoch)
            if next_epoch > t.MAX_EPOCH:  # epochs exhausted: a new producer id starts at 0
                pid, next_epoch = await self.new_producer_id(), 0
            stored = await self.metadata.txn_put(
                dataclasses.replace(state, producer_id=pid, producer_epoch=next_epoch, state=t.EMPTY,
                                    timeout_ms=timeout_ms)
            )  # fmt: skip
            return stored.producer_id, stored.producer_epoch

    async def add(self, tid: str, producer_id: int, epoch: int, partitions: Iterable[t.Partition] = (),
                  groups: Iterable[str] = ()) -> None:  # fmt: skip
        """AddPartitionsToTxn / AddOffsetsToTxn: the open transaction (begun now if none is) covers them."""
        async with self._locked(tid):
            state = await self._current(tid, producer_id, epoch)
            ongoing = state.state == t.ONGOING
            new = dataclasses.replace(
                state, state=t.ONGOING, started_ms=state.started_ms if ongoing else now_ms(),
                partitions=state.partitions | frozenset(partitions), groups=state.groups | frozenset(groups),
            )  # fmt: skip
            if new != state:
                await self.metadata.txn_put(new)

    async def end(self, tid: str, producer_id: int, epoch: int, commit: bool, bump: bool = False) -> tuple[int, int]:
        """EndTxn; returns the producer id and epoch the producer goes on with. A retry of the
        end that completed is answered as done; the other end, or an end with nothing open, is
        INVALID_TXN_STATE (an empty transaction ends quietly). `bump` (EndTxn v5+, transaction
        version 2, txn_v2.py): the epoch moves at every end, so a late batch of the ended
        transaction is refused, and a retry names the epoch before the bump."""
        async with self._locked(tid):
            state = await self.metadata.txn_get(tid)
            done_state = t.COMPLETE_COMMIT if commit else t.COMPLETE_ABORT
            if (bump and state is not None and state.producer_id == producer_id and state.state == done_state
                    and state.producer_epoch == epoch + 1):  # fmt: skip
                return state.producer_id, state.producer_epoch  # the retry of the end that bumped
            state = await self._current(tid, producer_id, epoch)
            if not bump and state.state == (t.COMPLETE_ABORT if commit else t.COMPLETE_COMMIT):
                # (with `bump` an ended state at the current epoch is the transaction before: this one is empty)
                done = "aborted" if commit else "committed"
                raise TransactionError(f"the transaction of {tid!r} was {done}, it cannot be ended again", "state")
            new_epoch = epoch + 1 if bump else epoch
            if state.state == t.ONGOING:
                state = await self._end(state, commit, min(new_epoch, t.MAX_EPOCH + 1))
            elif bump:  # an empty transaction ends with its bump too: the answer names the new epoch
                bumped = dataclasses.replace(state, producer_epoch=min(new_epoch, t.MAX_EPOCH + 1), state=done_state)
                state = await self.metadata.txn_put(bumped)
            if bump and new_epoch > t.MAX_EPOCH:  # epochs exhausted: a new producer id starts at 0
                state = await self.metadata.txn_put(
                    dataclasses.replace(state, producer_id=await self.new_producer_id(), producer_epoch=0)
                )
            return state.producer_id, state.producer_epoch

    async def expire(self) -> int:
        """Abort every open transaction past its timeout whose id this agent coordinates (or
        can take); returns how many. The epoch moves, so the producer that left it is fenced."""
        aborted = 0
        now = now_ms()
        for state in await self.metadata.txn_ongoing():
            if state.started_ms + state.timeout_ms > now or not await self.mine(state.transactional_id):
                continue
            async with self._locked(state.transactional_id):
                current = await self.metadata.txn_get(state.transactional_id)
                if current is None or current.version != state.version:
                    continue  # moved meanwhile: looked at again next round
                next_epoch = min(state.producer_epoch + 1, t.MAX_EPOCH + 1)
                await self._end(state, False, next_epoch)
                log.info("kafka transaction %r aborted: open longer than %d ms", state.transactional_id,
                         state.timeout_ms)  # fmt: skip
                aborted += 1
        return aborted

    async def _current(self, tid: str, producer_id: int, epoch: int) -> t.TxnState:
        state = await self.metadata.txn_get(tid)
        if state is None:
            raise TransactionError(f"transactional id {tid!r} is unknown (InitProducerId first)", "unknown")
        state.check_producer(producer_id, epoch)
        return state

    async def _end(self, state: t.TxnState, commit: bool, new_epoch: int) -> t.TxnState:
        done = await self.metadata.txn_end(state, commit, new_epoch)
        if self.markers is not None:  # after the store's end: what is visible is decided there
            # Kafka's epoch for the markers: the bumped one where the end bumps (transaction
            # version 2, a timeout's fencing abort), so a marker never names an epoch below the
            # producer's; capped where the epochs run out into a new producer id.
            epoch = min(new_epoch, t.MAX_EPOCH)
            await write_markers(self.markers, state.partitions, state.producer_id, epoch, commit, self.pending)
        if self.on_end is not None:
            self.on_end(state.partitions)
        return done

    async def _expire_forever(self) -> None:
        said = RoundLog("kafka transaction timeout check", log)
        while True:
            await asyncio.sleep(EXPIRE_EVERY_S)
            if self.pending is not None:
                await self.pending.retry_due()
            try:
                await self.expire()
            except StreamHouseError as exc:  # the store is unreachable: tried again next round
                said.failed(exc)
            else:
                said.succeeded()
