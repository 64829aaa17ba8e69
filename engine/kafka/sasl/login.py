"""One SASL login on a Kafka connection: the mechanism's token exchange, with the IO it needs.

PLAIN is one step: parse its one message (RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8;
the user is the API key id, the password its secret), then the one verify function every front
end uses (`Authenticator.authenticate`, which counts its own refusals). SCRAM is two steps around a
lookup (engine/auth/scram.py is the IO-free exchange): the key's row (revoked, expired) and its
stored credential for the mechanism, read from the metadata store at the first step. Its
refusals are counted here, in the authenticator's metric under front "kafka".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamhouse.auth import Authenticator, Principal
from streamhouse.auth.scram import ScramServer
from streamhouse.storage.errors import AuthenticationError
from streamhouse.storage.metadata.auth_sql import ApiKeyRow
from streamhouse.storage.metadata.scram_sql import ScramCredential

FRONT = "kafka"
PLAIN_MAX_BYTES = 1024  # a real PLAIN message is ~70 bytes (20-character id, 43-character secret)


def parse_plain(token: bytes) -> tuple[str, str]:
    """(key id, secret), or AuthenticationError('malformed') saying what is wrong (never what
    was sent)."""
    if len(token) > PLAIN_MAX_BYTES:
        raise AuthenticationError(f"malformed PLAIN message: longer than {PLAIN_MAX_BYTES} bytes", reason="malformed")
    parts = token.split(b"\x00")
    if len(parts) != 3:
        raise AuthenticationError(
            "malformed PLAIN message: expected [authzid] NUL user NUL password", reason="malformed"
        )
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise AuthenticationError("malformed PLAIN message: not UTF-8", reason="malformed") from None
    if authzid and authzid != user:  # Kafka's PlainServer: no acting as another principal
        raise AuthenticationError("malformed PLAIN message: the authorization id must be the user", reason="malformed")
    return user, password


class KeyStore(Protocol):
    """What logins read of the metadata store (MetadataStore has both)."""

    async def auth_get_key(self, key_id: str) -> ApiKeyRow | None: ...

    async def auth_scram_credential(self, key_id: str, mechanism: str) -> ScramCredential | None: ...


@dataclass(frozen=True)
class Step:
    """A login step's answer: the token for the client, and the principal once it is done."""

    reply: bytes
    principal: Principal | None = None
    expires_at_ms: int | None = None  # the key's expiry, which bounds the session


class Login(Protocol):
    async def step(self, token: bytes) -> Step:
        """The next reply, or AuthenticationError (already counted in the metric)."""
        ...


class PlainLogin:
    def __init__(self, authenticator: Authenticator, store: KeyStore) -> None:
        self._authenticator = authenticator
        self._store = store

    async def step(self, token: bytes) -> Step:
        try:
            key_id, secret = parse_plain(token)
        except AuthenticationError as exc:
            self._authenticator.failures.labels(FRONT, exc.reason).inc()
            raise
        principal = await self._authenticator.authenticate(FRONT, key_id, secret)
        # The key's expiry bounds the session (SaslAuthenticate v1+ session_lifetime_ms).
        return Step(b"", principal, principal.expires_at_ms)


class ScramLogin:
    def __init__(
        self,
        mechanism: str,
        authenticator: Authenticator,
        store: KeyStore,
        fake_key: bytes,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._server = ScramServer(mechanism, fake_key)
        self._authenticator = authenticator
        self._store = store
        self._wall_ms = wall_ms
        self._row: ApiKeyRow | None = None

    async def step(self, token: bytes) -> Step:
        try:
            if self._row is None and not self._server.key_id:
                return Step(await self._first(token))
            reply = self._server.client_final(token)
        except AuthenticationError as exc:
            self._authenticator.failures.labels(FRONT, exc.reason).inc()
            raise
        row = self._row
        assert row is not None, "client_final succeeds only for a stored credential"
        return Step(
            reply, Principal(row.org, row.principal, row.admin, row.key_id, row.expires_at_ms), row.expires_at_ms
        )

    async def _first(self, token: bytes) -> bytes:
        key_id = self._server.client_first(token)
        row = await self._store.auth_get_key(key_id)
        credential = None
        refusal: str | None = None
        if row is not None:
            credential = await self._store.auth_scram_credential(key_id, self._server.mechanism)
            if row.revoked_at_ms is not None:
                refusal = "revoked"
            elif row.expires_at_ms is not None and self._wall_ms() >= row.expires_at_ms:
                refusal = "expired"
        # Unknown, revoked and expired keys still get a server-first message; the exchange
        # fails after the proof with the same message as a wrong secret.
        self._row = row if credential is not None and refusal is None else None
        return self._server.server_first(credential, refusal)
