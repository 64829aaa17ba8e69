"""Identities and API keys in the metadata store (issue 15, migration 0007): the rows as values
and the SQL both backends run (written with `?`; registry_sql.numbered gives PostgreSQL's `$n`).

Only the salted slow hash of a key's secret reaches this layer (engine/auth/secrets.py makes it);
nothing here can tell a secret from any other text, so nothing here ever receives one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.rows import Row
from streamhouse.storage.metadata.scram_sql import ScramCredential

# Org and principal names: what a topic name allows (they will prefix object-store keys and
# appear in ACL patterns), plus '@' for principals named after people's mail addresses.
_ORG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_KEY_ID_RE = re.compile(r"^[a-z0-9_]{4,64}$")


@dataclass(frozen=True)
class Organisation:
    name: str
    created_at_ms: int


@dataclass(frozen=True)
class ApiKeyRow:
    """One API key as stored: `secret_hash` is the slow hash (never the secret); `admin` is its
    principal's flag; `expires_at_ms` / `revoked_at_ms` are None for never / not revoked."""

    key_id: str
    org: str
    principal: str
    admin: bool
    secret_hash: str
    description: str
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None


@dataclass(frozen=True)
class NewApiKey:
    """What create_api_key stores. `expires_in_ms`: None for never, else counted from the
    database clock at the insert (every agent judges expiry by that absolute time)."""

    key_id: str
    org: str
    principal: str
    admin: bool
    secret_hash: str
    description: str = ""
    expires_in_ms: int | None = None
    scram: tuple[ScramCredential, ...] = ()  # Kafka SASL/SCRAM (scram_sql.py), same transaction

    def __post_init__(self) -> None:
        check_org(self.org)
        if not _PRINCIPAL_RE.match(self.principal):
            raise InvalidInputError(
                f"bad principal name {self.principal!r}: 1-128 of letters, digits, '.', '_', '-', '@', "
                "starting with a letter or digit"
            )
        if not _KEY_ID_RE.match(self.key_id):
            raise InvalidInputError(f"bad key id {self.key_id!r}: 4-64 of a-z, 0-9 and '_'")
        if self.expires_in_ms is not None and self.expires_in_ms <= 0:
            raise InvalidInputError(f"a key's expiry must be in the future, not {self.expires_in_ms} ms from now")
        if len(self.description) > 1000:
            raise InvalidInputError("a key's description is at most 1000 characters")


def check_org(name: str) -> None:
    if not _ORG_RE.match(name):
        raise InvalidInputError(
            f"bad organisation name {name!r}: 1-64 of letters, digits, '.', '_', '-', starting with a letter or digit"
        )


INSERT_ORG = (
    "INSERT INTO auth_orgs (name, created_at_ms) VALUES (?, {now}) ON CONFLICT (name) DO NOTHING"
    " RETURNING name, created_at_ms"
)
ORG = "SELECT name, created_at_ms FROM auth_orgs WHERE name = ?"
ORGS = "SELECT name, created_at_ms FROM auth_orgs ORDER BY name"
PRINCIPAL_ADMIN = "SELECT admin FROM auth_principals WHERE org = ? AND name = ?"
INSERT_PRINCIPAL = "INSERT INTO auth_principals (org, name, admin, created_at_ms) VALUES (?, ?, ?, {now})"
INSERT_KEY = (
    "INSERT INTO auth_keys (key_id, org, principal, secret_hash, description, created_at_ms, expires_at_ms)"
    " VALUES (?, ?, ?, ?, ?, {now}, {now} + ?) ON CONFLICT (key_id) DO NOTHING RETURNING key_id"
)
_KEY_COLUMNS = (
    "SELECT k.key_id, k.org, k.principal, p.admin, k.secret_hash, k.description, k.created_at_ms,"
    " k.expires_at_ms, k.revoked_at_ms FROM auth_keys k"
    " JOIN auth_principals p ON p.org = k.org AND p.name = k.principal"
)
KEY = f"{_KEY_COLUMNS} WHERE k.key_id = ?"
KEYS = f"{_KEY_COLUMNS} ORDER BY k.org, k.principal, k.created_at_ms, k.key_id"
ORG_KEYS = f"{_KEY_COLUMNS} WHERE k.org = ? ORDER BY k.principal, k.created_at_ms, k.key_id"
# Revoking twice keeps the first time: the row says when the key stopped working.
REVOKE = "UPDATE auth_keys SET revoked_at_ms = COALESCE(revoked_at_ms, {now}) WHERE key_id = ? RETURNING key_id"


def key_row(row: Row) -> ApiKeyRow:
    expires, revoked = row["expires_at_ms"], row["revoked_at_ms"]
    return ApiKeyRow(
        key_id=str(row["key_id"]),
        org=str(row["org"]),
        principal=str(row["principal"]),
        admin=bool(row["admin"]),
        secret_hash=str(row["secret_hash"]),
        description=str(row["description"]),
        created_at_ms=int(row["created_at_ms"]),
        expires_at_ms=None if expires is None else int(expires),
        revoked_at_ms=None if revoked is None else int(revoked),
    )


def org_row(row: Row) -> Organisation:
    return Organisation(str(row["name"]), int(row["created_at_ms"]))


def admin_mismatch(key: NewApiKey, stored_admin: bool) -> InvalidInputError:
    want, have = ("an admin", "not one") if key.admin else ("not an admin", "one")
    return InvalidInputError(
        f"principal {key.principal!r} of org {key.org!r} exists and is {have}; a key cannot make it {want} "
        "(a principal's admin flag is set when its first key is created)"
    )
