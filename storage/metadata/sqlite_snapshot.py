"""The SQLite store's metadata export and import (storage/metadata/snapshot.py): generic over
tables and columns, read from the schema itself (sqlite_master, PRAGMA table_info and
foreign_key_list), so tables and columns later migrations add need no change here."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import snapshot as sn
from streamhouse.storage.metadata.sqlite_base import SqliteBase, all_rows, one

_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"


def _names(conn: sqlite3.Connection) -> list[str]:
    return [str(row[0]) for row in all_rows(conn, _TABLES)]


def _export(conn: sqlite3.Connection, taken_ms: int) -> sn.MetadataDump:
    version = one(conn, "SELECT max(version) FROM schema_migrations")
    tables: list[sn.Table] = []
    for name in _names(conn):
        if name in sn.NOT_EXPORTED:
            continue
        cursor = conn.execute(f'SELECT * FROM "{name}"')
        columns = tuple(str(d[0]) for d in cursor.description)
        tables.append(sn.Table(name, columns, tuple(tuple(row) for row in cursor.fetchall())))
    return sn.MetadataDump(taken_ms, int(version[0] or 0) if version else 0, tuple(tables))


def _import(conn: sqlite3.Connection, tables: Sequence[sn.Table], url: str) -> None:
    names = _names(conn)
    target = {n: [str(r["name"]) for r in all_rows(conn, f'PRAGMA table_info("{n}")')] for n in names}
    counts = {n: int(one(conn, f'SELECT count(*) FROM "{n}"')[0]) for n in names}  # type: ignore[index]
    sn.check_empty(counts, url)
    sn.check_importable(tables, target, url)
    parents = {n: {str(r["table"]) for r in all_rows(conn, f'PRAGMA foreign_key_list("{n}")')} for n in names}
    for name in sn.insert_order({t.name for t in tables}, parents):
        for table in (t for t in tables if t.name == name and t.rows):
            columns = ", ".join(f'"{c}"' for c in table.columns)
            marks = ", ".join("?" * len(table.columns))
            sql = f'INSERT INTO "{name}" ({columns}) VALUES ({marks})'
            if name == "counters":  # seeded by the migrations: continue from the larger value
                sql += " ON CONFLICT (name) DO UPDATE SET value = MAX(counters.value, excluded.value)"
            try:
                conn.executemany(sql, table.rows)
            except sqlite3.IntegrityError as exc:
                raise InvalidInputError(f"metadata store {url} refused the snapshot's {name!r} rows: {exc}") from exc


class SqliteSnapshot(SqliteBase):
    async def export_tables(self) -> sn.MetadataDump:
        # The clock first: every commit acknowledged before it is in the read that follows.
        taken_ms = await self.now_ms()
        return await self._read(lambda conn: _export(conn, taken_ms))

    async def import_tables(self, tables: Sequence[sn.Table]) -> None:
        tables = list(tables)
        await self._write(lambda conn: _import(conn, tables, self._url))
