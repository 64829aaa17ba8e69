"""ACL evaluation and lookup (issue 15): the IO-free rules (engine/auth/acl.py: literal, '*',
prefixed, implied describe, admin bypass, deny by default), the cached lookup beside the
Authenticator on a real SQLite store (warm = no read; a change is seen past the 5 s TTL), the
front-end guard's deny-by-default and its open mode, an embedded engine (auth off) left open,
and `streamhouse auth acl add | list | remove`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.api.guarded import GuardedFrontEnd
from streamhouse.auth import Authenticator, Principal
from streamhouse.auth.acl import grants
from streamhouse.auth.authorizer import Authorizer
from streamhouse.cli.main import main
from streamhouse.storage import access
from streamhouse.storage.errors import AuthorizationError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.acl_sql import AclRule

BOB = Principal("acme", "bob", False, "shk_00000000000000b0")
ROOT = Principal("acme", "root", True, "shk_00000000000000r0")


def rule(rtype: str, pattern: str, name: str, op: str, who: str = "bob", org: str = "acme") -> AclRule:
    return AclRule(org, who, rtype, pattern, name, op)


RULES = [
    rule("topic", "literal", "orders", "read"),
    rule("topic", "prefixed", "logs.", "write"),
    rule("group", "literal", "*", "read"),
    rule("subject", "prefixed", "orders-", "alter"),
    rule("job", "literal", "daily", "delete"),
    rule("topic", "literal", "secret", "read", who="carol"),  # another principal's
    rule("topic", "literal", "other-org", "read", org="beta"),  # another org's bob
]

CASES = [
    # (operation, type, name, allowed)
    ("read", "topic", "orders", True),
    ("read", "topic", "orders2", False),  # literal: exactly the name
    ("write", "topic", "orders", False),  # read allows read only
    ("describe", "topic", "orders", True),  # read implies describe
    ("write", "topic", "logs.app", True),  # prefixed
    ("write", "topic", "logs", False),  # not the prefix itself
    ("describe", "topic", "logs.app", True),  # write implies describe
    ("read", "topic", "logs.app", False),
    ("read", "group", "any-group", True),  # literal '*'
    ("delete", "group", "any-group", False),
    ("alter", "subject", "orders-value", True),
    ("describe", "subject", "orders-value", True),  # alter implies describe
    ("create", "topic", "orders", False),  # nothing implies create
    ("delete", "job", "daily", True),
    ("describe", "job", "daily", True),
    ("read", "topic", "secret", False),  # carol's rule
    ("read", "topic", "other-org", False),  # beta's bob is not acme's bob
    ("read", "subject", "orders", False),  # the type matters
]


@pytest.mark.parametrize(("operation", "rtype", "name", "allowed"), CASES)
def test_rules(operation: str, rtype: str, name: str, allowed: bool) -> None:
    bob = grants(BOB, RULES)
    assert bob.allows(operation, rtype, name) is allowed
    if allowed:
        bob.require(operation, rtype, name)
    else:
        with pytest.raises(AuthorizationError) as denied:
            bob.require(operation, rtype, name)
        assert denied.value.resource_type == rtype and "acme/bob" in str(denied.value)
    assert grants(ROOT, []).allows(operation, rtype, name)  # admins bypass
    assert not grants(BOB, []).allows(operation, rtype, name)  # no rule: denied


class CountingStore:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.reads = 0

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[AclRule]:
        self.reads += 1
        return await self.store.acl_list(org, principal)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    store = await open_metadata_store(f"sqlite:///{tmp_path / 'm.db'}")
    yield store
    await store.close()


async def test_cached_lookup_sees_changes_after_the_ttl(store: MetadataStore) -> None:
    now = [100.0]
    counting = CountingStore(store)
    authorizer = Authorizer(counting, cache_ttl_s=5.0, monotonic=lambda: now[0])
    assert not (await authorizer.grants(BOB)).allows("read", "topic", "orders")
    await store.acl_add(rule("topic", "literal", "orders", "read"))
    now[0] += 4.9
    assert not (await authorizer.grants(BOB)).allows("read", "topic", "orders")  # warm: the old answer
    assert counting.reads == 1
    now[0] += 0.2
    assert (await authorizer.grants(BOB)).allows("read", "topic", "orders")  # past the TTL: read again
    assert counting.reads == 2
    await store.acl_remove(rule("topic", "literal", "orders", "read"))
    authorizer.forget("acme", "bob")  # the agent that made the change: at once
    assert not (await authorizer.grants(BOB)).allows("read", "topic", "orders")
    assert (await authorizer.grants(ROOT)).allows("delete", "topic", "anything")
    assert counting.reads == 3  # admins need no read


async def test_the_authenticator_enters_the_principals_acls(store: MetadataStore) -> None:
    from streamhouse.auth.admin import AuthAdmin

    await AuthAdmin(store).create_org("acme")
    token = (await AuthAdmin(store).create_key("acme", "bob")).token
    await store.acl_add(rule("topic", "prefixed", "bob.", "write"))
    auth = Authenticator(store)
    assert access.CURRENT.get() is None
    await auth.authenticate_header("grpc", f"Bearer {token}")
    current = access.CURRENT.get()
    assert current is not None and current.allows("write", "topic", "bob.x")
    assert not current.allows("write", "topic", "alice.x")


class Inner:
    """The operations the guard forwards to, recording which ran (a stand-in for the agent:
    the guard itself is what is tested, that nothing runs past a denial)."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def delete_topic(self, name: str) -> None:
        self.ran.append(name)

    async def list_groups(self) -> list[str]:
        return ["g-a", "g-b"]


