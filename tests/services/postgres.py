"""A real PostgreSQL for the tests (DESIGN §9): initdb + pg_ctl from the machine's binaries.

One server per session on a free loopback port with a throwaway data directory; every test
that asks for `pg_url` gets a fresh database in it, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

T = TypeVar("T")

_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_START_ATTEMPTS = 3  # the free port we picked can be taken before the server binds it
_DIR_PREFIX = "streamhouse-pg-"
_OWNER_FILE = "owner.pid"  # pid of the pytest process that started the server in this directory


def _find_bin_dir() -> Path:
    """The highest installed major version's bin directory."""

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin$", path)
        return int(match.group(1)) if match else -1

    candidates = [p for p in glob.glob(_BIN_GLOB) if os.path.exists(os.path.join(p, "pg_ctl"))]
    if not candidates:
        pytest.fail(
            f"PostgreSQL server binaries not found ({_BIN_GLOB}/pg_ctl). Install them, e.g. "
            "`apt-get install postgresql` on Debian/Ubuntu; the metadata tests need a real server.",
            pytrace=False,
        )
    return Path(max(candidates, key=version))


def _scratch_parent() -> str | None:
    # A RAM-backed data directory makes CREATE DATABASE (one per test) ~7x faster than disk here.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; drop to the postgres account when we are root.
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root but there is no 'postgres' user to run PostgreSQL as", pytrace=False)
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
        raise RuntimeError(
            f"{what} failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}\n{server_log}"
        )


def _reap_orphans(parent: str | None, pg_ctl: str) -> None:
    """Stop servers whose pytest process died before its teardown (killed, timed out); they
    would otherwise hold a port and RAM in /dev/shm until reboot. Only directories this fixture
    created and marked with a dead owner's pid are touched."""
    for owner_file in Path(parent or tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*/{_OWNER_FILE}"):
        try:
            os.kill(int(owner_file.read_text()), 0)
            continue  # the owner is alive: its server is in use
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue  # unreadable, or alive under another user: not ours to judge
        root = owner_file.parent
        if (root / "data" / "postmaster.pid").exists():
            stop = [pg_ctl, "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]
            subprocess.run(_as_postgres(stop), capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


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
    bin_dir = _find_bin_dir()
    pg_ctl = str(bin_dir / "pg_ctl")
    parent = _scratch_parent()
    _reap_orphans(parent, pg_ctl)
    root = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=parent))
    (root / _OWNER_FILE).write_text(str(os.getpid()))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
    data, log = root / "data", root / "server.log"
    started = False
    try:
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            "initdb",
        )
        for attempt in range(_START_ATTEMPTS):
            port = _free_port()
            # Durability is irrelevant for a throwaway test cluster; skipping fsync keeps it fast.
            options = (
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                _run(
                    [pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
                    "pg_ctl start",
                    log,
                )
            except RuntimeError:
                if attempt == _START_ATTEMPTS - 1:
                    raise
                continue
            started = True
            break
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], "pg_ctl stop", log)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """URL of a fresh, empty database for one test; dropped afterwards."""
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
