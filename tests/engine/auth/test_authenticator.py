"""The one Authenticator (engine/auth/authenticator.py) on a real SQLite store: a warm key is
answered from memory (no store read, no scrypt) until the TTL, after which a revocation is seen;
a wrong secret for a cached key is refused without scrypt; expiry holds warm or cold; the hash is
not the secret and the secret reaches no log line."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.auth import Authenticator
from streamhouse.auth import secret_hash as sh
from streamhouse.auth.admin import AuthAdmin
from streamhouse.storage.errors import AuthenticationError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.auth_sql import ApiKeyRow


class CountingStore:
    """The real store, counting the key reads the authenticator makes."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.reads = 0

    async def auth_get_key(self, key_id: str) -> ApiKeyRow | None:
        self.reads += 1
        return await self.store.auth_get_key(key_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await open_metadata_store(f"sqlite:///{tmp_path / 'm.db'}")
    await AuthAdmin(store).create_org("acme")
    yield store
    await store.close()


async def test_warm_cold_revoke_within_ttl(store: MetadataStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="streamhouse")
    admin = AuthAdmin(store)
    created = await admin.create_key("acme", "alice")
    key_id, secret = created.token.split(".")
    assert secret not in created.key.secret_hash and secret not in repr(created)
    counting, clock = CountingStore(store), Clock()
    auth = Authenticator(counting, cache_ttl_s=5.0, monotonic=clock)
    t0 = time.perf_counter()
    principal = await auth.authenticate("test", key_id, secret)
    cold = time.perf_counter() - t0
    assert (principal.org, principal.name, principal.admin, principal.key_id) == ("acme", "alice", False, key_id)
    t0 = time.perf_counter()
    for _ in range(100):
        assert await auth.authenticate("test", key_id, secret) == principal
    warm = (time.perf_counter() - t0) / 100
    assert counting.reads == 1 and warm * 20 < cold  # memory only: no store read, no scrypt
    with pytest.raises(AuthenticationError) as wrong:
        await auth.authenticate("test", key_id, sh.new_secret())
    assert wrong.value.reason == "wrong_secret" and counting.reads == 1  # refused from the cache
    await admin.revoke(key_id)
    clock.now += 4.9  # within the TTL the cached verdict stands (the documented bound)...
    await auth.authenticate("test", key_id, secret)
    clock.now += 0.2  # ...and past it the revocation is seen
    with pytest.raises(AuthenticationError) as revoked:
        await auth.authenticate("test", key_id, secret)
    assert revoked.value.reason == "revoked" and counting.reads == 2
    assert str(revoked.value) == str(wrong.value)  # one message for every reason: no probing
    failures = {
        s.labels["reason"]: s.value for m in auth.failures.collect() for s in m.samples if s.name.endswith("_total")
    }
    assert failures == {"wrong_secret": 1.0, "revoked": 1.0}
    assert secret not in caplog.text


async def test_expiry_and_shapes(store: MetadataStore) -> None:
    admin = AuthAdmin(store)
    wall = [0]
    created = await admin.create_key("acme", "bob", expires_in_ms=60_000)
    assert created.key.expires_at_ms is not None
    wall[0] = created.key.expires_at_ms - 1
    auth = Authenticator(store, wall_ms=lambda: wall[0])
    key_id, secret = created.token.split(".")
    await auth.authenticate("test", key_id, secret)
    wall[0] += 1  # the cached key expires on time too
    with pytest.raises(AuthenticationError) as expired:
        await auth.authenticate("test", key_id, secret)
    assert expired.value.reason == "expired"
    for header, reason in [
        (None, "missing"),
        ("Bearer " + "x" * 400, "malformed"),
        ("Bearer shk_0000000000000000", "malformed"),
        ("Digest abc", "malformed"),
        ("Basic !!!", "malformed"),
        ("Bearer shk_0000000000000000." + sh.new_secret(), "unknown_key"),
    ]:
        with pytest.raises(AuthenticationError) as refused:
            await auth.authenticate_header("http", header)
        assert refused.value.reason == reason, header


def test_hashes_are_salted_and_carry_their_parameters() -> None:
    secret = sh.new_secret()
    first, second = sh.hash_secret(secret), sh.hash_secret(secret)
    assert first != second and secret not in first
    assert first.startswith(f"scrypt${sh.LOG2_N}${sh.R}${sh.P}$")
    weaker = sh.hash_secret(secret, log2_n=10)  # old parameters still verify after they are raised
    assert sh.verify_secret(secret, first) and sh.verify_secret(secret, weaker)
    assert not sh.verify_secret(secret + "x", first)
    assert not sh.verify_secret(secret, "bcrypt$whatever") and not sh.verify_secret(secret, "scrypt$99$8$1$a$b")
