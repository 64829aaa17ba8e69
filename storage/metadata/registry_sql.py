"""The schema registry's SQL, shared by both backends (written with `?`; `numbered` gives
PostgreSQL's `$n`), and its rows as values (storage/schemas/registry.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from streamhouse.storage.metadata.rows import Row
from streamhouse.storage.schemas.errors import OperationNotPermittedError
from streamhouse.storage.schemas.registry import Reference, SchemaText, StoredSchema, SubjectVersion

_MARK = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders → `$1, $2, …` (no literal in these statements holds a `?`)."""
    counter = iter(range(1, 1000))
    return _MARK.sub(lambda _m: f"${next(counter)}", sql)


def in_list(n: int) -> str:
    return ", ".join("?" for _ in range(n))


NEXT_ID = "UPDATE counters SET value = value + 1 WHERE name = 'registry_schema_id' RETURNING value"
SCHEMA_BY_FINGERPRINT = "SELECT schema_id FROM registry_schemas WHERE fingerprint = ?"
FINGERPRINT_BY_ID = "SELECT fingerprint FROM registry_schemas WHERE schema_id = ?"
VERSION_SCHEMA = "SELECT schema_id FROM registry_versions WHERE subject = ? AND version = ?"
# IMPORT: the counter past an imported id (SQLite's max() / PostgreSQL's GREATEST()).
RAISE_ID = "UPDATE counters SET value = {greatest}(value, ?) WHERE name = 'registry_schema_id'"
INSERT_SCHEMA = (
    "INSERT INTO registry_schemas (schema_id, fingerprint, schema_type, schema_text, created_at_ms)"
    " VALUES (?, ?, ?, ?, {now}) ON CONFLICT (fingerprint) DO NOTHING RETURNING schema_id"
)
INSERT_REFERENCE = (
    "INSERT INTO registry_references (schema_id, position, name, ref_subject, ref_version) VALUES (?, ?, ?, ?, ?)"
)
SCHEMA = "SELECT schema_type, schema_text FROM registry_schemas WHERE schema_id = ?"
REFERENCES = "SELECT name, ref_subject, ref_version FROM registry_references WHERE schema_id = ? ORDER BY position"
LIVE_WITH_SCHEMA = "SELECT version FROM registry_versions WHERE subject = ? AND schema_id = ? AND deleted = 0"
LATEST_LIVE = "SELECT MAX(version) FROM registry_versions WHERE subject = ? AND deleted = 0"
LATEST_ANY = "SELECT MAX(version) FROM registry_versions WHERE subject = ?"
INSERT_VERSION = (
    "INSERT INTO registry_versions (subject, version, schema_id, deleted, created_at_ms) VALUES (?, ?, ?, 0, {now})"
)
_VERSION_COLUMNS = "subject, version, schema_id, deleted"
VERSIONS = f"SELECT {_VERSION_COLUMNS} FROM registry_versions WHERE subject = ? AND deleted <= ? ORDER BY version"
SCHEMA_VERSIONS = (
    f"SELECT {_VERSION_COLUMNS} FROM registry_versions WHERE schema_id = ? AND deleted <= ? ORDER BY subject, version"
)
SUBJECTS = "SELECT DISTINCT subject FROM registry_versions WHERE deleted <= ? ORDER BY subject"
# Schemas referencing (subject, version) that some version still uses: live ones for a soft
# delete, any for a permanent one (a soft-deleted referrer can still be restored by lookups).
REFERRERS = (
    "SELECT DISTINCT r.schema_id FROM registry_references r"
    " WHERE r.ref_subject = ? AND r.ref_version = ?"
    " AND EXISTS (SELECT 1 FROM registry_versions v WHERE v.schema_id = r.schema_id AND v.deleted <= ?)"
    " ORDER BY r.schema_id"
)
SOFT_DELETE = "UPDATE registry_versions SET deleted = 1 WHERE subject = ? AND version IN ({versions})"
HARD_DELETE = "DELETE FROM registry_versions WHERE subject = ? AND version IN ({versions})"
SETTING = "SELECT value FROM registry_settings WHERE kind = ? AND subject = ?"
UPSERT_SETTING = (
    "INSERT INTO registry_settings (kind, subject, value) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, subject) DO UPDATE SET value = excluded.value"
)
DELETE_SETTING = "DELETE FROM registry_settings WHERE kind = ? AND subject = ?"


def check_import(schema: SchemaText, schema_id: int, id_of_text: int | None, text_at_id: str | None) -> None:
    """IMPORT keeps ids global: one id per schema text, one text per id (nothing is overwritten)."""
    if id_of_text is not None and id_of_text != schema_id:
        raise OperationNotPermittedError(f"the schema is already registered with id {id_of_text}, not {schema_id}")
    if text_at_id is not None and text_at_id != schema.fingerprint:
        raise OperationNotPermittedError(f"overwriting schema id {schema_id} with another schema is not permitted")


def check_import_version(subject: str, version: int, schema_id: int, held: int | None) -> None:
    if held is not None and held != schema_id:
        raise OperationNotPermittedError(
            f"version {version} of subject {subject!r} already holds schema id {held}, not {schema_id}"
        )


def reference_rows(schema_id: int, references: Sequence[Reference]) -> list[tuple[int, int, str, str, int]]:
    return [(schema_id, i, r.name, r.subject, r.version) for i, r in enumerate(references)]


def stored_schema(schema_id: int, row: Row, refs: Iterable[Row]) -> StoredSchema:
    references = tuple(Reference(str(r["name"]), str(r["ref_subject"]), int(r["ref_version"])) for r in refs)
    return StoredSchema(schema_id, SchemaText(str(row["schema_type"]), str(row["schema_text"]), references))


def subject_version(row: Row) -> SubjectVersion:
    return SubjectVersion(str(row["subject"]), int(row["version"]), int(row["schema_id"]), bool(row["deleted"]))
