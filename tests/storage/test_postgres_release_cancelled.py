"""A metadata call cancelled while its connection is given back during a PostgreSQL restart
(storage/metadata/postgres_base.py `_pooled`). asyncpg releases under asyncio.shield; when the
caller is cancelled there, the shield drops the callback that reads the release's outcome, and
a release whose reset query then fails was logged "Task exception was never retrieved" with a
traceback (issue 19's 48-min fault runs, about once each).

The pool here is a stand-in with asyncpg's release shape (shielded, failing a moment later as
`ConnectionDoesNotExistError`), since a real server cannot be made to fail the reset query at
the instant of a cancellation; tests/storage/test_postgres_connection_lost.py covers the store
against a real PostgreSQL that goes away. The last test uses a real pool and server: a
connection closed while asyncpg gives it back."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import asyncpg
import pytest

from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata.postgres_base import PostgresBase


class _Acquire:
    """asyncpg's PoolAcquireContext: awaitable, and an async context manager that releases."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    def __await__(self) -> Any:
        return self._pool.connect().__await__()

    async def __aenter__(self) -> object:
        return await self._pool.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self._pool.release(self._pool.conn)


class _Pool:
    def __init__(self) -> None:
        self.conn = object()
        self.released = asyncio.Event()

    def acquire(self, timeout: float | None = None) -> _Acquire:
        return _Acquire(self)

    async def connect(self) -> object:
        return self.conn

    async def release(self, conn: object) -> None:
        await asyncio.shield(self._reset())  # as asyncpg.Pool.release

    async def _reset(self) -> None:
        self.released.set()
        await asyncio.sleep(0.05)
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")


def test_a_release_failing_after_its_caller_was_cancelled_is_not_reported_as_unretrieved() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
        pool = _Pool()
        store = PostgresBase("postgresql://stand-in/db", pool)  # type: ignore[arg-type]

        async def call() -> None:
            async with store._conn():
                pass

        task = asyncio.create_task(call())
        await pool.released.wait()  # the caller now waits on the shielded release …
        task.cancel()  # … and is cancelled there (its request went away)
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)  # the release fails on its own
        gc.collect()  # asyncio reports an unretrieved failure when the task is collected
        loop.set_exception_handler(None)
        return reported

    assert asyncio.run(main()) == []


def test_a_release_failing_for_a_caller_still_waiting_is_the_store_unavailable() -> None:
    async def main() -> None:
        store = PostgresBase("postgresql://stand-in/db", _Pool())  # type: ignore[arg-type]
        with pytest.raises(StorageUnavailableError, match="closed in the middle of operation"):
            async with store._conn():
                pass

    asyncio.run(main())


async def test_a_connection_the_server_closes_while_it_is_given_back_is_not_a_bug(pg_url: str) -> None:
    """asyncpg's release checks the connection, then releases its holder in a task of its own; a
    close in between (a PostgreSQL restart) frees the holder first, and that task failed with
    InternalClientError ("called on a free connection holder"): a segment flush of the fault runs
    reported it as a bug. Here, on a real server, the close lands exactly in between."""
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    store = PostgresBase(pg_url, pool)
    loop = asyncio.get_running_loop()
    try:
        async with store._conn() as conn:
            raw = conn._con  # the proxy's connection: what the server's close ends
            assert raw is not None
            # Ready-queue order from here: this, the release's first step (which checks the
            # connection and starts the holder's release task), the close, that task.
            loop.call_soon(lambda: loop.call_soon(raw.terminate))
        assert raw.is_closed()
        async with store._conn() as conn:  # the pool made a new connection: nothing leaked
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
