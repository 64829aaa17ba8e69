"""Identities and API keys in the metadata store (issue 15, migration 0007), over SQLite and
PostgreSQL: orgs, principals created with their first key (admin flag fixed then), keys stored
with their hash only, expiry from the database clock, revocation that keeps the row and its
first time, refusals that change nothing, and snapshots that carry hashes, never secrets."""

from __future__ import annotations

import asyncio

import pytest

from streamhouse.auth import secret_hash as sh
from streamhouse.storage.errors import (
    AlreadyExistsError,
    ApiKeyNotFoundError,
    InvalidInputError,
    OrganisationExistsError,
    OrganisationNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.auth_sql import NewApiKey

HASH = "scrypt$1$1$1$c2FsdA$aGFzaA"  # the store keeps any text: it never sees a secret


def key(key_id: str, principal: str = "alice", *, org: str = "acme", admin: bool = False, **kw: object) -> NewApiKey:
    return NewApiKey(key_id, org, principal, admin, HASH, **kw)  # type: ignore[arg-type]


async def test_orgs_principals_and_keys(metadata_store: MetadataStore) -> None:
    store = metadata_store
    acme = await store.auth_create_org("acme")
    await store.auth_create_org("beta")
    assert [o.name for o in await store.auth_list_orgs()] == ["acme", "beta"]
    with pytest.raises(OrganisationExistsError):
        await store.auth_create_org("acme")
    with pytest.raises(InvalidInputError):
        await store.auth_create_org("no spaces")
    now = await store.now_ms()
    first = await store.auth_create_key(key("shk_0000000000000001", expires_in_ms=60_000))
    assert (first.org, first.principal, first.admin, first.revoked_at_ms) == ("acme", "alice", False, None)
    assert first.secret_hash == HASH and first.created_at_ms >= acme.created_at_ms
    assert first.expires_at_ms is not None and now + 60_000 <= first.expires_at_ms <= first.created_at_ms + 60_000
    await store.auth_create_key(key("shk_0000000000000002"))  # a second key of the same principal
    await store.auth_create_key(key("shk_0000000000000003", "root", org="beta", admin=True))
    assert await store.auth_get_key("shk_0000000000000001") == first
    assert await store.auth_get_key("shk_ffffffffffffffff") is None
    assert [k.key_id for k in await store.auth_list_keys()] == [
        "shk_0000000000000001",
        "shk_0000000000000002",
        "shk_0000000000000003",
    ]
    only_beta = await store.auth_list_keys("beta")
    assert [(k.key_id, k.admin, k.expires_at_ms) for k in only_beta] == [("shk_0000000000000003", True, None)]
    with pytest.raises(OrganisationNotFoundError):
        await store.auth_list_keys("nobody")


async def test_refusals_change_nothing(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.auth_create_org("acme")
    await store.auth_create_key(key("shk_0000000000000001"))
    before = await store.auth_list_keys()
    with pytest.raises(OrganisationNotFoundError):
        await store.auth_create_key(key("shk_0000000000000002", org="nobody"))
    with pytest.raises(AlreadyExistsError):  # the id is taken: not even the new principal stays
        await store.auth_create_key(key("shk_0000000000000001", "bob"))
    with pytest.raises(InvalidInputError, match="admin"):  # alice is not an admin; a key cannot make her one
        await store.auth_create_key(key("shk_0000000000000003", admin=True))
    with pytest.raises(InvalidInputError):
        key("shk_0000000000000004", expires_in_ms=0)
    with pytest.raises(ApiKeyNotFoundError):
        await store.auth_revoke_key("shk_ffffffffffffffff")
    assert await store.auth_list_keys() == before
    # bob was never created: his first key may make him an admin.
    assert (await store.auth_create_key(key("shk_0000000000000005", "bob", admin=True))).admin


async def test_revoke_keeps_the_row_and_the_first_time(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.auth_create_org("acme")
    await store.auth_create_key(key("shk_0000000000000001"))
    revoked = await store.auth_revoke_key("shk_0000000000000001")
    assert revoked.revoked_at_ms is not None
    await asyncio.sleep(0.01)
    again = await store.auth_revoke_key("shk_0000000000000001")
    assert again.revoked_at_ms == revoked.revoked_at_ms
    assert await store.auth_get_key("shk_0000000000000001") == revoked


async def test_snapshots_hold_hashes_never_secrets(metadata_store: MetadataStore) -> None:
    """The DR snapshot exports every table (storage/metadata/snapshot.py): the key table is in
    it, with the slow hash of the secret and nothing from which the secret could be read."""
    store = metadata_store
    await store.auth_create_org("acme")
    secret = sh.new_secret()
    stored = sh.hash_secret(secret)
    await store.auth_create_key(NewApiKey("shk_0000000000000001", "acme", "alice", False, stored))
    dump = await store.export_tables()
    tables = {t.name: t for t in dump.tables}
    assert {"auth_orgs", "auth_principals", "auth_keys"} <= tables.keys()
    text = repr(dump)
    assert secret not in text and stored in text
    assert sh.verify_secret(secret, stored) and not sh.verify_secret(sh.new_secret(), stored)
