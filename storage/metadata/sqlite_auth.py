"""The SQLite store's identities and API keys (issue 15; rows and SQL in auth_sql.py), each
operation one transaction (BEGIN IMMEDIATE for writes, so creating a key's principal and the
key itself is one step against every other writer of the file)."""

from __future__ import annotations

import sqlite3

from streamhouse.storage.errors import (
    AlreadyExistsError,
    ApiKeyNotFoundError,
    OrganisationExistsError,
    OrganisationNotFoundError,
)
from streamhouse.storage.metadata import auth_sql as q
from streamhouse.storage.metadata.scram_sql import insert_sqlite
from streamhouse.storage.metadata.sqlite_base import NOW, SqliteBase, all_rows, one

_INSERT_ORG = q.INSERT_ORG.format(now=NOW)
_INSERT_PRINCIPAL = q.INSERT_PRINCIPAL.format(now=NOW)
_INSERT_KEY = q.INSERT_KEY.format(now=NOW)
_REVOKE = q.REVOKE.format(now=NOW)


class SqliteAuth(SqliteBase):
    async def auth_create_org(self, name: str) -> q.Organisation:
        q.check_org(name)

        def tx(conn: sqlite3.Connection) -> q.Organisation:
            row = one(conn, _INSERT_ORG, (name,))
            if row is None:
                raise OrganisationExistsError(f"organisation {name!r} already exists")
            return q.org_row(row)

        return await self._write(tx)

    async def auth_list_orgs(self) -> list[q.Organisation]:
        return await self._read(lambda conn: [q.org_row(row) for row in all_rows(conn, q.ORGS)])

    async def auth_create_key(self, key: q.NewApiKey) -> q.ApiKeyRow:
        def tx(conn: sqlite3.Connection) -> q.ApiKeyRow:
            if one(conn, q.ORG, (key.org,)) is None:
                raise OrganisationNotFoundError(f"organisation {key.org!r} does not exist")
            held = one(conn, q.PRINCIPAL_ADMIN, (key.org, key.principal))
            if held is None:
                conn.execute(_INSERT_PRINCIPAL, (key.org, key.principal, int(key.admin)))
            elif bool(held[0]) != key.admin:
                raise q.admin_mismatch(key, bool(held[0]))
            inserted = one(
                conn,
                _INSERT_KEY,
                (key.key_id, key.org, key.principal, key.secret_hash, key.description, key.expires_in_ms),
            )
            if inserted is None:
                raise AlreadyExistsError(f"API key id {key.key_id!r} is taken")
            insert_sqlite(conn, key.key_id, key.scram)
            row = one(conn, q.KEY, (key.key_id,))
            assert row is not None, "inserted in this transaction"
            return q.key_row(row)

        return await self._write(tx)

    async def auth_get_key(self, key_id: str) -> q.ApiKeyRow | None:
        def tx(conn: sqlite3.Connection) -> q.ApiKeyRow | None:
            row = one(conn, q.KEY, (key_id,))
            return None if row is None else q.key_row(row)

        return await self._read(tx)

    async def auth_list_keys(self, org: str | None = None) -> list[q.ApiKeyRow]:
        def tx(conn: sqlite3.Connection) -> list[q.ApiKeyRow]:
            if org is not None and one(conn, q.ORG, (org,)) is None:
                raise OrganisationNotFoundError(f"organisation {org!r} does not exist")
            rows = all_rows(conn, q.KEYS) if org is None else all_rows(conn, q.ORG_KEYS, (org,))
            return [q.key_row(row) for row in rows]

        return await self._read(tx)

    async def auth_revoke_key(self, key_id: str) -> q.ApiKeyRow:
        def tx(conn: sqlite3.Connection) -> q.ApiKeyRow:
            if one(conn, _REVOKE, (key_id,)) is None:
                raise ApiKeyNotFoundError(f"no API key has the id {key_id!r}")
            row = one(conn, q.KEY, (key_id,))
            assert row is not None, "updated in this transaction"
            return q.key_row(row)

        return await self._write(tx)
