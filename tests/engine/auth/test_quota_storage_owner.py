"""Storage and partition usage per org from a real metadata store (issue 15): a topic in an
org's namespace (`acme~t`, storage/namespace.py) counts to that org alone, a global one to the
global namespace only; the partition quota refuses what would take an org over it, and refuses nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamhouse.auth.quota import QuotaLimits
from streamhouse.auth.quota_gate import QuotaGate
from streamhouse.auth.quota_storage import StorageQuotas, StoredUsage
from streamhouse.storage.errors import ResourceQuotaExceededError
from streamhouse.storage.metadata import open_metadata_store


def test_usage_by_namespace_and_the_partition_quota(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
        try:
            await store.create_topic("acme~t", 2)
            await store.create_topic("beta~t", 3)
            await store.create_topic("global", 1)

            async def load(org: str) -> QuotaLimits | None:
                return QuotaLimits(partitions=5) if org == "acme" else None

            quotas = StorageQuotas(QuotaGate(load=load), store)
            assert await quotas.usage("acme") == StoredUsage(0, 2)  # its own; the global topic is no org's
            assert await quotas.usage("beta") == StoredUsage(0, 3)
            assert await quotas.usage("") == StoredUsage(0, 1)
            await quotas.check_partitions("acme", 3)  # 2 + 3 = 5: at the quota, not over
            with pytest.raises(ResourceQuotaExceededError, match="2 partitions of its quota of 5"):
                await quotas.check_partitions("acme", 4)
            await quotas.check_partitions("beta", 1000)  # no quota: unlimited
            await quotas.check_produce("acme")  # no storage quota: never refused
        finally:
            await store.close()

    asyncio.run(scenario())
