"""The SQLite store's Kafka transactions (storage/metadata/transactions.py, migration 0012),
each operation one database transaction (BEGIN IMMEDIATE for writes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from streamhouse.storage.metadata import transactions as t
from streamhouse.storage.metadata import unanswered as u
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.metadata.sqlite_base import NOW, SqliteBase, all_rows, hold_fence, one
from streamhouse.storage.model import partition_resource

_UPSERT = t.UPSERT.format(now=NOW)
_MOVE_OFFSETS = t.MOVE_OFFSETS.format(now=NOW)


def _get(conn: sqlite3.Connection, transactional_id: str) -> t.TxnState | None:
    row = one(conn, t.GET, (transactional_id,))
    return None if row is None else t.state_from_row(row)


class SqliteTransactions(SqliteBase):
    async def txn_get(self, transactional_id: str) -> t.TxnState | None:
        v._name("transactional id", transactional_id)
        return await self._read(lambda conn: _get(conn, transactional_id))

    async def txn_ongoing(self) -> list[t.TxnState]:
        return await self._read(lambda conn: [t.state_from_row(row) for row in all_rows(conn, t.ONGOING_SQL)])

    async def txn_put(self, state: t.TxnState) -> t.TxnState:
        def tx(conn: sqlite3.Connection) -> t.TxnState:
            row = one(conn, t.VERSION, (state.transactional_id,))
            t.check_version(state.transactional_id, None if row is None else int(row[0]), state.version)
            stored = t.TxnState(**{**state.__dict__, "version": state.version + 1})
            conn.execute(_UPSERT, t.state_row(stored))
            return stored

        return await self._write(tx)

    async def txn_end(self, state: t.TxnState, commit: bool, new_epoch: int) -> t.TxnState:
        def tx(conn: sqlite3.Connection) -> t.TxnState:
            row = one(conn, t.VERSION, (state.transactional_id,))
            t.check_version(state.transactional_id, None if row is None else int(row[0]), state.version)
            sql = t.COMMIT_BATCHES if commit else t.ABORT_BATCHES
            conn.executemany(sql, ((topic, p, state.producer_id) for topic, p in sorted(state.partitions)))
            if commit:
                conn.execute(_MOVE_OFFSETS, (state.transactional_id,))
            conn.execute(t.DROP_OFFSETS, (state.transactional_id,))
            done = t.ended(state, commit, new_epoch)
            conn.execute(_UPSERT, t.state_row(done))
            return done

        return await self._write(tx)

    async def txn_open_batch(
        self, transactional_id: str, producer_id: int, epoch: int, topic: str, partition: int, first_sequence: int,
        lower: int,
    ) -> None:  # fmt: skip
        def tx(conn: sqlite3.Connection) -> None:
            t.check_open(_get(conn, transactional_id), transactional_id, producer_id, epoch, (topic, partition))
            conn.execute(t.OPEN_BATCH, (topic, partition, producer_id, epoch, first_sequence, lower))

        await self._write(tx)

    async def txn_place_batch(
        self, topic: str, partition: int, producer_id: int, epoch: int, first_sequence: int, base: int, end: int
    ) -> None:
        await self._write(
            lambda conn: conn.execute(t.PLACE_BATCH, (base, end, topic, partition, producer_id, epoch, first_sequence))
        )

    async def txn_void_batches(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        rows = t.void_rows(topic, partition, batches)
        await self._write(lambda conn: conn.executemany(t.VOID_BATCH, rows))

    async def txn_settled(self, topic: str, partition: int) -> set[tuple[int, int, int]]:
        return t.batch_keys(await self._read(lambda conn: all_rows(conn, t.SETTLED, (topic, partition))))

    async def txn_batches(self, topic: str, partition: int, from_offset: int = 0) -> list[t.TxnBatch]:
        rows = await self._read(lambda conn: all_rows(conn, t.BATCHES, (topic, partition, from_offset)))
        return [t.batch_from_row(row) for row in rows]

    async def txn_commit_offsets(
        self, transactional_id: str, producer_id: int, epoch: int, group: str, topic: str, offsets: Mapping[int, int]
    ) -> None:
        pairs = v.validate_offsets(offsets)

        def tx(conn: sqlite3.Connection) -> None:
            t.check_offsets(_get(conn, transactional_id), transactional_id, producer_id, epoch, group)
            conn.executemany(t.PUT_OFFSET, ((transactional_id, group, topic, p, o) for p, o in pairs))

        await self._write(tx)

    # -- unanswered idempotent batches (migration 0015, storage/metadata/unanswered.py) ----------
    async def kafka_unanswered(self, topic: str, partition: int) -> list[ProducerBatch]:
        rows = await self._read(lambda conn: all_rows(conn, u.SELECT, (topic, partition)))
        return [u.batch_from_row(row) for row in rows]

    async def kafka_keep_unanswered(
        self, topic: str, partition: int, holder: str, epoch: int, batches: Sequence[ProducerBatch]
    ) -> None:
        rows = u.insert_rows(topic, partition, u.validate(batches))
        if not rows:
            return
        resource = partition_resource(topic, partition)

        def tx(conn: sqlite3.Connection) -> None:
            hold_fence(conn, resource, holder, epoch)
            conn.executemany(u.INSERT, rows)

        await self._write(tx)

    async def kafka_drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        rows = u.delete_rows(topic, partition, batches)
        if rows:
            await self._write(lambda conn: conn.executemany(u.DELETE, rows))
