"""The SQLite store's ACL rules (issue 15; rows and SQL in acl_sql.py)."""

from __future__ import annotations

import sqlite3

from streamhouse.storage.metadata import acl_sql as q
from streamhouse.storage.metadata.sqlite_base import NOW, SqliteBase, all_rows, one

_INSERT = q.INSERT.format(now=NOW)


class SqliteAcls(SqliteBase):
    async def acl_add(self, rule: q.AclRule) -> bool:
        return await self._write(lambda conn: one(conn, _INSERT, rule.key()) is not None)

    async def acl_remove(self, rule: q.AclRule) -> bool:
        return await self._write(lambda conn: one(conn, q.DELETE, rule.key()) is not None)

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[q.AclRule]:
        def tx(conn: sqlite3.Connection) -> list[q.AclRule]:
            if org is None:
                rows = all_rows(conn, q.ALL)
            elif principal is None:
                rows = all_rows(conn, q.OF_ORG, (org,))
            else:
                rows = all_rows(conn, q.OF_PRINCIPAL, (org, principal))
            return [q.acl_row(row) for row in rows]

        return await self._read(tx)
