"""Storage and partition quotas per organisation (issue 15): how much an org holds, and the
refusals when it is at its limit.

Usage is read cheaply from the metadata store: one aggregate of committed segment bytes per
topic (`quota_topic_bytes`, a SUM over the segments table) and the topic list's partition
counts, both cached for USAGE_TTL_S on each agent, so a produce asks nothing of the store. The
bytes are committed segments only (what the object store holds); a WAL's unflushed records
count once flushed. The limits are the org's row over the server's defaults, through the
agent's one QuotaGate (its cache, its FailureTracker for a failing store).

Which org a topic counts to is `owner` (stored topic name → org, or None: the global
namespace), by default the namespaces' own mapping (storage/namespace.py `org_of`):
`acme~orders` counts to acme alone. A topic in the global namespace (auth off, an admin's, the
embedding process's, or made before namespaces) counts to the global namespace ("") only: an
org holds what it can name, so an operator's topics never use up a tenant's quota.

The refusals are ResourceQuotaExceededError (the contract's table: gRPC RESOURCE_EXHAUSTED,
Kafka 44 POLICY_VIOLATION, HTTP 507), raised before anything is written:
- a produce by an org whose usage is at or over its storage quota (a batch that crosses it is
  taken: the limit is checked, as Kafka checks quotas, before and not inside a request);
- creating a topic or adding partitions that would take the org over its partition quota.
The agents' own org is never refused: its calls are hand-overs of records already admitted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streamhouse.auth.quota_gate import AGENTS_ORG, QuotaGate
from streamhouse.storage.errors import ResourceQuotaExceededError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.namespace import org_of

USAGE_TTL_S = 5.0
Owner = Callable[[str], str | None]


class UsageStore(Protocol):
    """What storage quotas need of the metadata store (MetadataStore has it)."""

    async def quota_topic_bytes(self) -> dict[str, int]: ...

    async def list_topics(self) -> list[TopicInfo]: ...


@dataclass(frozen=True)
class StoredUsage:
    """An org's committed bytes and partitions (SHOW USAGE)."""

    storage_bytes: int
    partitions: int


class StorageQuotas:
    def __init__(
        self,
        gate: QuotaGate,
        store: UsageStore,
        *,
        owner: Owner = org_of,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gate = gate
        self.store = store
        self.owner = owner
        self.clock = clock
        self._at = -USAGE_TTL_S
        self._bytes: Mapping[str, int] = {}
        self._partitions: Mapping[str, int] = {}
        self._refreshing: Awaitable[None] | None = None

    async def _refresh(self) -> None:
        if self.clock() - self._at < USAGE_TTL_S:
            return
        sizes = await self.store.quota_topic_bytes()
        topics = await self.store.list_topics()
        self._bytes = sizes
        self._partitions = {t.name: t.partitions for t in topics}
        self._at = self.clock()

    def forget(self) -> None:
        """The next check reads the store again (after a topic was created or grown here)."""
        self._at = -USAGE_TTL_S

    async def usage(self, org: str) -> StoredUsage:
        await self._refresh()
        return self.cached_usage(org)

    def cached_usage(self, org: str) -> StoredUsage:
        """As of the last read of the store (no IO: for the metrics)."""
        mine = [t for t in self._partitions.keys() | self._bytes.keys() if (self.owner(t) or "") == org]
        return StoredUsage(sum(self._bytes.get(t, 0) for t in mine), sum(self._partitions.get(t, 0) for t in mine))

    async def check_produce(self, org: str | None) -> None:
        """ResourceQuotaExceededError if the org holds its storage quota or more."""
        org = org or ""
        if org == AGENTS_ORG:
            return
        limit = (await self.gate.limits(org)).storage_bytes
        if limit is None:
            return
        used = (await self.usage(org)).storage_bytes
        if used >= limit:
            raise ResourceQuotaExceededError(
                f"organisation {org or '(anonymous)'!r} is at its storage quota: {used} of {limit} bytes committed;"
                " nothing was written (retention, deleting topics or a larger quota makes room)"
            )

    async def check_partitions(self, org: str | None, added: int) -> None:
        """ResourceQuotaExceededError if `added` more partitions take the org over its quota."""
        org = org or ""
        if org == AGENTS_ORG or added <= 0:
            return
        limit = (await self.gate.limits(org)).partitions
        if limit is None:
            return
        self.forget()  # creations are rare: counted from the store, not a cache a peer may have outdated
        used = (await self.usage(org)).partitions
        if used + added > limit:
            raise ResourceQuotaExceededError(
                f"organisation {org or '(anonymous)'!r} has {used} partitions of its quota of {limit}: "
                f"{added} more are refused and nothing was created"
            )


class UsageGauges(Collector):
    """`streamhouse_quota_storage_bytes{org}` and `streamhouse_quota_partitions{org}` for every org
    the gate has seen, from the last read of the store (at most USAGE_TTL_S old while anything
    is produced or created; no store call at scrape time)."""

    def __init__(self, storage: StorageQuotas) -> None:
        self.storage = storage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stored = GaugeMetricFamily(
            "streamhouse_quota_storage_bytes",
            "Committed segment bytes counted to an org's storage quota",
            labels=["org"],
        )
        parts = GaugeMetricFamily(
            "streamhouse_quota_partitions", "Partitions counted to an org's partition quota", labels=["org"]
        )
        for org in sorted({row.org for row in self.storage.gate.usage()} - {AGENTS_ORG}):
            usage = self.storage.cached_usage(org)
            stored.add_metric([org], usage.storage_bytes)
            parts.add_metric([org], usage.partitions)
        yield stored
        yield parts
