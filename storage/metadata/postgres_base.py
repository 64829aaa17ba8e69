"""PostgreSQL connections for the metadata store (asyncpg pool): transactions, the database's
clock, the errors that mean "unreachable", and the row locks every writer takes in the one
order postgres.py documents (topic → lease → partition)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata import rows as r
from streamhouse.storage.tasks import retrieve

if TYPE_CHECKING:  # the proxy is generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

__all__ = ["INSERT_SEGMENT", "NOW", "UNAVAILABLE", "Conn", "PostgresBase", "lock_topic", "locked_end_offset", "redact"]

# PostgreSQL's clock in epoch ms. clock_timestamp(), not now(): now() is frozen at transaction
# start, and a lease must be judged at the moment the statement runs.
NOW = "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint"
UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE 08: connection lost or refused by the server
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
)
_ACQUIRE_TIMEOUT_S = 30.0
_FLOOR_RETRY = "Failed to restore the pool connection floor"
FLOOR_RETRY_SAID_EVERY_S = 300.0


class _FloorRetries(logging.Filter):
    """After an outage asyncpg's pool reconnects its floor connection in the background and logs
    every failed attempt with a whole traceback (it backs off from 1 s to 60 s). The store's
    callers report the outage already (flush health, the agent's RoundLog), so this keeps one
    line with the error, and then one per FLOOR_RETRY_SAID_EVERY_S while it goes on."""

    def __init__(self) -> None:
        super().__init__()
        self._next_at = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_FLOOR_RETRY):
            return True
        now = time.monotonic()
        if now < self._next_at:
            return False
        self._next_at = now + FLOOR_RETRY_SAID_EVERY_S
        error = record.exc_info[1] if record.exc_info else None
        record.msg = "PostgreSQL pool cannot reconnect (asyncpg retries with backoff; said again in %d s): %s"
        record.args = (int(FLOOR_RETRY_SAID_EVERY_S), f"{type(error).__name__}: {error}" if error else "?")
        record.exc_info, record.exc_text = None, None
        return True


FLOOR_RETRIES = _FloorRetries()  # one per process: asyncpg logs on one logger for every pool
logging.getLogger("asyncpg.pool").addFilter(FLOOR_RETRIES)
INSERT_SEGMENT = (
    f"INSERT INTO segments ({r.SEGMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {NOW})"
)


class PostgresBase:
    """The pool and how every operation of the store uses it; the store's concerns are the
    subclasses (postgres.py, postgres_jobs.py)."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self._url = url
        self._pool = pool
        self._closed = False

    @property
    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = False, snapshot: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection; `transaction` wraps it in a (read committed) transaction,
        `snapshot` in a read-only repeatable-read one, where every statement sees one state."""
        if self._closed:
            raise StorageUnavailableError(f"metadata store {redact(self._url)} is closed")
        try:
            async with _pooled(self._pool) as conn:
                if snapshot:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        yield conn
                elif transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except UNAVAILABLE as exc:
            raise StorageUnavailableError(f"metadata store {redact(self._url)}: {exc}") from exc
        except asyncpg.InterfaceError as exc:
            # The server closed the connection inside a transaction: the statement failed with a
            # connection error, then the transaction's exit raised InterfaceError ("the
            # underlying connection is closed") while handling it, which replaced it. The same
            # outage; any other InterfaceError is a bug and stays one.
            if not isinstance(exc.__context__, UNAVAILABLE):
                raise
            raise StorageUnavailableError(f"metadata store {redact(self._url)}: {exc.__context__}") from exc

    async def now_ms(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval(f"SELECT {NOW}"))


@contextlib.asynccontextmanager
async def _pooled(pool: asyncpg.Pool) -> AsyncIterator[Conn]:
    """A connection of `pool`, given back in a task of its own whose outcome is always read.

    asyncpg gives a connection back under asyncio.shield, and a shield whose waiter is cancelled
    drops the callback that reads the outcome: a caller cancelled while a PostgreSQL restart
    made the release's reset query fail left asyncio logging "Task exception was never
    retrieved" with a traceback (about once per 48-min fault run, issue 19). Bounded: a pool
    exhausted by stuck holders surfaces as a timeout ("unavailable", which callers retry or
    report), not a wait with no end."""
    conn = await pool.acquire(timeout=_ACQUIRE_TIMEOUT_S)
    try:
        yield conn
    finally:
        release = asyncio.ensure_future(_give_back(pool, conn))
        release.add_done_callback(retrieve)
        await asyncio.shield(release)


async def _give_back(pool: asyncpg.Pool, conn: Conn) -> None:
    """`pool.release(conn)`, where a connection the server closed in the meantime is given back
    already. asyncpg's release checks the connection, then hands the holder's release to a task
    of its own: a PostgreSQL restart closing the connection between the two frees the holder,
    and that task then fails with InternalClientError ("called on a free connection holder"),
    which a segment flush reported as a bug and retried for 30 s (the issue-19 fault runs)."""
    try:
        await pool.release(conn)
    except asyncpg.InternalClientError as exc:
        if "free connection holder" not in str(exc):
            raise


async def lock_topic(conn: Conn, topic: str, mode: str) -> int | None:
    """The topic's partition count, with its row locked in `mode` ("" for a plain read), or None
    if it does not exist.

    Writers take KEY SHARE, which only conflicts with delete_topic's UPDATE lock: a topic cannot
    vanish half way through a write, and writes to one topic never block each other on it."""
    value = await conn.fetchval(f"SELECT partitions FROM topics WHERE name = $1 {mode}", topic)
    return None if value is None else int(value)


async def locked_end_offset(conn: Conn, topic: str, partition: int) -> int:
    value = await conn.fetchval(
        "SELECT end_offset FROM partitions WHERE topic = $1 AND partition_id = $2 FOR UPDATE",
        topic,
        partition,
    )
    assert value is not None, "every partition of an existing topic has a row"
    return int(value)


async def hold_fence(conn: Conn, resource: str, holder: str, epoch: int) -> None:
    """Check `holder` still holds `resource` at `epoch`, and keep the lease row locked until the
    transaction ends: a take-over (which updates that row) waits, so nothing commits under an
    epoch after it stopped being current."""
    lease = await conn.fetchrow("SELECT holder, epoch FROM leases WHERE resource = $1 FOR UPDATE", resource)
    r.check_fence(resource, lease, holder, epoch)


def redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
