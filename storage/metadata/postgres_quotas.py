"""The PostgreSQL store's rate quotas per organisation, the same operations as sqlite_quotas.py."""

from __future__ import annotations

from streamhouse.storage.errors import OrganisationNotFoundError
from streamhouse.storage.metadata import sqlite_quotas as q
from streamhouse.storage.metadata.postgres_base import NOW, PostgresBase
from streamhouse.storage.metadata.registry_sql import numbered

_ORG_EXISTS = numbered(q.ORG_EXISTS + " FOR UPDATE")  # the org cannot go while its row is written
_UPSERT = numbered(q.UPSERT.format(now=NOW))
_GET = numbered(q.GET)


class PostgresQuotas(PostgresBase):
    async def quota_set(self, quota: q.OrgQuota) -> None:
        async with self._conn(transaction=True) as conn:
            if await conn.fetchval(_ORG_EXISTS, quota.org) is None:
                raise OrganisationNotFoundError(f"organisation {quota.org!r} does not exist")
            await conn.execute(_UPSERT, quota.org, *quota.rates(), *quota.sizes())

    async def quota_get(self, org: str) -> q.OrgQuota | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(_GET, org)
            return None if row is None else q.quota_row(row)

    async def quota_list(self) -> list[q.OrgQuota]:
        async with self._conn() as conn:
            return [q.quota_row(row) for row in await conn.fetch(q.ALL)]

    async def quota_topic_bytes(self) -> dict[str, int]:
        async with self._conn() as conn:
            return {str(row[0]): int(row[1]) for row in await conn.fetch(q.TOPIC_BYTES)}
