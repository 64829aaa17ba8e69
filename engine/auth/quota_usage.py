"""`SHOW USAGE` (issue 15): each organisation's usage and quotas as one SQL result.

One row per org: its recent rates on this agent (produce and fetch bytes/s, requests/s over the
last RATE_WINDOW_S, engine/auth/quota_gate.py), its totals on this agent since it started, how
often it was throttled, its committed storage bytes and partitions (cluster-wide, from the
metadata store, engine/auth/quota_storage.py), and its limits (its row over the server's
defaults; NULL is unlimited). Rates and totals are per agent, as the rate quotas are.

Who sees what: an admin principal, and a request with no authorization (auth off, embedded
mode: the process owns everything), every org the store knows plus any seen by the gate ("" is
the unauthenticated one); any other principal its own org only, so an org learns nothing of
another's existence.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import pyarrow as pa

from streamhouse.auth.quota_gate import AGENTS_ORG, QuotaGate
from streamhouse.auth.quota_storage import StorageQuotas, UsageStore
from streamhouse.storage import access
from streamhouse.storage.metadata.auth_sql import Organisation

_SHOW_USAGE = re.compile(r"\s*SHOW\s+USAGE\s*;?\s*", re.IGNORECASE)
_FIELDS: list[pa.Field[Any]] = [
    pa.field("org", pa.string(), nullable=False),
    pa.field("produce_bytes_per_s", pa.float64(), nullable=False),
    pa.field("fetch_bytes_per_s", pa.float64(), nullable=False),
    pa.field("requests_per_s", pa.float64(), nullable=False),
    pa.field("produce_bytes", pa.int64(), nullable=False),
    pa.field("fetch_bytes", pa.int64(), nullable=False),
    pa.field("requests", pa.int64(), nullable=False),
    pa.field("throttled", pa.int64(), nullable=False),
    pa.field("storage_bytes", pa.int64(), nullable=False),
    pa.field("partitions", pa.int64(), nullable=False),
    pa.field("quota_produce_bytes_per_s", pa.float64()),
    pa.field("quota_fetch_bytes_per_s", pa.float64()),
    pa.field("quota_requests_per_s", pa.float64()),
    pa.field("quota_storage_bytes", pa.int64()),
    pa.field("quota_partitions", pa.int64()),
]
SCHEMA = pa.schema(_FIELDS)


def is_show_usage(sql: str) -> bool:
    return _SHOW_USAGE.fullmatch(sql) is not None


class OrgStore(UsageStore, Protocol):
    async def auth_list_orgs(self) -> list[Organisation]: ...


def _viewer() -> tuple[str | None, bool]:
    """(the request's org, whether it sees every org)."""
    principal = getattr(access.CURRENT.get(), "principal", None)
    if principal is None:
        return None, True
    return str(principal.org), bool(principal.admin)


class UsageReport:
    def __init__(self, gate: QuotaGate, storage: StorageQuotas, store: OrgStore) -> None:
        self.gate = gate
        self.storage = storage
        self.store = store

    @classmethod
    def of_store(cls, store: OrgStore) -> UsageReport:
        """Without an agent's gate (embedded mode): storage and partitions, no rates or limits."""
        gate = QuotaGate()
        return cls(gate, StorageQuotas(gate, store), store)

    async def _orgs(self) -> list[str]:
        seen = {row.org for row in self.gate.usage()}
        known = {org.name for org in await self.store.auth_list_orgs()}
        orgs = (known | seen) - {AGENTS_ORG}
        return sorted(orgs or {""})

    async def table(self) -> pa.Table:
        org, everyone = _viewer()
        orgs = await self._orgs() if everyone else [org or ""]
        totals = {row.org: row for row in self.gate.usage()}
        columns: dict[str, list[object]] = {field.name: [] for field in SCHEMA}
        for name in orgs:
            limits = await self.gate.limits(name)
            stored = await self.storage.usage(name)
            row = totals.get(name)
            values: tuple[object, ...] = (
                name,
                *self.gate.recent(name),
                row.produce_bytes if row else 0,
                row.fetch_bytes if row else 0,
                row.requests if row else 0,
                row.throttled if row else 0,
                stored.storage_bytes,
                stored.partitions,
                *limits.tuple(),
                limits.storage_bytes,
                limits.partitions,
            )
            for field, value in zip(SCHEMA, values, strict=True):
                columns[field.name].append(value)
        return pa.table(columns, schema=SCHEMA)
