"""The part of the MetadataStore contract (base.py) that the services above the log keep in the
store: the schema registry's subjects and schemas, organisations and API keys, ACLs and rate
quotas. One Protocol still: MetadataStore inherits this one, so every backend implements both
and the same contract suites cover them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streamhouse.storage.metadata.acl_sql import AclRule
from streamhouse.storage.metadata.auth_sql import ApiKeyRow, NewApiKey, Organisation
from streamhouse.storage.metadata.scram_sql import ScramCredential
from streamhouse.storage.metadata.sqlite_quotas import OrgQuota
from streamhouse.storage.schemas.registry import SchemaText, StoredSchema, SubjectVersion


class ServiceMetadata(Protocol):
    # -- schema registry (issue 13; storage/schemas/registry.py) ----------------------------------
    async def registry_register(self, subject: str, schema: SchemaText, expected_latest: int | None) -> SubjectVersion:
        """One transaction: the schema's global id (by fingerprint; a new schema gets the next id
        and its references stored); if a live version of `subject` already has it, that version;
        else, if the subject's latest live version is still `expected_latest` (the one the caller
        checked compatibility against; None = no live version), a new version one past the
        highest ever (soft-deleted ones count). RegistryConflictError if the subject moved on:
        nothing was written."""
        ...

    async def registry_import(self, subject: str, schema: SchemaText, schema_id: int, version: int) -> SubjectVersion:
        """IMPORT mode (a migration from another registry): `schema` as id `schema_id` and
        version `version` of `subject`, one transaction, no compatibility check; the id counter
        moves past `schema_id` so later ids never collide. Idempotent for the same triple.
        OperationNotPermittedError (nothing written) if the id names another schema, the schema
        is stored under another id, or that version of the subject holds another schema."""
        ...

    async def registry_schema(self, schema_id: int) -> StoredSchema | None:
        """The schema with this id (rows are never deleted, so ids stay readable)."""
        ...

    async def registry_schema_id(self, schema: SchemaText) -> int | None:
        """The id of an already stored schema (same fingerprint), else None."""
        ...

    async def registry_versions(self, subject: str, include_deleted: bool = False) -> list[SubjectVersion]:
        """The subject's versions, ascending; soft-deleted ones only with `include_deleted`."""
        ...

    async def registry_schema_versions(self, schema_id: int, include_deleted: bool = False) -> list[SubjectVersion]:
        """Every subject version using the schema, by subject then version."""
        ...

    async def registry_subjects(self, include_deleted: bool = False) -> list[str]:
        """Subjects with a live version (any version with `include_deleted`), sorted."""
        ...

    async def registry_referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of the schemas referencing that subject version and used by a live version."""
        ...

    async def registry_delete(self, subject: str, versions: Sequence[int], permanent: bool) -> None:
        """Soft-delete (mark) or permanently delete (drop the rows of) these versions, one
        transaction. ReferenceExistsError (nothing changed) if a schema still used by a live
        version (by any version, when permanent) references one of them. Schema rows stay."""
        ...

    async def registry_setting(self, kind: str, subject: str) -> str | None:
        """A compatibility level or mode (`kind`), for `subject` or globally (subject '')."""
        ...

    async def registry_set_setting(self, kind: str, subject: str, value: str | None) -> str | None:
        """Set (None: remove) a setting; returns the previous value."""
        ...

    # -- identities and API keys (issue 15; storage/metadata/auth_sql.py, engine/auth/) ----------
    async def auth_create_org(self, name: str) -> Organisation:
        """OrganisationExistsError if taken; InvalidInputError for a bad name."""
        ...

    async def auth_list_orgs(self) -> list[Organisation]:
        """Every organisation, by name."""
        ...

    async def auth_create_key(self, key: NewApiKey) -> ApiKeyRow:
        """One transaction: the key's principal is created if new (with `key.admin`), then the
        key (only its secret's hash). OrganisationNotFoundError; InvalidInputError if the
        principal exists with the other admin flag; AlreadyExistsError if the key id is taken.
        Any refusal changes nothing."""
        ...

    async def auth_get_key(self, key_id: str) -> ApiKeyRow | None:
        """The key as stored (revoked and expired ones too), None if no key has this id."""
        ...

    async def auth_list_keys(self, org: str | None = None) -> list[ApiKeyRow]:
        """Every key (of `org`), by org, principal, creation. OrganisationNotFoundError."""
        ...

    async def auth_revoke_key(self, key_id: str) -> ApiKeyRow:
        """Mark the key revoked (database clock; revoking again keeps the first time); the row
        stays. ApiKeyNotFoundError."""
        ...

    async def auth_scram_credential(self, key_id: str, mechanism: str) -> ScramCredential | None:
        """The key's SCRAM credential for `mechanism` (SCRAM-SHA-256/512; migration 0008, written
        with the key by auth_create_key), None if it has none."""
        ...

    # -- ACLs (issue 15; storage/metadata/acl_sql.py, engine/auth/acl.py) ---------------------------
    async def acl_add(self, rule: AclRule) -> bool:
        """Store an allow rule; False if the same rule was already there (nothing changes)."""
        ...

    async def acl_remove(self, rule: AclRule) -> bool:
        """Remove exactly this rule; False if there was none (nothing changes)."""
        ...

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[AclRule]:
        """Every rule, or an org's, or one principal's (`principal` only with `org`), sorted."""
        ...

    # -- rate quotas per org (issue 15; storage/metadata/sqlite_quotas.py, engine/auth/quota.py) ----
    async def quota_set(self, quota: OrgQuota) -> None:
        """Replace the org's limits (None: the server's default). OrganisationNotFoundError."""
        ...

    async def quota_get(self, org: str) -> OrgQuota | None: ...

    async def quota_list(self) -> list[OrgQuota]:
        """Every org with a stored row, by name."""
        ...

    async def quota_topic_bytes(self) -> dict[str, int]:
        """Committed segment bytes per topic, for storage quotas (engine/auth/quota_storage.py)."""
        ...
