"""Admin statements run by the agent (issue 15; parsed in sql/statements/admin.py): organisations,
API keys and ACL rules on the agent's metadata store, the same calls `streamhouse auth …` makes.

Only an admin may run them: with auth on, the request's authorization (storage/access.py,
entered by the front end) must belong to a principal with the admin flag, else
AuthorizationError (gRPC PERMISSION_DENIED, HTTP 403) before anything is read or written.
Without an authorization (auth off, embedded mode) they run, as every other statement does:
whoever reaches an open agent may already do everything.

Secrets: the token of CREATE API KEY is the one cell of its result; SHOW API KEYS has no hash
column; nothing here logs. Other agents see a new rule or a revocation within their caches'
TTL (5 s, engine/auth/authorizer.py and authenticator.py).
"""

from __future__ import annotations

import pyarrow as pa

from streamhouse.auth.acl import Grants
from streamhouse.auth.admin import AuthAdmin, KeyInfo
from streamhouse.sql.statements.admin import (
    AdminStatement,
    ChangeAcl,
    CreateApiKey,
    CreateOrg,
    RevokeApiKey,
    ShowAcls,
    ShowApiKeys,
    ShowOrgs,
)
from streamhouse.storage import access
from streamhouse.storage.errors import AlreadyExistsError, AuthorizationError, OrganisationNotFoundError
from streamhouse.storage.metadata.acl_sql import AclRule
from streamhouse.storage.metadata.auth_sql import Organisation
from streamhouse.storage.metadata.base import MetadataStore


def _schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(columns)


ACL_SCHEMA = _schema(
    [
        ("org", pa.string()),
        ("principal", pa.string()),
        ("resource_type", pa.string()),
        ("pattern", pa.string()),
        ("resource_name", pa.string()),
        ("operation", pa.string()),
    ]
)
KEY_SCHEMA = _schema(
    [
        ("key_id", pa.string()),
        ("org", pa.string()),
        ("principal", pa.string()),
        ("admin", pa.bool_()),
        ("state", pa.string()),
        ("created_at_ms", pa.int64()),
        ("expires_at_ms", pa.int64()),
        ("revoked_at_ms", pa.int64()),
        ("description", pa.string()),
    ]
)
ORG_SCHEMA = _schema([("org", pa.string()), ("created_at_ms", pa.int64())])


def require_admin(what: str) -> None:
    """AuthorizationError unless the current request is an admin's (or carries no authorization)."""
    current = access.CURRENT.get()
    if current is None:
        return
    if isinstance(current, Grants) and current.principal.admin:
        return
    who = f"{current.principal.org}/{current.principal.name}" if isinstance(current, Grants) else "this principal"
    raise AuthorizationError(f"{who} may not {what}: only a principal with the admin flag may", "subject")


class SqlAdmin:
    """AdminControl (sql/statements/admin.py) on a metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.admin = AuthAdmin(store)

    async def run(self, statement: AdminStatement) -> pa.Table:
        require_admin("manage organisations, API keys or ACLs")
        if isinstance(statement, CreateOrg):
            return await self._create_org(statement)
        if isinstance(statement, ShowOrgs):
            return _orgs(await self.admin.orgs())
        if isinstance(statement, CreateApiKey):
            s = statement
            created = await self.admin.create_key(
                s.org, s.principal, admin=s.admin, expires_in_ms=s.expires_in_ms, description=s.description
            )
            row = created.key
            return pa.table(
                {
                    "key_id": [row.key_id],
                    "org": [row.org],
                    "principal": [row.principal],
                    "admin": [row.admin],
                    "created_at_ms": pa.array([row.created_at_ms], pa.int64()),
                    "expires_at_ms": pa.array([row.expires_at_ms], pa.int64()),
                    "description": [row.description],
                    "token": [created.token],  # the only copy of the secret, shown once
                }
            )
        if isinstance(statement, ShowApiKeys):
            return _keys(await self.admin.keys(statement.org))
        if isinstance(statement, RevokeApiKey):
            return _keys([await self.admin.revoke(statement.key_id)])
        if isinstance(statement, ChangeAcl):
            return await self._change_acl(statement)
        return await self._show_acls(statement)

    async def _show_acls(self, statement: ShowAcls) -> pa.Table:
        rules = await self.store.acl_list(statement.org, statement.principal if statement.org is not None else None)
        if statement.principal is not None:
            rules = [r for r in rules if r.principal == statement.principal]
        return _acls(rules)

    async def _create_org(self, statement: CreateOrg) -> pa.Table:
        try:
            return _orgs([await self.admin.create_org(statement.name)])
        except AlreadyExistsError:
            if not statement.if_not_exists:
                raise
        return _orgs([org for org in await self.admin.orgs() if org.name == statement.name])

    async def _change_acl(self, s: ChangeAcl) -> pa.Table:
        # Every rule is built (and so validated) before the first is written: a bad one changes nothing.
        rules = [AclRule(s.org, s.principal, s.resource_type, s.pattern, s.resource_name, op) for op in s.operations]
        if s.grant and s.org not in {org.name for org in await self.admin.orgs()}:
            raise OrganisationNotFoundError(f"organisation {s.org!r} does not exist (CREATE ORG {s.org} first)")
        changed = []
        for rule in rules:
            changed.append(await (self.store.acl_add(rule) if s.grant else self.store.acl_remove(rule)))
        return _acls(rules).append_column("changed", pa.array(changed, pa.bool_()))


def _orgs(orgs: list[Organisation]) -> pa.Table:
    return pa.table({"org": [o.name for o in orgs], "created_at_ms": [o.created_at_ms for o in orgs]}, ORG_SCHEMA)


def _keys(keys: list[KeyInfo]) -> pa.Table:
    columns = [[getattr(k, name) for k in keys] for name in KEY_SCHEMA.names]
    return pa.table(dict(zip(KEY_SCHEMA.names, columns, strict=True)), KEY_SCHEMA)


def _acls(rules: list[AclRule]) -> pa.Table:
    columns = [[getattr(r, name) for r in rules] for name in ACL_SCHEMA.names]
    return pa.table(dict(zip(ACL_SCHEMA.names, columns, strict=True)), ACL_SCHEMA)
