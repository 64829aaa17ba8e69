"""The schema registry's operations (issue 13), transport-free, on the metadata store.

Confluent's semantics: a schema is registered under a subject after the subject's compatibility
level (its own, else the global one, else BACKWARD) accepts it against the live versions (the
latest, or all for *_TRANSITIVE); the same schema again returns its id without a check; ids are
global (storage/schemas/registry.py); soft delete hides versions, a permanent delete (only of
soft-deleted versions) drops them; READONLY (and READONLY_OVERRIDE) mode refuses writes. Everything that can change is
read from the store on each call (cache.py says why only schemas by id are cached)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamhouse.registry.cache import TtlCache
from streamhouse.registry.kinds import KINDS
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.schemas import errors as e
from streamhouse.storage.schemas import registry as r

_MAX_SUBJECT_CHARS = 1_000
_MAX_REFERENCE_DEPTH = 32
_REGISTER_ATTEMPTS = 5  # a conflict means another agent wrote the subject meanwhile: check again
_MAX_VERSION = 2**31 - 1
IMPORT = "IMPORT"  # Confluent's migration mode: register with a given id and version
# Confluent's READONLY_OVERRIDE: read-only as READONLY (registering and deleting refused); set
# globally it also overrides every subject's own mode (KafkaSchemaRegistry.getModeInScope), so
# one call freezes the whole registry whatever the subjects say.
READONLY_OVERRIDE = "READONLY_OVERRIDE"
_READ_ONLY = ("READONLY", READONLY_OVERRIDE)
_MODES = (*r.MODES, IMPORT, READONLY_OVERRIDE)


@dataclass(frozen=True)
class Found:
    """A subject version with its schema, as GET /subjects/{s}/versions/{v} answers it."""

    subject: str
    version: int
    schema_id: int
    schema: r.SchemaText


def check_subject(subject: str) -> str:
    if not subject or len(subject) > _MAX_SUBJECT_CHARS or any(ord(c) < 32 for c in subject):
        raise e.InvalidSchemaError(f"invalid subject name {subject[:100]!r}: 1-1000 printable characters")
    return subject


def parse_version(text: str | int) -> int | None:
    """A version path segment: "latest" / -1 → None (the latest), 1…2**31-1, else 42202."""
    if text in ("latest", -1, "-1"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_VERSION or str(text).strip() != str(value):
        raise e.InvalidVersionError(
            f"the version must be a positive 32-bit integer or 'latest', not {str(text)[:40]!r}"
        )
    return value


class RegistryService:
    def __init__(self, store: MetadataStore, cache: TtlCache[int, r.StoredSchema] | None = None) -> None:
        self.store = store
        self.cache: TtlCache[int, r.StoredSchema] = cache if cache is not None else TtlCache()

    # -- schemas ------------------------------------------------------------------------------
    async def schema(self, schema_id: int) -> r.StoredSchema:
        cached = self.cache.get(schema_id)
        if cached is not None:
            return cached
        stored = await self.store.registry_schema(schema_id)
        if stored is None:
            raise e.SchemaNotFoundError(f"schema {schema_id} not found")
        self.cache.put(schema_id, stored)
        return stored

    async def schema_versions(self, schema_id: int, deleted: bool = False) -> list[r.SubjectVersion]:
        await self.schema(schema_id)  # 40403 for an unknown id
        return await self.store.registry_schema_versions(schema_id, deleted)

    async def resolve_references(self, references: Sequence[r.Reference]) -> dict[str, str]:
        """name → schema text for every reference, transitively, dependencies first (as Avro
        needs them parsed). A missing referenced version is an invalid schema (42201)."""
        out: dict[str, str] = {}

        async def visit(refs: Sequence[r.Reference], depth: int) -> None:
            if depth > _MAX_REFERENCE_DEPTH:
                raise e.InvalidSchemaError(f"references nest deeper than {_MAX_REFERENCE_DEPTH} (a cycle?)")
            for ref in refs:
                if ref.name in out:
                    continue
                versions = await self.store.registry_versions(ref.subject, include_deleted=True)
                match = [v for v in versions if v.version == ref.version]
                if not match:
                    raise e.InvalidSchemaError(
                        f"reference {ref.name!r}: subject {ref.subject!r} version {ref.version} not found"
                    )
                stored = await self.schema(match[0].schema_id)
                await visit(stored.schema.references, depth + 1)
                out[ref.name] = stored.schema.text

        await visit(references, 0)
        return out

    async def normalise(self, schema_type: str, text: str, references: Sequence[r.Reference]) -> r.SchemaText:
        kind = KINDS.get(schema_type.upper())
        if kind is None:
            raise e.InvalidSchemaError(f"unknown schema type {schema_type[:40]!r}: use one of {', '.join(KINDS)}")
        resolved = await self.resolve_references(references)
        return r.SchemaText(kind.name, kind.normalise(text, resolved), tuple(references))

    # -- compatibility --------------------------------------------------------------------------
    async def compatibility(self, subject: str | None, default_to_global: bool = True) -> str:
        if subject is not None:
            level = await self.store.registry_setting(r.COMPATIBILITY, subject)
            if level is not None:
                return level
            if not default_to_global:
                raise e.SubjectConfigNotFoundError(f"subject {subject!r} has no compatibility level of its own")
        return await self.store.registry_setting(r.COMPATIBILITY, r.GLOBAL) or r.DEFAULT_COMPATIBILITY

    async def incompatibilities(
        self, schema: r.SchemaText, level: str, against: Sequence[r.SubjectVersion]
    ) -> list[str]:
        """Why `schema` breaks `level` against the live versions `against` (ascending)."""
        if level == "NONE" or not against:
            return []
        chosen = against if level.endswith("_TRANSITIVE") else against[-1:]
        kind = KINDS[schema.schema_type]
        refs = await self.resolve_references(schema.references)
        problems: list[str] = []
        for version in chosen:
            old = (await self.schema(version.schema_id)).schema
            if old.schema_type != schema.schema_type:
                problems.append(f"version {version.version} is {old.schema_type}, not {schema.schema_type}")
                continue
            old_refs = await self.resolve_references(old.references)
            if level.startswith(("BACKWARD", "FULL")):
                found = kind.check(schema.text, old.text, refs, old_refs)
                problems += [f"version {version.version} (backward): {p}" for p in found]
            if level.startswith(("FORWARD", "FULL")):
                found = kind.check(old.text, schema.text, old_refs, refs)
                problems += [f"version {version.version} (forward): {p}" for p in found]
        return problems

    async def test_compatibility(self, subject: str, version: str | None, schema: r.SchemaText) -> list[str]:
        """POST /compatibility/subjects/{s}/versions[/{v}]: the problems the subject's level
        finds against version `version` (None: against what a register would check)."""
        live = await self.store.registry_versions(subject)
        level = await self.compatibility(subject)
        if version is None:
            return await self.incompatibilities(schema, level, live)
        target = await self.version(subject, version)
        one = [v for v in live if v.version == target.version]
        return await self.incompatibilities(schema, level.removesuffix("_TRANSITIVE"), one)

    # -- subjects -------------------------------------------------------------------------------
    async def register(
        self, subject: str, schema: r.SchemaText, schema_id: int | None = None, version: int | None = None
    ) -> r.SubjectVersion:
        """`schema_id` / `version` only in IMPORT mode (then without a compatibility check)."""
        await self._writable(subject)
        mode = await self.mode(subject)
        if mode == IMPORT or schema_id is not None or version is not None:
            return await self._import(subject, schema, mode, schema_id, version)
        for _ in range(_REGISTER_ATTEMPTS):
            live = await self.store.registry_versions(subject)
            known = await self.store.registry_schema_id(schema)
            same = [v for v in live if v.schema_id == known]
            if same:
                return same[0]
            problems = await self.incompatibilities(schema, await self.compatibility(subject), live)
            if problems:
                raise e.IncompatibleSchemaError(
                    f"Schema being registered is incompatible with an earlier schema for subject {subject!r}: "
                    + "; ".join(problems),
                    tuple(problems),
                )
            try:
                return await self.store.registry_register(subject, schema, live[-1].version if live else None)
            except e.RegistryConflictError:
                continue
        raise e.RegistryConflictError(f"subject {subject!r} kept changing during {_REGISTER_ATTEMPTS} registrations")

    async def _import(
        self, subject: str, schema: r.SchemaText, mode: str, schema_id: int | None, version: int | None
    ) -> r.SubjectVersion:
        """Confluent's IMPORT: a schema kept with the id (and version) it had in the registry it
        comes from; the subject's (else the global) mode must be IMPORT, and the id is required."""
        if mode != IMPORT:
            raise e.OperationNotPermittedError(
                f"subject {subject!r} is not in import mode: an id or version can only be given in IMPORT mode"
            )
        if schema_id is None:
            raise e.OperationNotPermittedError(f"subject {subject!r} is in import mode: give the schema's id")
        if not 1 <= schema_id <= _MAX_VERSION or (version is not None and not 1 <= version <= _MAX_VERSION):
            raise e.InvalidSchemaError("id and version must be positive 32-bit integers")
        if version is None:  # the version holding that id already (the store checks the text), else the next
            every = await self.store.registry_versions(subject, include_deleted=True)
            same = [v.version for v in every if v.schema_id == schema_id and not v.deleted]
            version = same[0] if same else (every[-1].version if every else 0) + 1
        stored = await self.store.registry_import(subject, schema, schema_id, version)
        self.cache.put(schema_id, r.StoredSchema(schema_id, schema))
        return stored

    async def lookup(self, subject: str, schema: r.SchemaText, deleted: bool = False) -> r.SubjectVersion:
        versions = await self.store.registry_versions(subject, deleted)
        if not versions:
            raise e.SubjectNotFoundError(f"subject {subject!r} not found")
        known = await self.store.registry_schema_id(schema)
        same = [v for v in versions if v.schema_id == known]
        if not same:
            raise e.SchemaNotFoundError(f"schema not found under subject {subject!r}")
        return same[-1]

    async def subjects(self, deleted: bool = False, prefix: str = "") -> list[str]:
        return [s for s in await self.store.registry_subjects(deleted) if s.startswith(prefix)]

    async def versions(self, subject: str, deleted: bool = False) -> list[int]:
        found = await self.store.registry_versions(subject, deleted)
        if not found:
            raise e.SubjectNotFoundError(f"subject {subject!r} not found")
        return [v.version for v in found]

    async def version(self, subject: str, version: str | int, deleted: bool = False) -> Found:
        wanted = parse_version(version)
        found = await self.store.registry_versions(subject, include_deleted=deleted)
        if not found:
            raise e.SubjectNotFoundError(f"subject {subject!r} not found")
        match = found[-1:] if wanted is None else [v for v in found if v.version == wanted]
        if not match:
            raise e.VersionNotFoundError(f"version {version} of subject {subject!r} not found")
        v = match[0]
        return Found(subject, v.version, v.schema_id, (await self.schema(v.schema_id)).schema)

    async def referenced_by(self, subject: str, version: str | int) -> list[int]:
        found = await self.version(subject, version)
        return await self.store.registry_referenced_by(subject, found.version)

    async def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        await self._writable(subject)
        every = await self.store.registry_versions(subject, include_deleted=True)
        if not every:
            raise e.SubjectNotFoundError(f"subject {subject!r} not found")
        live = [v.version for v in every if not v.deleted]
        if permanent:
            if live:
                raise e.SubjectNotSoftDeletedError(
                    f"subject {subject!r} must be soft-deleted before a permanent delete"
                )
            versions = [v.version for v in every]
        elif not live:
            raise e.SubjectSoftDeletedError(f"subject {subject!r} was soft-deleted; delete it with permanent=true")
        else:
            versions = live
        await self.store.registry_delete(subject, versions, permanent)
        if permanent:  # as Confluent: the subject's own settings go with it
            await self.store.registry_set_setting(r.COMPATIBILITY, subject, None)
            await self.store.registry_set_setting(r.MODE, subject, None)
        return versions

    async def delete_version(self, subject: str, version: str, permanent: bool) -> int:
        await self._writable(subject)
        wanted = parse_version(version)
        every = await self.store.registry_versions(subject, include_deleted=True)
        if not every:
            raise e.SubjectNotFoundError(f"subject {subject!r} not found")
        pool = every if permanent and wanted is not None else [v for v in every if not v.deleted]
        match = (pool[-1:] if wanted is None else [v for v in pool if v.version == wanted]) if pool else []
        if not match:
            if any(v.version == wanted for v in every):
                raise e.VersionSoftDeletedError(f"version {wanted} of subject {subject!r} was soft-deleted")
            raise e.VersionNotFoundError(f"version {version} of subject {subject!r} not found")
        target = match[0]
        if permanent and not target.deleted:
            raise e.VersionNotSoftDeletedError(
                f"version {target.version} of subject {subject!r} must be soft-deleted before a permanent delete"
            )
        await self.store.registry_delete(subject, [target.version], permanent)
        return target.version

    # -- settings -------------------------------------------------------------------------------
    async def set_compatibility(self, subject: str | None, level: str) -> str:
        level = str(level).upper()
        if level not in r.COMPATIBILITY_LEVELS:
            raise e.InvalidCompatibilityError(
                f"invalid compatibility level {level[:40]!r}: use one of {', '.join(r.COMPATIBILITY_LEVELS)}"
            )
        await self.store.registry_set_setting(r.COMPATIBILITY, subject or r.GLOBAL, level)
        return level

    async def delete_compatibility(self, subject: str | None) -> str:
        previous = await self.compatibility(subject, default_to_global=subject is None)
        await self.store.registry_set_setting(r.COMPATIBILITY, subject or r.GLOBAL, None)
        return previous

    async def mode(self, subject: str | None, default_to_global: bool = True) -> str:
        global_mode = await self.store.registry_setting(r.MODE, r.GLOBAL)
        if global_mode == READONLY_OVERRIDE:  # overrides the subjects' own modes (module docstring)
            return global_mode
        if subject is not None:
            mode = await self.store.registry_setting(r.MODE, subject)
            if mode is not None:
                return mode
            if not default_to_global:
                raise e.SubjectModeNotFoundError(f"subject {subject!r} has no mode of its own")
        return global_mode or r.DEFAULT_MODE

    async def set_mode(self, subject: str | None, mode: str, force: bool = False) -> str:
        mode = str(mode).upper()
        if mode not in _MODES:
            raise e.InvalidModeError(f"invalid mode {mode[:40]!r}: use one of {', '.join(_MODES)}")
        if mode == IMPORT and not force:
            # As Confluent: importing beside live schemas could collide with them, unless forced.
            found = await self.store.registry_versions(subject) if subject else await self.store.registry_subjects()
            if found:
                where = f"subject {subject!r} has" if subject else "the registry has"
                raise e.OperationNotPermittedError(
                    f"cannot import since {where} schemas already: empty it first, or set the mode with force=true"
                )
        await self.store.registry_set_setting(r.MODE, subject or r.GLOBAL, mode)
        return mode

    async def delete_mode(self, subject: str) -> str:
        previous = await self.mode(subject, default_to_global=False)
        await self.store.registry_set_setting(r.MODE, subject, None)
        return previous

    async def _writable(self, subject: str) -> None:
        if await self.mode(subject) in _READ_ONLY:
            raise e.OperationNotPermittedError(f"subject {subject!r} is in read-only mode")
