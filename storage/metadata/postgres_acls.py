"""The PostgreSQL store's ACL rules, the same operations as sqlite_acls.py."""

from __future__ import annotations

from streamhouse.storage.metadata import acl_sql as q
from streamhouse.storage.metadata.postgres_base import NOW, PostgresBase
from streamhouse.storage.metadata.registry_sql import numbered

_INSERT = numbered(q.INSERT.format(now=NOW))
_DELETE = numbered(q.DELETE)
_ALL = numbered(q.ALL)
_OF_ORG = numbered(q.OF_ORG)
_OF_PRINCIPAL = numbered(q.OF_PRINCIPAL)


class PostgresAcls(PostgresBase):
    async def acl_add(self, rule: q.AclRule) -> bool:
        async with self._conn(transaction=True) as conn:
            return await conn.fetchval(_INSERT, *rule.key()) is not None

    async def acl_remove(self, rule: q.AclRule) -> bool:
        async with self._conn(transaction=True) as conn:
            return await conn.fetchval(_DELETE, *rule.key()) is not None

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[q.AclRule]:
        async with self._conn() as conn:
            if org is None:
                rows = await conn.fetch(_ALL)
            elif principal is None:
                rows = await conn.fetch(_OF_ORG, org)
            else:
                rows = await conn.fetch(_OF_PRINCIPAL, org, principal)
            return [q.acl_row(row) for row in rows]
