"""The PostgreSQL store's SCRAM credentials, as sqlite_scram.py. `insert_postgres` runs inside
the key-creation transaction of postgres_auth.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamhouse.storage.metadata import scram_sql as q
from streamhouse.storage.metadata.postgres_base import PostgresBase
from streamhouse.storage.metadata.registry_sql import numbered

if TYPE_CHECKING:
    from streamhouse.storage.metadata.postgres_base import Conn

_INSERT = numbered(q.INSERT)
_GET = numbered(q.GET)


async def insert_postgres(conn: Conn, key_id: str, credentials: Sequence[q.ScramCredential]) -> None:
    if credentials:
        await conn.executemany(_INSERT, [q.params(key_id, c) for c in credentials])


class PostgresScram(PostgresBase):
    async def auth_scram_credential(self, key_id: str, mechanism: str) -> q.ScramCredential | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(_GET, key_id, mechanism)
            return None if row is None else q.credential_row(row)
