"""The SQLite metadata store's connection (docs/DESIGN.md §5): one stdlib sqlite3 connection in
WAL mode, every operation a synchronous function run in the bounded IO pool under a threading
lock, in a BEGIN (reads) or BEGIN IMMEDIATE (writes) transaction; the database's clock; and the
small queries every concern of the store shares."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from streamhouse.storage.errors import InvalidInputError, StorageUnavailableError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import rows as r

T = TypeVar("T")

# SQLite's clock in epoch ms; leases are judged by it, inside SQL, never by Python's clock.
NOW = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
# Writers queue on the file lock; a commit waits this long before the store reports unavailable.
_BUSY_TIMEOUT_MS = 30_000
MEMORY = ":memory:"
PREFIX = "sqlite:///"
INSERT_SEGMENT = f"INSERT INTO segments ({r.SEGMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW})"


def parse_sqlite_url(url: str) -> str:
    """`sqlite:///rel/path.db` → `rel/path.db`, `sqlite:////abs/path.db` → `/abs/path.db`,
    `sqlite://:memory:` (or `sqlite:///:memory:`) → `:memory:`."""
    if url == "sqlite://:memory:":
        return MEMORY
    if not url.startswith(PREFIX) or len(url) == len(PREFIX):
        raise InvalidInputError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db, sqlite:////abs/path.db")
    return url[len(PREFIX) :]


def connect(path: str) -> sqlite3.Connection:
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module never opens transactions behind our back; we BEGIN ourselves.
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed segment is what acks=durable promises; NORMAL could lose it on power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def one(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
    # fetchall, not fetchone: a statement left half-stepped would keep RETURNING writes pending.
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def all_rows(conn: sqlite3.Connection, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows


def partition_count(conn: sqlite3.Connection, topic: str) -> int | None:
    row = one(conn, "SELECT partitions FROM topics WHERE name = ?", (topic,))
    return None if row is None else int(row[0])


def end_offset(conn: sqlite3.Connection, topic: str, partition: int) -> int:
    r.check_partition(topic, partition, partition_count(conn, topic))
    row = one(conn, "SELECT end_offset FROM partitions WHERE topic = ? AND partition_id = ?", (topic, partition))
    assert row is not None, "every partition of an existing topic has a row"
    return int(row[0])


def hold_fence(conn: sqlite3.Connection, resource: str, holder: str, epoch: int) -> None:
    """Check `holder` still holds `resource` at `epoch`. Every write runs under BEGIN IMMEDIATE,
    so the lease cannot change before the transaction commits."""
    lease = one(conn, "SELECT holder, epoch FROM leases WHERE resource = ?", (resource,))
    r.check_fence(resource, lease, holder, epoch)


def job_exists(conn: sqlite3.Connection, name: str) -> bool:
    return one(conn, "SELECT 1 FROM jobs WHERE name = ?", (name,)) is not None


class SqliteBase:
    """The connection and how every operation of the store uses it; the store's concerns are
    the subclasses (sqlite.py, sqlite_jobs.py)."""

    def __init__(self, url: str, conn: sqlite3.Connection) -> None:
        self._url = url
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        await run_blocking(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- transactions -------------------------------------------------------------------------
    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # A deferred transaction still gives the reads one consistent snapshot.
        return await run_blocking(self._run, fn, "BEGIN")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await run_blocking(self._run, fn, "BEGIN IMMEDIATE")

    def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StorageUnavailableError(f"metadata store {self._url!r} is closed")
            try:
                conn.execute(begin)
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                # Locked past busy_timeout, disk full, file gone: the store is not usable now.
                raise StorageUnavailableError(f"metadata store {self._url!r}: {exc}") from exc
            return result

    async def now_ms(self) -> int:
        return await self._read(lambda conn: int(conn.execute(f"SELECT {NOW}").fetchall()[0][0]))
