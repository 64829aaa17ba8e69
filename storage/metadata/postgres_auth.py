"""The PostgreSQL store's identities and API keys, the same operations as sqlite_auth.py.

Creating a key locks its org's row (FOR KEY SHARE would let two creators race on the principal;
FOR UPDATE serialises them), so the principal's insert-if-missing and the key's insert are one
step across agents, as SQLite's file lock makes them."""

from __future__ import annotations

from streamhouse.storage.errors import (
    AlreadyExistsError,
    ApiKeyNotFoundError,
    OrganisationExistsError,
    OrganisationNotFoundError,
)
from streamhouse.storage.metadata import auth_sql as q
from streamhouse.storage.metadata.postgres_base import NOW, PostgresBase
from streamhouse.storage.metadata.postgres_scram import insert_postgres
from streamhouse.storage.metadata.registry_sql import numbered

_INSERT_ORG = numbered(q.INSERT_ORG.format(now=NOW))
_ORG_LOCKED = numbered(q.ORG + " FOR UPDATE")
_ORG = numbered(q.ORG)
_ORGS = numbered(q.ORGS)
_PRINCIPAL_ADMIN = numbered(q.PRINCIPAL_ADMIN)
_INSERT_PRINCIPAL = numbered(q.INSERT_PRINCIPAL.format(now=NOW))
_INSERT_KEY = numbered(q.INSERT_KEY.format(now=NOW))
_KEY = numbered(q.KEY)
_KEYS = numbered(q.KEYS)
_ORG_KEYS = numbered(q.ORG_KEYS)
_REVOKE = numbered(q.REVOKE.format(now=NOW))


class PostgresAuth(PostgresBase):
    async def auth_create_org(self, name: str) -> q.Organisation:
        q.check_org(name)
        async with self._conn(transaction=True) as conn:
            row = await conn.fetchrow(_INSERT_ORG, name)
            if row is None:
                raise OrganisationExistsError(f"organisation {name!r} already exists")
            return q.org_row(row)

    async def auth_list_orgs(self) -> list[q.Organisation]:
        async with self._conn() as conn:
            return [q.org_row(row) for row in await conn.fetch(_ORGS)]

    async def auth_create_key(self, key: q.NewApiKey) -> q.ApiKeyRow:
        async with self._conn(transaction=True) as conn:
            if await conn.fetchrow(_ORG_LOCKED, key.org) is None:
                raise OrganisationNotFoundError(f"organisation {key.org!r} does not exist")
            held = await conn.fetchval(_PRINCIPAL_ADMIN, key.org, key.principal)
            if held is None:
                await conn.execute(_INSERT_PRINCIPAL, key.org, key.principal, int(key.admin))
            elif bool(held) != key.admin:
                raise q.admin_mismatch(key, bool(held))
            inserted = await conn.fetchval(
                _INSERT_KEY, key.key_id, key.org, key.principal, key.secret_hash, key.description, key.expires_in_ms
            )
            if inserted is None:
                raise AlreadyExistsError(f"API key id {key.key_id!r} is taken")
            await insert_postgres(conn, key.key_id, key.scram)
            row = await conn.fetchrow(_KEY, key.key_id)
            assert row is not None, "inserted in this transaction"
            return q.key_row(row)

    async def auth_get_key(self, key_id: str) -> q.ApiKeyRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(_KEY, key_id)
            return None if row is None else q.key_row(row)

    async def auth_list_keys(self, org: str | None = None) -> list[q.ApiKeyRow]:
        async with self._conn(snapshot=True) as conn:
            if org is None:
                return [q.key_row(row) for row in await conn.fetch(_KEYS)]
            if await conn.fetchrow(_ORG, org) is None:
                raise OrganisationNotFoundError(f"organisation {org!r} does not exist")
            return [q.key_row(row) for row in await conn.fetch(_ORG_KEYS, org)]

    async def auth_revoke_key(self, key_id: str) -> q.ApiKeyRow:
        async with self._conn(transaction=True) as conn:
            if await conn.fetchval(_REVOKE, key_id) is None:
                raise ApiKeyNotFoundError(f"no API key has the id {key_id!r}")
            row = await conn.fetchrow(_KEY, key_id)
            assert row is not None, "updated in this transaction"
            return q.key_row(row)
