"""Numbered schema migrations shared by both metadata backends.

Files live in `migrations/` as `NNNN_name.sql` and are read through importlib.resources so
they work from a wheel as well as from the source tree. Each backend applies the pending ones
in one transaction under its own lock and records them in `schema_migrations`; the decisions
(which files, in which order, is the database ahead of us) are made here once.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from streamhouse.storage.errors import StorageUnavailableError

# Same DDL on both backends; IF NOT EXISTS because every open runs it.
SCHEMA_MIGRATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at_ms BIGINT NOT NULL)"
)

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The script split into single statements, for drivers that run one at a time.

        sqlite3.complete_statement understands literals, comments and trigger bodies, so a
        semicolon inside any of them does not split a statement.
        """
        out: list[str] = []
        pending = ""
        for line in self.sql.splitlines(keepends=True):
            pending += line
            if sqlite3.complete_statement(pending):
                out.append(pending.strip())
                pending = ""
        if _strip_comments(pending):
            raise ValueError(f"migration {self.version:04d}_{self.name} ends with an unterminated statement")
        return out


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip()


@functools.cache
def all_migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this package, ordered by version, numbered 1, 2, 3…"""
    folder = resources.files("streamhouse.storage.metadata").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    # A gap or a duplicate means a file was renamed or lost; applying around it would leave
    # databases that differ by install, so refuse loudly instead.
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        versions = [m.version for m in found]
        raise RuntimeError(f"metadata migrations must be numbered 1..n without gaps, found {versions}")
    return tuple(found)


def pending(applied: Iterable[int]) -> list[Migration]:
    """Migrations not yet in `applied`, in order. Refuses a database newer than this code."""
    done = set(applied)
    known = all_migrations()
    newest = len(known)
    ahead = sorted(v for v in done if v > newest)
    if ahead:
        raise StorageUnavailableError(
            f"metadata schema has migrations {ahead} that this StreamHouse version does not know "
            f"(it knows 1..{newest}); upgrade StreamHouse"
        )
    return [m for m in known if m.version not in done]
