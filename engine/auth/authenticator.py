"""The one place every front end checks a credential: `Authenticator.authenticate`.

Cache (why and how long): a cold check reads the key's row and runs scrypt (secret_hash.py, tens
of ms of CPU), far too slow for every produce. A verified key is therefore kept in memory with a
SHA-256 digest of its secret, and for CACHE_TTL_S (5 s by default) a request with the same key
and secret is answered from memory alone: no store read, no slow hash. After the TTL the next
request reads the row again (one indexed lookup; scrypt only if the stored hash changed), so a
revocation takes effect on every agent within CACHE_TTL_S, and expiry is checked on every
request, warm or not. A wrong secret for a cached key is refused from the cache too, without
scrypt, so guessing at a known key id cannot make the agent burn CPU. Slow hashes run in worker
threads, at most _HASHING at a time, never on the event loop.

Expiry is judged by this host's wall clock against the absolute time the store wrote from the
database clock when the key was made; hosts are assumed NTP-synced to well under the TTL.

Failures raise AuthenticationError with a message that does not say which check failed (no
probing), and are counted in `streamhouse_auth_failures_total{front, reason}` (REASONS; the
secret, the token and the key id never reach a label or a log line above DEBUG).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from streamhouse.auth import secret_hash as sh
from streamhouse.auth.authorizer import Authorizer
from streamhouse.auth.credentials import token_from_header
from streamhouse.storage.errors import AuthenticationError, StorageUnavailableError
from streamhouse.storage.metadata.acl_sql import AclRule
from streamhouse.storage.metadata.auth_sql import ApiKeyRow

log = logging.getLogger(__name__)
CACHE_TTL_S = 5.0
_MAX_CACHED = 10_000  # keys; the oldest verified goes first past it
_HASHING = 2  # slow hashes at once (the machine's cores; more only queues inside the OS)
REASONS = ("missing", "malformed", "unknown_key", "wrong_secret", "revoked", "expired")
_REFUSED = "invalid credential: the API key is unknown, wrong, revoked or expired"


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for. `key_id` is "" for the local process (embedded mode)."""

    org: str
    name: str
    admin: bool
    key_id: str
    # When the key stops working (None: never); Kafka SASL ends a login's session then.
    expires_at_ms: int | None = None


# The process that embeds the engine: it holds the files, so it is an admin of everything.
LOCAL = Principal(org="", name="local", admin=True, key_id="")


class KeyLookup(Protocol):
    """What the authenticator needs of the metadata store (MetadataStore has it)."""

    async def auth_get_key(self, key_id: str) -> ApiKeyRow | None: ...

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[AclRule]: ...


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    digest: bytes  # fast_digest of the verified secret
    secret_hash: str  # the stored hash it was verified against
    expires_at_ms: int | None
    checked_at: float  # monotonic time of the last store read


class Authenticator:
    def __init__(
        self,
        store: KeyLookup | None,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        registry: CollectorRegistry | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self.cache_ttl_s = cache_ttl_s
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._hashing = asyncio.Semaphore(_HASHING)
        # ACLs (authorizer.py): the same store, TTL and clock; entered by authenticate_header.
        self.acls = Authorizer(store, cache_ttl_s=cache_ttl_s, monotonic=monotonic)
        self.failures = Counter(
            "streamhouse_auth_failures_total",
            "Refused credentials by front end (grpc, http, kafka) and reason (missing, malformed, "
            "unknown_key, wrong_secret, revoked, expired).",
            ("front", "reason"),
            registry=registry,  # None: not in any registry until register() (the agent's comes later)
        )

    def bind(self, store: KeyLookup, registry: CollectorRegistry | None = None) -> None:
        """The store keys are read from and the registry the failure counter joins, for a
        server that needs this object (its gRPC interceptor) before it has opened either."""
        self._store = store
        self.acls.bind(store)
        if registry is not None:
            registry.register(self.failures)

    async def authenticate_header(self, front: str, header: str | None) -> Principal:
        """An HTTP `Authorization` value or gRPC `authorization` metadata (Bearer or Basic);
        the accepted principal's ACLs become the current request's (storage/access.py)."""
        try:
            token = token_from_header(header)
        except AuthenticationError as exc:
            self._refused(front, exc.reason, "")
            raise
        principal = await self.authenticate(front, token.key_id, token.secret)
        await self.acls.enter(principal)  # the request's ACLs, for whatever serves it (storage/access.py)
        return principal

    async def authenticate(self, front: str, key_id: str, secret: str) -> Principal:
        """The principal the key speaks for, or AuthenticationError (counted under `front`)."""
        try:
            sh.checked(key_id, secret)
            return await self._verify(key_id, secret)
        except AuthenticationError as exc:
            self._refused(front, exc.reason, key_id)
            raise

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache at once (a revoke made through this agent)."""
        self._cache.pop(key_id, None)

    async def _verify(self, key_id: str, secret: str) -> Principal:
        digest = sh.fast_digest(secret)
        entry = self._cache.get(key_id)
        now = self._monotonic()
        if entry is not None and now - entry.checked_at < self.cache_ttl_s:
            if not hmac.compare_digest(digest, entry.digest):
                raise AuthenticationError(_REFUSED, reason="wrong_secret")
            self._check_expiry(entry.expires_at_ms)
            return entry.principal
        if self._store is None:
            raise StorageUnavailableError("the agent is starting: it cannot check API keys yet")
        row = await self._store.auth_get_key(key_id)
        if row is None:
            self._cache.pop(key_id, None)
            raise AuthenticationError(_REFUSED, reason="unknown_key")
        if row.revoked_at_ms is not None:
            self._cache.pop(key_id, None)
            raise AuthenticationError(_REFUSED, reason="revoked")
        self._check_expiry(row.expires_at_ms)
        if entry is None or entry.secret_hash != row.secret_hash or not hmac.compare_digest(digest, entry.digest):
            async with self._hashing:
                ok = await asyncio.to_thread(sh.verify_secret, secret, row.secret_hash)
            if not ok:
                raise AuthenticationError(_REFUSED, reason="wrong_secret")
        principal = Principal(row.org, row.principal, row.admin, row.key_id, row.expires_at_ms)
        self._cache[key_id] = _Entry(principal, digest, row.secret_hash, row.expires_at_ms, self._monotonic())
        self._cache.move_to_end(key_id)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)
        return principal

    def _check_expiry(self, expires_at_ms: int | None) -> None:
        if expires_at_ms is not None and self._wall_ms() >= expires_at_ms:
            raise AuthenticationError(_REFUSED, reason="expired")

    def _refused(self, front: str, reason: str, key_id: str) -> None:
        self.failures.labels(front, reason).inc()
        # DEBUG only: a scanner would otherwise fill the log; the metric is what to watch.
        log.debug("refused a %s credential (%s) for key %s", front, reason, key_id or "-")
