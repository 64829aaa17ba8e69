"""Rate quotas per org in the metadata store (issue 15, migration 0010), over SQLite and
PostgreSQL: set replaces the row, NULL rates stay NULL (the server's default), an unknown org and
a bad rate are refused with nothing written."""

from __future__ import annotations

import math

import pytest

from streamhouse.storage.errors import InvalidInputError, OrganisationNotFoundError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.sqlite_quotas import OrgQuota
from streamhouse.storage.model import partition_resource
from tests.storage.test_metadata_contract import HOLDER, make_segment


async def test_set_get_list_replace(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.auth_create_org("acme")
    await store.auth_create_org("beta")
    assert await store.quota_get("acme") is None
    assert await store.quota_list() == []
    await store.quota_set(OrgQuota("acme", produce_bytes_per_s=10e6, requests_per_s=100.0))
    await store.quota_set(OrgQuota("beta", fetch_bytes_per_s=1.5))
    assert await store.quota_get("acme") == OrgQuota("acme", 10e6, None, 100.0)
    await store.quota_set(OrgQuota("acme", fetch_bytes_per_s=2e6))  # replaces the whole row
    assert await store.quota_list() == [OrgQuota("acme", None, 2e6, None), OrgQuota("beta", None, 1.5, None)]
    await store.quota_set(OrgQuota("beta", storage_bytes=10**12, partitions=40))  # migration 0011
    assert await store.quota_get("beta") == OrgQuota("beta", storage_bytes=10**12, partitions=40)


async def test_unknown_org_and_bad_rates_change_nothing(metadata_store: MetadataStore) -> None:
    with pytest.raises(OrganisationNotFoundError):
        await metadata_store.quota_set(OrgQuota("ghost", produce_bytes_per_s=1.0))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidInputError):
            OrgQuota("acme", requests_per_s=bad)
    for size in (0, -1, 1.5):
        with pytest.raises(InvalidInputError):
            OrgQuota("acme", storage_bytes=size)  # type: ignore[arg-type]
    assert await metadata_store.quota_list() == []


async def test_committed_bytes_per_topic(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("a", 2)
    await metadata_store.create_topic("empty", 1)
    for partition, (base, end) in ((0, (0, 4)), (0, (4, 9)), (1, (0, 3))):
        lease = await metadata_store.acquire_lease(partition_resource("a", partition), HOLDER, 60_000)
        segment = make_segment("a", partition, base, end, lease.epoch)
        await metadata_store.commit_segment(segment, HOLDER, lease.epoch)
    sizes = await metadata_store.quota_topic_bytes()
    assert sizes == {"a": 100 * (4 + 5 + 3)}  # make_segment: 100 bytes a record; no segment, no entry
