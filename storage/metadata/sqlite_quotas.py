"""The SQLite store's quotas per organisation (issue 15; migrations 0010_quotas.sql and
0011_quota_storage.sql), and the committed segment bytes per topic that storage quotas are
measured by. The row value and the SQL are shared with postgres_quotas.py."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from streamhouse.storage.errors import InvalidInputError, OrganisationNotFoundError
from streamhouse.storage.metadata.sqlite_base import NOW, SqliteBase, all_rows, one

ORG_EXISTS = "SELECT name FROM auth_orgs WHERE name = ?"
UPSERT = (
    "INSERT INTO auth_quotas (org, produce_bytes_per_s, fetch_bytes_per_s, requests_per_s, storage_bytes,"
    " partitions, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, {now}) ON CONFLICT (org) DO UPDATE SET"
    " produce_bytes_per_s = excluded.produce_bytes_per_s, fetch_bytes_per_s = excluded.fetch_bytes_per_s,"
    " requests_per_s = excluded.requests_per_s, storage_bytes = excluded.storage_bytes,"
    " partitions = excluded.partitions, updated_at_ms = excluded.updated_at_ms"
)
_COLUMNS = "org, produce_bytes_per_s, fetch_bytes_per_s, requests_per_s, storage_bytes, partitions"
GET = f"SELECT {_COLUMNS} FROM auth_quotas WHERE org = ?"
ALL = f"SELECT {_COLUMNS} FROM auth_quotas ORDER BY org"
# One aggregate over the segments table (its primary key starts with topic): cheap enough to
# run every few seconds per agent (engine/auth/quota_storage.py caches it).
TOPIC_BYTES = "SELECT topic, SUM(size_bytes) FROM segments GROUP BY topic"


@dataclass(frozen=True)
class OrgQuota:
    """An org's stored limits per second; None is the server's default."""

    org: str
    produce_bytes_per_s: float | None = None
    fetch_bytes_per_s: float | None = None
    requests_per_s: float | None = None
    storage_bytes: int | None = None  # committed segment bytes of the org's topics
    partitions: int | None = None  # partitions of the org's topics

    def __post_init__(self) -> None:
        for rate in self.rates():
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                raise InvalidInputError(f"quota of org {self.org!r}: a rate must be a positive number, not {rate!r}")
        for size in self.sizes():
            if size is not None and not (isinstance(size, int) and size > 0):
                raise InvalidInputError(f"quota of org {self.org!r}: a size must be a positive integer, not {size!r}")

    def rates(self) -> tuple[float | None, float | None, float | None]:
        return (self.produce_bytes_per_s, self.fetch_bytes_per_s, self.requests_per_s)

    def sizes(self) -> tuple[int | None, int | None]:
        return (self.storage_bytes, self.partitions)


def quota_row(row: Any) -> OrgQuota:
    return OrgQuota(row[0], row[1], row[2], row[3], row[4], row[5])


class SqliteQuotas(SqliteBase):
    async def quota_set(self, quota: OrgQuota) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if one(conn, ORG_EXISTS, (quota.org,)) is None:
                raise OrganisationNotFoundError(f"organisation {quota.org!r} does not exist")
            conn.execute(UPSERT.format(now=NOW), (quota.org, *quota.rates(), *quota.sizes()))

        await self._write(tx)

    async def quota_get(self, org: str) -> OrgQuota | None:
        def tx(conn: sqlite3.Connection) -> OrgQuota | None:
            row = one(conn, GET, (org,))
            return None if row is None else quota_row(row)

        return await self._read(tx)

    async def quota_list(self) -> list[OrgQuota]:
        return await self._read(lambda conn: [quota_row(row) for row in all_rows(conn, ALL)])

    async def quota_topic_bytes(self) -> dict[str, int]:
        """Committed segment bytes per topic (topics with no segment are absent)."""
        return await self._read(lambda conn: {str(t): int(n) for t, n in all_rows(conn, TOPIC_BYTES)})
