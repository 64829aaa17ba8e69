"""The SQLite store's SCRAM credentials (migration 0008; value and SQL in scram_sql.py). They
are written by the key-creation transaction (sqlite_auth.py calls scram_sql.insert_sqlite)."""

from __future__ import annotations

import sqlite3

from streamhouse.storage.metadata import scram_sql as q
from streamhouse.storage.metadata.sqlite_base import SqliteBase, one


class SqliteScram(SqliteBase):
    async def auth_scram_credential(self, key_id: str, mechanism: str) -> q.ScramCredential | None:
        def tx(conn: sqlite3.Connection) -> q.ScramCredential | None:
            row = one(conn, q.GET, (key_id, mechanism))
            return None if row is None else q.credential_row(row)

        return await self._read(tx)
