"""Kafka transactions' batches in a WAL take-over (issue 18 and 20; the chaos runs' torn and
aborted-read findings): real writers, WAL, object store and metadata store (SQLite and
PostgreSQL).

Agent a appends a transactional batch that no segment commits (WAL only) and loses the
partition. The client sends the batch again to the new leader b, where it commits; the
transaction is then aborted. When a recovers its WAL, the batch's offsets belong to b: the old
take-over appended it again at the end, a second copy outside its transaction's row (one
placement per batch), read as committed after the abort. A batch whose transaction is still
open and that is nowhere else is appended again as before, and placed by the segment commit
that makes it readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pytest

from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.metadata import transactions as t
from streamhouse.storage.metadata.txn_reads import stable_from
from streamhouse.storage.model import partition_resource
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.wal.log import WriteAheadLog
from tests.storage.test_partition_io import Env, batch, env, leader, reopen_wal, values

__all__ = ["env"]  # the fixture, imported

PID, TID = 7, "tx"


async def _open_transaction(env: Env) -> t.TxnState:
    state = await env.metadata.txn_put(t.TxnState(TID, PID, 0, t.ONGOING, started_ms=0,
                                                  partitions=frozenset([("events", 0)])))  # fmt: skip
    await env.metadata.txn_open_batch(TID, PID, 0, "events", 0, 0, 0)
    return state


@pytest.fixture
async def other(env: Env, tmp_path: Path) -> AsyncIterator[Env]:
    """Agent b's own WAL (a's recovery must not find b's entries, nor b's releases drop a's)."""
    wal = await WriteAheadLog.open(tmp_path / "wal-b", fsync="never")
    await wal.replay()
    yield dataclasses.replace(env, wal=wal, wal_dir=tmp_path / "wal-b")
    await wal.close()


def _txn_batch() -> pa.RecordBatch:
    return ps.tag(batch(0, 2), PID, 0, 0)


async def _committed(env: Env) -> list[bytes | None]:
    """The partition as a read_committed reader sees it (storage/metadata/txn_reads.py)."""
    table = await PartitionReader(env.metadata, env.store).read("events", 0, 0, max_records=100)
    return values(stable_from(await env.metadata.txn_batches("events", 0)).committed(table))


async def test_an_aborted_batch_already_in_the_log_is_not_appended_again(env: Env, other: Env) -> None:
    state = await _open_transaction(env)
    a = await leader(env, "agent-a")
    await a.append(_txn_batch())  # WAL only: a loses the partition before any commit
    await env.metadata.release_lease(partition_resource("events", 0), "agent-a", a.epoch)
    b = await leader(other, "agent-b")
    assert await b.append(_txn_batch()) == 0  # the client's retry reaches the new leader
    await b.flush()
    await env.metadata.txn_end(state, False, 1)
    replayed = await reopen_wal(env)
    await env.metadata.release_lease(partition_resource("events", 0), "agent-b", b.epoch)
    again = await leader(env, "agent-a", replayed=replayed)
    assert again.recovered_records == 0 and again.next_offset == 2
    await again.flush()
    assert await _committed(env) == []


async def test_an_open_batch_found_only_in_the_wal_is_appended_again_and_placed(env: Env, other: Env) -> None:
    state = await _open_transaction(env)
    a = await leader(env, "agent-a")
    await a.append(_txn_batch())
    await env.metadata.release_lease(partition_resource("events", 0), "agent-a", a.epoch)
    b = await leader(other, "agent-b")
    await b.append(batch(50, 3))  # other records take offsets 0..2
    await b.flush()
    replayed = await reopen_wal(env)
    await env.metadata.release_lease(partition_resource("events", 0), "agent-b", b.epoch)
    again = await leader(env, "agent-a", replayed=replayed)
    assert again.recovered_records == 2 and again.next_offset == 5
    await again.flush()
    assert await _committed(env) == [b"v50", b"v51", b"v52"]  # the open transaction holds the rest back
    await env.metadata.txn_end(state, False, 1)
    assert await _committed(env) == [b"v50", b"v51", b"v52"]  # placed at 3..4 by the commit: aborted there
