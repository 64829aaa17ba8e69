"""A throwaway PostgreSQL on loopback (tests, benchmarks, notebooks): initdb + pg_ctl from the
machine's binaries (`/usr/lib/postgresql/*/bin`), run through `runuser -u postgres` as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_START_ATTEMPTS = 3  # the free port we picked can be taken before the server binds it
_DIR_PREFIX = "streamhouse-pg-"
_OWNER_FILE = "owner.pid"  # pid of the process that started the server in this directory


def _find_bin_dir() -> Path:
    """The highest installed major version's bin directory."""

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin$", path)
        return int(match.group(1)) if match else -1

    candidates = [p for p in glob.glob(_BIN_GLOB) if os.path.exists(os.path.join(p, "pg_ctl"))]
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL server binaries not found ({_BIN_GLOB}/pg_ctl). Install them, e.g. "
            "`apt-get install postgresql` on Debian/Ubuntu."
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
        raise RuntimeError("running as root but there is no 'postgres' user to run PostgreSQL as") from None
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120, check=False)
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
        if (root / "data" / "postmaster.pid").exists():
            stop = [pg_ctl, "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]
            subprocess.run(_as_postgres(stop), capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


class PostgresServer:
    """One initdb'd cluster in a temp directory, started on a free loopback port."""

    def __init__(self, *, fast_unsafe: bool = True) -> None:
        self.bin_dir = _find_bin_dir()
        self.pg_ctl = str(self.bin_dir / "pg_ctl")
        parent = _scratch_parent()
        reap_orphans(parent, self.pg_ctl)
        self.root = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=parent))
        (self.root / _OWNER_FILE).write_text(str(os.getpid()))
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.started = False
        self.dsn = ""
        self._fast_unsafe = fast_unsafe

    def start(self) -> str:
        """Initialise and start the cluster; returns the base DSN (database `postgres`)."""
        try:
            _run(
                [str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                "initdb",
            )
            for attempt in range(_START_ATTEMPTS):
                port = _free_port()
                options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
                if self._fast_unsafe:
                    # Durability is irrelevant for a throwaway cluster; skipping fsync keeps it fast.
                    options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                try:
                    start = [self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options]
                    _run(
                        [*start, "-w", "-t", "60", "start"],
                        "pg_ctl start",
                        self.log,
                    )
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
            _run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"], "pg_ctl stop", self.log)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
