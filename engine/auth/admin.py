"""Managing organisations and API keys (issue 15): what `streamhouse auth …` and the SDK's admin
methods run, on a metadata store. The secret exists only in the CreatedKey this returns: it is
hashed before the store sees it, and no other call can show it again."""

from __future__ import annotations

from dataclasses import dataclass

from streamhouse.auth import scram
from streamhouse.auth import secret_hash as sh
from streamhouse.storage.errors import AlreadyExistsError, InvalidInputError
from streamhouse.storage.metadata.auth_sql import ApiKeyRow, NewApiKey, Organisation
from streamhouse.storage.metadata.base import MetadataStore

_ID_ATTEMPTS = 3  # 64 random bits: a collision is already a one-in-billions event


@dataclass(frozen=True)
class CreatedKey:
    """A new key: `token` (`<key_id>.<secret>`) is the only copy of the secret anywhere."""

    key: ApiKeyRow
    token: str

    def __repr__(self) -> str:  # a stray print or log of the value must not show the secret
        return f"CreatedKey(key={self.key!r}, token='{self.key.key_id}.***')"


@dataclass(frozen=True)
class KeyInfo:
    """A key as `auth list` shows it: everything but the hash, and its state now."""

    key_id: str
    org: str
    principal: str
    admin: bool
    state: str  # active, revoked, expired
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None
    description: str


def key_info(row: ApiKeyRow, now_ms: int) -> KeyInfo:
    if row.revoked_at_ms is not None:
        state = "revoked"
    elif row.expires_at_ms is not None and now_ms >= row.expires_at_ms:
        state = "expired"
    else:
        state = "active"
    return KeyInfo(
        row.key_id,
        row.org,
        row.principal,
        row.admin,
        state,
        row.created_at_ms,
        row.expires_at_ms,
        row.revoked_at_ms,
        row.description,
    )


class AuthAdmin:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    async def create_org(self, name: str) -> Organisation:
        return await self.store.auth_create_org(name)

    async def orgs(self) -> list[Organisation]:
        return await self.store.auth_list_orgs()

    async def create_key(
        self,
        org: str,
        principal: str,
        *,
        admin: bool = False,
        expires_in_ms: int | None = None,
        description: str = "",
    ) -> CreatedKey:
        """A new key for `principal` of `org` (the principal is created with its first key)."""
        if expires_in_ms is not None and expires_in_ms <= 0:
            raise InvalidInputError(f"a key's expiry must be in the future, not {expires_in_ms} ms from now")
        secret = sh.new_secret()
        secret_hash = sh.hash_secret(secret)
        scram_credentials = scram.credentials(secret)  # Kafka SASL/SCRAM: only derivable now
        for attempt in range(_ID_ATTEMPTS):
            key_id = sh.new_key_id()
            try:
                row = await self.store.auth_create_key(
                    NewApiKey(key_id, org, principal, admin, secret_hash, description, expires_in_ms, scram_credentials)
                )
            except AlreadyExistsError:
                if attempt == _ID_ATTEMPTS - 1:
                    raise
                continue
            return CreatedKey(row, sh.format_token(key_id, secret))
        raise AssertionError("the loop returns or raises")

    async def keys(self, org: str | None = None) -> list[KeyInfo]:
        rows = await self.store.auth_list_keys(org)
        now = await self.store.now_ms()
        return [key_info(row, now) for row in rows]

    async def revoke(self, key_id: str) -> KeyInfo:
        row = await self.store.auth_revoke_key(key_id)
        return key_info(row, await self.store.now_ms())
