"""The schema registry's rows in the metadata store (issue 13), over SQLite and PostgreSQL: global
ids by fingerprint, versions past soft-deleted ones, the conflict check a register makes, deletes
refused while referenced (nothing changed), settings, and two registrations racing."""

from __future__ import annotations

import asyncio

import pytest

from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.schemas.errors import ReferenceExistsError, RegistryConflictError
from streamhouse.storage.schemas.registry import COMPATIBILITY, GLOBAL, MODE, Reference, SchemaText, SubjectVersion

A = SchemaText("AVRO", '{"type":"string"}')
B = SchemaText("AVRO", '{"type":"long"}')


async def test_ids_are_global_and_versions_count_on(metadata_store: MetadataStore) -> None:
    store = metadata_store
    first = await store.registry_register("a-value", A, None)
    assert first == SubjectVersion("a-value", 1, first.schema_id)
    # The same schema under another subject: the same id; again under the same subject: no new version.
    other = await store.registry_register("b-value", A, None)
    assert other.schema_id == first.schema_id and other.version == 1
    assert await store.registry_register("a-value", A, 1) == first
    second = await store.registry_register("a-value", B, 1)
    assert second.version == 2 and second.schema_id != first.schema_id
    assert await store.registry_schema_id(B) == second.schema_id
    assert await store.registry_schema_id(SchemaText("JSON", '{"type":"long"}')) is None
    stored = await store.registry_schema(first.schema_id)
    assert stored is not None and stored.schema == A
    assert await store.registry_schema(999_999) is None
    assert await store.registry_subjects() == ["a-value", "b-value"]
    assert [v.version for v in await store.registry_versions("a-value")] == [1, 2]
    assert [(v.subject, v.version) for v in await store.registry_schema_versions(first.schema_id)] == [
        ("a-value", 1),
        ("b-value", 1),
    ]


async def test_register_refuses_a_moved_subject_and_writes_nothing(metadata_store: MetadataStore) -> None:
    store = metadata_store
    await store.registry_register("s", A, None)
    with pytest.raises(RegistryConflictError):
        await store.registry_register("s", B, None)  # checked against "no version", but 1 exists
    assert [v.schema_id for v in await store.registry_versions("s")] == [(await store.registry_schema_id(A))]
    # The schema row itself may stay (ids are never reused), but no version points at it.
    b_id = await store.registry_schema_id(B)
    if b_id is not None:
        assert await store.registry_schema_versions(b_id) == []


async def test_soft_then_permanent_delete(metadata_store: MetadataStore) -> None:
    store = metadata_store
    v1 = await store.registry_register("s", A, None)
    v2 = await store.registry_register("s", B, 1)
    await store.registry_delete("s", [2], permanent=False)
    assert [v.version for v in await store.registry_versions("s")] == [1]
    assert [(v.version, v.deleted) for v in await store.registry_versions("s", include_deleted=True)] == [
        (1, False),
        (2, True),
    ]
    # A new version counts past the soft-deleted one; re-registering B gives a new version, same id.
    again = await store.registry_register("s", B, 1)
    assert again.version == 3 and again.schema_id == v2.schema_id
    await store.registry_delete("s", [1, 3], permanent=False)
    assert await store.registry_subjects() == []
    assert await store.registry_subjects(include_deleted=True) == ["s"]
    await store.registry_delete("s", [1, 2, 3], permanent=True)
    assert await store.registry_versions("s", include_deleted=True) == []
    # Schema rows stay: an id already written into records stays readable.
    assert await store.registry_schema(v1.schema_id) is not None
    assert (await store.registry_register("s", A, None)).version == 1


async def test_a_referenced_version_cannot_be_deleted(metadata_store: MetadataStore) -> None:
    store = metadata_store
    base = await store.registry_register("base", A, None)
    ref = SchemaText(
        "AVRO", '{"type":"record","name":"R","fields":[{"name":"x","type":"B"}]}', (Reference("B", "base", 1),)
    )
    user = await store.registry_register("user", ref, None)
    stored = await store.registry_schema(user.schema_id)
    assert stored is not None and stored.schema.references == (Reference("B", "base", 1),)
    assert await store.registry_referenced_by("base", 1) == [user.schema_id]
    with pytest.raises(ReferenceExistsError):
        await store.registry_delete("base", [1], permanent=False)
    assert [v.version for v in await store.registry_versions("base")] == [1]
    # Once the referrer is soft-deleted, a soft delete goes through; a permanent one waits for its rows to go.
    await store.registry_delete("user", [1], permanent=False)
    assert await store.registry_referenced_by("base", 1) == []
    await store.registry_delete("base", [1], permanent=False)
    with pytest.raises(ReferenceExistsError):
        await store.registry_delete("base", [1], permanent=True)
    await store.registry_delete("user", [1], permanent=True)
    await store.registry_delete("base", [1], permanent=True)
    assert await store.registry_schema(base.schema_id) is not None


async def test_settings(metadata_store: MetadataStore) -> None:
    store = metadata_store
    assert await store.registry_setting(COMPATIBILITY, GLOBAL) is None
    assert await store.registry_set_setting(COMPATIBILITY, GLOBAL, "FULL") is None
    assert await store.registry_set_setting(COMPATIBILITY, GLOBAL, "NONE") == "FULL"
    await store.registry_set_setting(COMPATIBILITY, "s", "FORWARD")
    await store.registry_set_setting(MODE, "s", "READONLY")
    assert await store.registry_setting(COMPATIBILITY, "s") == "FORWARD"
    assert await store.registry_setting(MODE, "s") == "READONLY"
    assert await store.registry_setting(COMPATIBILITY, GLOBAL) == "NONE"
    assert await store.registry_set_setting(COMPATIBILITY, "s", None) == "FORWARD"
    assert await store.registry_setting(COMPATIBILITY, "s") is None


async def test_racing_registrations_agree(metadata_store: MetadataStore) -> None:
    """Ten registrations of one new schema under ten subjects at once: one id. Ten different
    schemas checked against the same latest version of one subject: exactly one wins."""
    store = metadata_store
    s = SchemaText("AVRO", '{"type":"int"}')
    ids = await asyncio.gather(*(store.registry_register(f"r{i}", s, None) for i in range(10)))
    assert len({v.schema_id for v in ids}) == 1
    results = await asyncio.gather(
        *(store.registry_register("one", SchemaText("AVRO", f'"x{i}"'), None) for i in range(10)),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, SubjectVersion)]
    assert len(wins) == 1 and all(isinstance(r, RegistryConflictError) for r in results if r not in wins)
    assert [v.version for v in await store.registry_versions("one")] == [1]
