"""A PostgreSQL connection the server closes in the middle of a store transaction (a restart, an
administrator's pg_terminate_backend) is the store being unavailable: StorageUnavailableError,
which every caller retries or answers with a retriable error. asyncpg reports it as a
connection error from the statement but as a plain InterfaceError from the transaction's exit,
which escaped the store's mapping and closed a Kafka client's connection (the chaos run's
OffsetCommit during a PostgreSQL restart)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata import open_metadata_store, postgres_base


async def _terminate_the_waiter(url: str, locker: asyncpg.Connection) -> None:
    """Terminate the backend that waits for `locker`'s row lock, once it waits."""
    for _ in range(200):
        ended = await locker.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if ended:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the store's transaction never waited for the lock")


async def test_a_connection_closed_inside_a_transaction_is_unavailable(pg_url: str) -> None:
    store = await open_metadata_store(pg_url)
    locker = await asyncpg.connect(pg_url)
    try:
        await store.create_topic("t", 1)
        async with locker.transaction():
            # commit_offsets takes the topic's row FOR KEY SHARE, which waits behind FOR UPDATE.
            await locker.execute("SELECT 1 FROM topics WHERE name = 't' FOR UPDATE")
            commit = asyncio.create_task(store.commit_offsets("g", "t", {0: 5}))
            await _terminate_the_waiter(pg_url, locker)
            with pytest.raises(StorageUnavailableError):
                await asyncio.wait_for(commit, 10)
        # Nothing was committed, and the store works again on its next connection.
        assert await store.fetch_offsets("g", "t") in ({}, [])
        await store.commit_offsets("g", "t", {0: 5})
    finally:
        await locker.close()
        await store.close()


async def test_the_pools_reconnect_attempts_are_said_once(
    pg_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg logs each failed attempt to reconnect the pool's floor connection with a
    traceback; the store keeps one line (storage/metadata/postgres_base.py, _FloorRetries)."""
    monkeypatch.setattr(postgres_base.FLOOR_RETRIES, "_next_at", 0.0)  # another test's outage was said
    store = await open_metadata_store(pg_url)
    database = pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_url.rsplit("/", 1)[0] + "/postgres")
    try:
        await store.create_topic("t", 1)
        caplog.set_level(logging.WARNING, logger="asyncpg.pool")
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", database
        )
        await asyncio.sleep(4.5)  # attempts at about 0, 1 and 3 s
        said = [r for r in caplog.records if r.name == "asyncpg.pool"]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert said[0].exc_info is None and "cannot reconnect" in said[0].getMessage()
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await store.close()
