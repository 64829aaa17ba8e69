"""Rate quotas per org in the metadata store (issue 15, migration 0010), over SQLite and
PostgreSQL: set replaces the row, NULL rates stay NULL (the server's default), an unknown org and
a bad rate are refused with nothing written."""

from __future__ import annotations

import math

import pytest

from streamhouse.storage.errors import InvalidInputError, OrganisationNotFoundError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.sqlite_quotas import OrgQuota


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


async def test_unknown_org_and_bad_rates_change_nothing(metadata_store: MetadataStore) -> None:
    with pytest.raises(OrganisationNotFoundError):
        await metadata_store.quota_set(OrgQuota("ghost", produce_bytes_per_s=1.0))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidInputError):
            OrgQuota("acme", requests_per_s=bad)
    assert await metadata_store.quota_list() == []
