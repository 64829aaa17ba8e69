"""The PostgreSQL store's Kafka transactions, the same operations as sqlite_transactions.py.
A write locks the transactional id's row (FOR UPDATE) before it checks it, so the check and
the write are one step against every other agent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from streamhouse.storage.metadata import transactions as t
from streamhouse.storage.metadata import unanswered as u
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.postgres_base import NOW, PostgresBase, hold_fence
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.metadata.registry_sql import numbered
from streamhouse.storage.model import partition_resource

if TYPE_CHECKING:
    from streamhouse.storage.metadata.postgres_base import Conn

_GET = numbered(t.GET)
_GET_LOCKED = numbered(t.GET + " FOR UPDATE")
_VERSION_LOCKED = numbered(t.VERSION + " FOR UPDATE")
_ONGOING = numbered(t.ONGOING_SQL)
_UPSERT = numbered(t.UPSERT.format(now=NOW))
_OPEN = numbered(t.OPEN_BATCH)
_PLACE = numbered(t.PLACE_BATCH)
_BATCHES = numbered(t.BATCHES)
_VOID = numbered(t.VOID_BATCH)
_SETTLED = numbered(t.SETTLED)
_COMMIT = numbered(t.COMMIT_BATCHES)
_ABORT = numbered(t.ABORT_BATCHES)
_PUT_OFFSET = numbered(t.PUT_OFFSET)
_MOVE_OFFSETS = numbered(t.MOVE_OFFSETS.format(now=NOW))
_DROP_OFFSETS = numbered(t.DROP_OFFSETS)
_UNANSWERED = numbered(u.SELECT)
_KEEP_UNANSWERED = numbered(u.INSERT)
_DROP_UNANSWERED = numbered(u.DELETE)


async def _get(conn: Conn, transactional_id: str, sql: str = _GET) -> t.TxnState | None:
    row = await conn.fetchrow(sql, transactional_id)
    return None if row is None else t.state_from_row(row)


class PostgresTransactions(PostgresBase):
    async def txn_get(self, transactional_id: str) -> t.TxnState | None:
        v._name("transactional id", transactional_id)
        async with self._conn() as conn:
            return await _get(conn, transactional_id)

    async def txn_ongoing(self) -> list[t.TxnState]:
        async with self._conn() as conn:
            return [t.state_from_row(row) for row in await conn.fetch(_ONGOING)]

    async def txn_put(self, state: t.TxnState) -> t.TxnState:
        stored = t.TxnState(**{**state.__dict__, "version": state.version + 1})
        async with self._conn(transaction=True) as conn:
            t.check_version(state.transactional_id, await conn.fetchval(_VERSION_LOCKED, state.transactional_id),
                            state.version)  # fmt: skip
            await conn.execute(_UPSERT, *t.state_row(stored))
        return stored

    async def txn_end(self, state: t.TxnState, commit: bool, new_epoch: int) -> t.TxnState:
        done = t.ended(state, commit, new_epoch)
        async with self._conn(transaction=True) as conn:
            t.check_version(state.transactional_id, await conn.fetchval(_VERSION_LOCKED, state.transactional_id),
                            state.version)  # fmt: skip
            await conn.executemany(
                _COMMIT if commit else _ABORT, [(topic, p, state.producer_id) for topic, p in sorted(state.partitions)]
            )
            if commit:
                await conn.execute(_MOVE_OFFSETS, state.transactional_id)
            await conn.execute(_DROP_OFFSETS, state.transactional_id)
            await conn.execute(_UPSERT, *t.state_row(done))
        return done

    async def txn_open_batch(
        self, transactional_id: str, producer_id: int, epoch: int, topic: str, partition: int, first_sequence: int,
        lower: int,
    ) -> None:  # fmt: skip
        async with self._conn(transaction=True) as conn:
            # The row stays locked until the insert commits: an EndTxn waits, then sees the batch.
            state = await _get(conn, transactional_id, _GET_LOCKED)
            t.check_open(state, transactional_id, producer_id, epoch, (topic, partition))
            await conn.execute(_OPEN, topic, partition, producer_id, epoch, first_sequence, lower)

    async def txn_place_batch(
        self, topic: str, partition: int, producer_id: int, epoch: int, first_sequence: int, base: int, end: int
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(_PLACE, base, end, topic, partition, producer_id, epoch, first_sequence)

    async def txn_void_batches(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        async with self._conn(transaction=True) as conn:
            await conn.executemany(_VOID, t.void_rows(topic, partition, batches))

    async def txn_settled(self, topic: str, partition: int) -> set[tuple[int, int, int]]:
        async with self._conn() as conn:
            return t.batch_keys(await conn.fetch(_SETTLED, topic, partition))

    async def txn_batches(self, topic: str, partition: int, from_offset: int = 0) -> list[t.TxnBatch]:
        async with self._conn() as conn:
            return [t.batch_from_row(row) for row in await conn.fetch(_BATCHES, topic, partition, from_offset)]

    async def txn_commit_offsets(
        self, transactional_id: str, producer_id: int, epoch: int, group: str, topic: str, offsets: Mapping[int, int]
    ) -> None:
        pairs = v.validate_offsets(offsets)
        async with self._conn(transaction=True) as conn:
            state = await _get(conn, transactional_id, _GET_LOCKED)
            t.check_offsets(state, transactional_id, producer_id, epoch, group)
            await conn.executemany(_PUT_OFFSET, [(transactional_id, group, topic, p, o) for p, o in pairs])

    # -- unanswered idempotent batches (migration 0015, storage/metadata/unanswered.py) ----------
    async def kafka_unanswered(self, topic: str, partition: int) -> list[ProducerBatch]:
        async with self._conn() as conn:
            return [u.batch_from_row(row) for row in await conn.fetch(_UNANSWERED, topic, partition)]

    async def kafka_keep_unanswered(
        self, topic: str, partition: int, holder: str, epoch: int, batches: Sequence[ProducerBatch]
    ) -> None:
        rows = u.insert_rows(topic, partition, u.validate(batches))
        if not rows:
            return
        resource = partition_resource(topic, partition)
        async with self._conn(transaction=True) as conn:
            # The lease row stays locked until the rows commit: a take-over (which updates it)
            # waits, so the new leader's load sees them, or they are refused here.
            await hold_fence(conn, resource, holder, epoch)
            await conn.executemany(_KEEP_UNANSWERED, rows)

    async def kafka_drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        rows = u.delete_rows(topic, partition, batches)
        if rows:
            async with self._conn(transaction=True) as conn:
                await conn.executemany(_DROP_UNANSWERED, rows)
