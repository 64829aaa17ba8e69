"""ACL rules in the metadata store (issue 15, migration 0009), over SQLite and PostgreSQL: add is
idempotent, remove removes exactly one rule, lists filter by org and principal, bad rules are
refused before any write, and snapshots carry the table."""

from __future__ import annotations

import pytest

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.acl_sql import AclRule


def rule(principal: str = "alice", name: str = "orders", *, op: str = "read", **kw: str) -> AclRule:
    return AclRule(kw.get("org", "acme"), principal, kw.get("type", "topic"), kw.get("pattern", "literal"), name, op)


async def test_add_list_remove(metadata_store: MetadataStore) -> None:
    store = metadata_store
    assert await store.acl_list() == []
    assert await store.acl_add(rule()) is True
    assert await store.acl_add(rule()) is False  # the same rule again: nothing new
    await store.acl_add(rule(name="logs.", pattern="prefixed", op="write"))
    await store.acl_add(rule("bob", "g1", type="group"))
    await store.acl_add(rule("bob", "etl-", type="transactional_id", pattern="prefixed", op="write"))  # 0013
    await store.acl_add(rule("carol", "*", org="beta", op="describe"))
    assert len(await store.acl_list()) == 5
    assert [r.principal for r in await store.acl_list("acme")] == ["alice", "alice", "bob", "bob"]
    alice = await store.acl_list("acme", "alice")
    assert {(r.pattern, r.resource_name, r.operation) for r in alice} == {
        ("literal", "orders", "read"),
        ("prefixed", "logs.", "write"),
    }
    assert await store.acl_remove(rule(op="write")) is False  # not this exact rule: nothing removed
    assert len(await store.acl_list("acme", "alice")) == 2
    assert await store.acl_remove(rule()) is True
    assert await store.acl_remove(rule()) is False
    assert [r.resource_name for r in await store.acl_list("acme", "alice")] == ["logs."]


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "cluster"},
        {"pattern": "match"},
        {"op": "all"},
        {"org": "no spaces"},
        {"name": ""},
        {"name": "x" * 300},
        {"name": "bad\nname"},
    ],
)
async def test_bad_rules_are_refused_before_any_write(metadata_store: MetadataStore, fields: dict[str, str]) -> None:
    fields = dict(fields)  # the parameter is shared by both backends' runs
    name = fields.pop("name", "orders")
    op = fields.pop("op", "read")
    with pytest.raises(InvalidInputError):
        rule("alice", name, op=op, **fields)
    assert await metadata_store.acl_list() == []


async def test_snapshot_carries_the_rules(metadata_store: MetadataStore) -> None:
    await metadata_store.acl_add(rule(name="pay.", pattern="prefixed"))
    dump = await metadata_store.export_tables()
    table = next(t for t in dump.tables if t.name == "auth_acls")
    assert len(table.rows) == 1 and "pay." in table.rows[0]
