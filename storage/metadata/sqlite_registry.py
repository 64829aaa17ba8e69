"""The SQLite store's schema registry (issue 13): schemas with global ids, subject versions,
references and settings, each operation one transaction (BEGIN IMMEDIATE for writes, so a
register's check-then-insert is serialised against every other writer of the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from streamhouse.storage.metadata import registry_sql as q
from streamhouse.storage.metadata.sqlite_base import NOW, SqliteBase, all_rows, one
from streamhouse.storage.schemas.errors import ReferenceExistsError, RegistryConflictError
from streamhouse.storage.schemas.registry import SchemaText, StoredSchema, SubjectVersion

_INSERT_SCHEMA = q.INSERT_SCHEMA.format(now=NOW)
_INSERT_VERSION = q.INSERT_VERSION.format(now=NOW)
_RAISE_ID = q.RAISE_ID.format(greatest="max")


def _schema_id(conn: sqlite3.Connection, schema: SchemaText) -> int:
    """The schema's id, inserting it (and its references) under a new id if it is new."""
    row = one(conn, q.SCHEMA_BY_FINGERPRINT, (schema.fingerprint,))
    if row is not None:
        return int(row[0])
    counter = one(conn, q.NEXT_ID)
    assert counter is not None, "migration 0004 seeds the registry_schema_id counter"
    schema_id = int(counter[0])
    conn.execute(_INSERT_SCHEMA, (schema_id, schema.fingerprint, schema.schema_type, schema.text))
    conn.executemany(q.INSERT_REFERENCE, q.reference_rows(schema_id, schema.references))
    return schema_id


class SqliteRegistry(SqliteBase):
    async def registry_register(self, subject: str, schema: SchemaText, expected_latest: int | None) -> SubjectVersion:
        def tx(conn: sqlite3.Connection) -> SubjectVersion:
            schema_id = _schema_id(conn, schema)
            same = one(conn, q.LIVE_WITH_SCHEMA, (subject, schema_id))
            if same is not None:
                return SubjectVersion(subject, int(same[0]), schema_id)
            latest = one(conn, q.LATEST_LIVE, (subject,))
            live = None if latest is None or latest[0] is None else int(latest[0])
            if live != expected_latest:
                raise RegistryConflictError(
                    f"subject {subject!r} changed during the registration (latest version {live}, "
                    f"checked against {expected_latest})"
                )
            top = one(conn, q.LATEST_ANY, (subject,))
            version = 1 if top is None or top[0] is None else int(top[0]) + 1
            conn.execute(_INSERT_VERSION, (subject, version, schema_id))
            return SubjectVersion(subject, version, schema_id)

        return await self._write(tx)

    async def registry_import(self, subject: str, schema: SchemaText, schema_id: int, version: int) -> SubjectVersion:
        def tx(conn: sqlite3.Connection) -> SubjectVersion:
            conn.execute(_RAISE_ID, (schema_id,))
            by_text = one(conn, q.SCHEMA_BY_FINGERPRINT, (schema.fingerprint,))
            at_id = one(conn, q.FINGERPRINT_BY_ID, (schema_id,))
            q.check_import(
                schema,
                schema_id,
                None if by_text is None else int(by_text[0]),
                None if at_id is None else str(at_id[0]),
            )
            if at_id is None:
                conn.execute(_INSERT_SCHEMA, (schema_id, schema.fingerprint, schema.schema_type, schema.text))
                conn.executemany(q.INSERT_REFERENCE, q.reference_rows(schema_id, schema.references))
            held = one(conn, q.VERSION_SCHEMA, (subject, version))
            q.check_import_version(subject, version, schema_id, None if held is None else int(held[0]))
            if held is None:
                conn.execute(_INSERT_VERSION, (subject, version, schema_id))
            return SubjectVersion(subject, version, schema_id)

        return await self._write(tx)

    async def registry_schema(self, schema_id: int) -> StoredSchema | None:
        def tx(conn: sqlite3.Connection) -> StoredSchema | None:
            row = one(conn, q.SCHEMA, (schema_id,))
            return None if row is None else q.stored_schema(schema_id, row, all_rows(conn, q.REFERENCES, (schema_id,)))

        return await self._read(tx)

    async def registry_schema_id(self, schema: SchemaText) -> int | None:
        row = await self._read(lambda conn: one(conn, q.SCHEMA_BY_FINGERPRINT, (schema.fingerprint,)))
        return None if row is None else int(row[0])

    async def registry_versions(self, subject: str, include_deleted: bool = False) -> list[SubjectVersion]:
        rows = await self._read(lambda conn: all_rows(conn, q.VERSIONS, (subject, int(include_deleted))))
        return [q.subject_version(row) for row in rows]

    async def registry_schema_versions(self, schema_id: int, include_deleted: bool = False) -> list[SubjectVersion]:
        rows = await self._read(lambda conn: all_rows(conn, q.SCHEMA_VERSIONS, (schema_id, int(include_deleted))))
        return [q.subject_version(row) for row in rows]

    async def registry_subjects(self, include_deleted: bool = False) -> list[str]:
        rows = await self._read(lambda conn: all_rows(conn, q.SUBJECTS, (int(include_deleted),)))
        return [str(row[0]) for row in rows]

    async def registry_referenced_by(self, subject: str, version: int) -> list[int]:
        rows = await self._read(lambda conn: all_rows(conn, q.REFERRERS, (subject, version, 0)))
        return [int(row[0]) for row in rows]

    async def registry_delete(self, subject: str, versions: Sequence[int], permanent: bool) -> None:
        if not versions:
            return

        def tx(conn: sqlite3.Connection) -> None:
            for version in versions:
                referrers = all_rows(conn, q.REFERRERS, (subject, version, int(permanent)))
                if referrers:
                    ids = [int(row[0]) for row in referrers]
                    raise ReferenceExistsError(f"subject {subject!r} version {version} is referenced by schemas {ids}")
            sql = q.HARD_DELETE if permanent else q.SOFT_DELETE
            conn.execute(sql.format(versions=q.in_list(len(versions))), (subject, *versions))

        await self._write(tx)

    async def registry_setting(self, kind: str, subject: str) -> str | None:
        row = await self._read(lambda conn: one(conn, q.SETTING, (kind, subject)))
        return None if row is None else str(row[0])

    async def registry_set_setting(self, kind: str, subject: str, value: str | None) -> str | None:
        def tx(conn: sqlite3.Connection) -> str | None:
            row = one(conn, q.SETTING, (kind, subject))
            if value is None:
                conn.execute(q.DELETE_SETTING, (kind, subject))
            else:
                conn.execute(q.UPSERT_SETTING, (kind, subject, value))
            return None if row is None else str(row[0])

        return await self._write(tx)