async def test_guard_denies_by_default_and_runs_nothing_denied() -> None:
    inner = Inner()
    guarded = GuardedFrontEnd(inner, required=True)  # type: ignore[arg-type]
    with pytest.raises(AuthorizationError, match="no authorization"):
        await guarded.delete_topic("t")  # auth on, no authorization entered: refused
    token = access.CURRENT.set(
        grants(BOB, [rule("topic", "literal", "t", "delete"), rule("group", "literal", "g-b", "read")])
    )
    try:
        with pytest.raises(AuthorizationError):
            await guarded.delete_topic("u")
        await guarded.delete_topic("t")
        assert await guarded.list_groups() == ["g-b"]  # only what bob may describe
    finally:
        access.CURRENT.reset(token)
    assert inner.ran == ["t"]
    assert await GuardedFrontEnd(inner, required=False).list_groups() == ["g-a", "g-b"]  # type: ignore[arg-type]


def test_auth_off_is_open(tmp_path: Path) -> None:
    """Embedded (auth off): rules in the store that allow nothing change nothing."""
    with streamhouse.open(str(tmp_path / "data")) as sh:
        sh.create_topic("t", 1)
        sh.produce("t", [{"v": 1}])
        assert sh.sql("SELECT count(*) AS n FROM t").column("n").to_pylist() == [1]
        sh.delete_topic("t")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ("--metadata", f"sqlite:///{tmp_path / 'm.db'}")
    base = ("--org", "acme", "--principal", "bob", "--type", "topic", "--name", "logs.", "--prefixed")
    assert main(["auth", "acl", "add", *base, "--operation", "read", "--operation", "write", *where]) == 0
    out = capsys.readouterr().out
    assert "read on topic prefixed 'logs.': added" in out and "write on topic" in out
    assert main(["auth", "acl", "add", *base, "--operation", "read", *where]) == 0
    assert "already there" in capsys.readouterr().err
    assert main(["auth", "acl", "list", "--org", "acme", "--format", "json", *where]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one object a line
    assert sorted(r["operation"] for r in rows) == ["read", "write"] and rows[0]["pattern"] == "prefixed"
    assert main(["auth", "acl", "remove", *base, "--operation", "write", *where]) == 0
    assert main(["auth", "acl", "remove", *base, "--operation", "write", *where]) == 0
    assert "not found" in capsys.readouterr().err
    # checked before anything is written: one error line
    assert main(["auth", "acl", "add", *base[:-3], "--name", "", "--operation", "read", *where]) != 0
    assert "a literal ACL needs a resource name" in capsys.readouterr().err
    main(["auth", "acl", "list", "--format", "json", *where])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one object a line
    assert [r["operation"] for r in rows] == ["read"]
