"""The PostgreSQL store's schema registry (issue 13), the same operations as sqlite_registry.py.

Writers to one subject take a transaction-scoped advisory lock on it first, so a register's
check (latest version) and insert, or a delete's reference check and update, are serialised
across agents as SQLite's file lock serialises them. A schema's row is inserted with ON CONFLICT
DO NOTHING: two agents registering the same new schema agree on the one id that committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamhouse.storage.metadata import registry_sql as q
from streamhouse.storage.metadata.postgres_base import NOW, PostgresBase
from streamhouse.storage.schemas.errors import ReferenceExistsError, RegistryConflictError
from streamhouse.storage.schemas.registry import SchemaText, StoredSchema, SubjectVersion

if TYPE_CHECKING:  # a type alias of asyncpg's stubs only
    from streamhouse.storage.metadata.postgres_base import Conn

_LOCK_SUBJECT = "SELECT pg_advisory_xact_lock(hashtextextended('registry:' || $1, 0))"
_INSERT_SCHEMA = q.numbered(q.INSERT_SCHEMA.format(now=NOW))
_INSERT_VERSION = q.numbered(q.INSERT_VERSION.format(now=NOW))
_BY_FINGERPRINT = q.numbered(q.SCHEMA_BY_FINGERPRINT)
_LIVE_WITH_SCHEMA = q.numbered(q.LIVE_WITH_SCHEMA)
_LATEST_LIVE = q.numbered(q.LATEST_LIVE)
_LATEST_ANY = q.numbered(q.LATEST_ANY)
_INSERT_REFERENCE = q.numbered(q.INSERT_REFERENCE)
_SCHEMA = q.numbered(q.SCHEMA)
_REFERENCES = q.numbered(q.REFERENCES)
_VERSIONS = q.numbered(q.VERSIONS)
_SCHEMA_VERSIONS = q.numbered(q.SCHEMA_VERSIONS)
_SUBJECTS = q.numbered(q.SUBJECTS)
_REFERRERS = q.numbered(q.REFERRERS)
_SETTING = q.numbered(q.SETTING)
_UPSERT_SETTING = q.numbered(q.UPSERT_SETTING)
_DELETE_SETTING = q.numbered(q.DELETE_SETTING)
_RAISE_ID = q.numbered(q.RAISE_ID.format(greatest="GREATEST"))
_FINGERPRINT_BY_ID = q.numbered(q.FINGERPRINT_BY_ID)
_VERSION_SCHEMA = q.numbered(q.VERSION_SCHEMA)


async def _schema_id(conn: Conn, schema: SchemaText) -> int:
    found = await conn.fetchval(_BY_FINGERPRINT, schema.fingerprint)
    if found is not None:
        return int(found)
    new_id = await conn.fetchval(q.NEXT_ID)
    assert new_id is not None, "migration 0004 seeds the registry_schema_id counter"
    inserted = await conn.fetchval(_INSERT_SCHEMA, int(new_id), schema.fingerprint, schema.schema_type, schema.text)
    if inserted is None:  # another agent committed the same schema meanwhile: its id wins
        return int(await conn.fetchval(_BY_FINGERPRINT, schema.fingerprint))
    await conn.executemany(_INSERT_REFERENCE, q.reference_rows(int(inserted), schema.references))
    return int(inserted)


class PostgresRegistry(PostgresBase):
    async def registry_register(self, subject: str, schema: SchemaText, expected_latest: int | None) -> SubjectVersion:
        async with self._conn(transaction=True) as conn:
            await conn.execute(_LOCK_SUBJECT, subject)
            schema_id = await _schema_id(conn, schema)
            same = await conn.fetchval(_LIVE_WITH_SCHEMA, subject, schema_id)
            if same is not None:
                return SubjectVersion(subject, int(same), schema_id)
            latest = await conn.fetchval(_LATEST_LIVE, subject)
            live = None if latest is None else int(latest)
            if live != expected_latest:
                raise RegistryConflictError(
                    f"subject {subject!r} changed during the registration (latest version {live}, "
                    f"checked against {expected_latest})"
                )
            top = await conn.fetchval(_LATEST_ANY, subject)
            version = 1 if top is None else int(top) + 1
            await conn.execute(_INSERT_VERSION, subject, version, schema_id)
            return SubjectVersion(subject, version, schema_id)

    async def registry_import(self, subject: str, schema: SchemaText, schema_id: int, version: int) -> SubjectVersion:
        async with self._conn(transaction=True) as conn:
            await conn.execute(_LOCK_SUBJECT, subject)
            # The counter row first: a concurrent register waits, then allocates past this id.
            await conn.execute(_RAISE_ID, schema_id)
            by_text = await conn.fetchval(_BY_FINGERPRINT, schema.fingerprint)
            at_id = await conn.fetchval(_FINGERPRINT_BY_ID, schema_id)
            q.check_import(schema, schema_id, None if by_text is None else int(by_text), at_id)
            if at_id is None:
                inserted = await conn.fetchval(
                    _INSERT_SCHEMA, schema_id, schema.fingerprint, schema.schema_type, schema.text
                )
                if inserted is None:  # the same text committed meanwhile (the counter lock makes it rare)
                    q.check_import(
                        schema, schema_id, int(await conn.fetchval(_BY_FINGERPRINT, schema.fingerprint)), None
                    )
                else:
                    await conn.executemany(_INSERT_REFERENCE, q.reference_rows(schema_id, schema.references))
            held = await conn.fetchval(_VERSION_SCHEMA, subject, version)
            q.check_import_version(subject, version, schema_id, None if held is None else int(held))
            if held is None:
                await conn.execute(_INSERT_VERSION, subject, version, schema_id)
            return SubjectVersion(subject, version, schema_id)

    async def registry_schema(self, schema_id: int) -> StoredSchema | None:
        async with self._conn(snapshot=True) as conn:
            row = await conn.fetchrow(_SCHEMA, schema_id)
            if row is None:
                return None
            return q.stored_schema(schema_id, row, await conn.fetch(_REFERENCES, schema_id))

    async def registry_schema_id(self, schema: SchemaText) -> int | None:
        async with self._conn() as conn:
            found = await conn.fetchval(_BY_FINGERPRINT, schema.fingerprint)
        return None if found is None else int(found)

    async def registry_versions(self, subject: str, include_deleted: bool = False) -> list[SubjectVersion]:
        async with self._conn() as conn:
            rows = await conn.fetch(_VERSIONS, subject, int(include_deleted))
        return [q.subject_version(row) for row in rows]

    async def registry_schema_versions(self, schema_id: int, include_deleted: bool = False) -> list[SubjectVersion]:
        async with self._conn() as conn:
            rows = await conn.fetch(_SCHEMA_VERSIONS, schema_id, int(include_deleted))
        return [q.subject_version(row) for row in rows]

    async def registry_subjects(self, include_deleted: bool = False) -> list[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(_SUBJECTS, int(include_deleted))
        return [str(row[0]) for row in rows]

    async def registry_referenced_by(self, subject: str, version: int) -> list[int]:
        async with self._conn() as conn:
            rows = await conn.fetch(_REFERRERS, subject, version, 0)
        return [int(row[0]) for row in rows]

    async def registry_delete(self, subject: str, versions: Sequence[int], permanent: bool) -> None:
        if not versions:
            return
        sql = q.numbered((q.HARD_DELETE if permanent else q.SOFT_DELETE).format(versions=q.in_list(len(versions))))
        async with self._conn(transaction=True) as conn:
            await conn.execute(_LOCK_SUBJECT, subject)
            for version in versions:
                ids = [int(row[0]) for row in await conn.fetch(_REFERRERS, subject, version, int(permanent))]
                if ids:
                    raise ReferenceExistsError(f"subject {subject!r} version {version} is referenced by schemas {ids}")
            await conn.execute(sql, subject, *versions)

    async def registry_setting(self, kind: str, subject: str) -> str | None:
        async with self._conn() as conn:
            value = await conn.fetchval(_SETTING, kind, subject)
        return None if value is None else str(value)

    async def registry_set_setting(self, kind: str, subject: str, value: str | None) -> str | None:
        async with self._conn(transaction=True) as conn:
            previous = await conn.fetchval(_SETTING + " FOR UPDATE", kind, subject)
            if value is None:
                await conn.execute(_DELETE_SETTING, kind, subject)
            else:
                await conn.execute(_UPSERT_SETTING, kind, subject, value)
        return None if previous is None else str(previous)
