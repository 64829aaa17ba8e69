"""Kafka's ACL admin APIs (DescribeAcls 29, CreateAcls 30, DeleteAcls 31; schemas in
protocol/messages_acl.py) on our ACL rules (engine/auth/acl.py, storage/metadata/acl_sql.py),
so kafka-acls.sh and the Admin clients' create_acls / describe_acls / delete_acls manage them.

The mapping. Kafka's resource types TOPIC and GROUP are ours; patterns LITERAL and PREFIXED
are ours ('*' literal is every name, as in Kafka); operations READ, WRITE, CREATE, DELETE,
ALTER, DESCRIBE are ours and ALL is the six of them (stored, and then described, as six
rules). Everything else is refused per ACL with INVALID_REQUEST and a message saying what:
other resource types (CLUSTER, TRANSACTIONAL_ID, USER, …), other operations
(DESCRIBE_CONFIGS, IDEMPOTENT_WRITE, …), DENY (our rules only allow), and hosts other than
'*' (rules are per principal, not per address). Our job and subject rules have no Kafka
resource type, so these APIs neither show nor delete them (SHOW ACLS does).

Principals are `User:<name>` of the caller's own organisation: an admin key of org acme
manages acme's rules. Only a principal with the admin flag may call these (Kafka asks for
ALTER / DESCRIBE on the CLUSTER): others get CLUSTER_AUTHORIZATION_FAILED and nothing is
read or changed. Without SASL (auth off) there is no authorizer, and, as Kafka without one,
the answer is SECURITY_DISABLED. A change is seen at once on this agent (its ACL cache
forgets the principal) and within the cache TTL (5 s) on the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from streamhouse.auth.acl import Who
from streamhouse.kafka import errors as codes
from streamhouse.kafka.handlers import Body, Context
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata.acl_sql import OPERATIONS, AclRule

CLUSTER_AUTHORIZATION_FAILED = 31
SECURITY_DISABLED = 54
ANY, MATCH, LITERAL, PREFIXED = 1, 2, 3, 4  # pattern types (ANY = 1 is also the resource type and op)
ALL, ALLOW, DENY = 2, 3, 2  # operation ALL; permission types
RESOURCE_TYPES = {2: "topic", 3: "group", 5: "transactional_id"}
PATTERNS = {LITERAL: "literal", PREFIXED: "prefixed"}
OPERATION_CODES = {3: "read", 4: "write", 5: "create", 6: "delete", 7: "alter", 8: "describe"}
_CODE_OF = {v: k for d in (RESOURCE_TYPES, PATTERNS, OPERATION_CODES) for k, v in d.items()}
_USER = "User:"


class AclStore(Protocol):
    async def acl_add(self, rule: AclRule) -> bool: ...

    async def acl_remove(self, rule: AclRule) -> bool: ...

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[AclRule]: ...


class Forgetting(Protocol):
    def forget(self, org: str, principal: str) -> None: ...


class BadAcl(Exception):
    """One ACL or filter we cannot map: answered INVALID_REQUEST with this message."""


@dataclass(frozen=True)
class Filter:
    types: frozenset[str]
    name: str | None
    pattern: int  # ANY, MATCH, LITERAL, PREFIXED
    principal: str | None
    operations: frozenset[str]

    def matches(self, rule: AclRule) -> bool:
        if rule.resource_type not in self.types or rule.operation not in self.operations:
            return False
        if self.principal is not None and rule.principal != self.principal:
            return False
        if self.pattern == MATCH:  # the rules that apply to the resource `name`
            if self.name is None:
                return True
            if rule.pattern == "prefixed":
                return self.name.startswith(rule.resource_name)
            return rule.resource_name in (self.name, "*")
        if self.pattern != ANY and rule.pattern != PATTERNS[self.pattern]:
            return False
        return self.name is None or rule.resource_name == self.name


def _principal(text: str | None, what: str) -> str:
    if text is None or not text.startswith(_USER) or len(text) == len(_USER):
        raise BadAcl(f"{what} {text!r} is not User:<name> (principals are users of the caller's organisation)")
    return text[len(_USER) :]


def _operations(code: int, *, filtering: bool) -> frozenset[str]:
    if code == ALL or (filtering and code == ANY):
        return frozenset(OPERATIONS)
    if code in OPERATION_CODES:
        return frozenset({OPERATION_CODES[code]})
    raise BadAcl(f"operation {code} has no StreamHouse equivalent (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, ALL)")


def _host(host: str | None, *, filtering: bool) -> None:
    if host != "*" and not (filtering and host is None):
        raise BadAcl(f"host {host!r}: StreamHouse rules are per principal, for every host ('*')")


def rules_of(creation: Body, org: str) -> list[AclRule]:
    """The rules one CreateAcls entry stands for (ALL: six), or BadAcl."""
    if creation["resource_type"] not in RESOURCE_TYPES:
        raise BadAcl(f"resource type {creation['resource_type']} is not mapped (TOPIC, GROUP and TRANSACTIONAL_ID are)")
    if creation["resource_pattern_type"] not in PATTERNS:
        raise BadAcl(f"pattern type {creation['resource_pattern_type']} is not LITERAL or PREFIXED")
    if creation["permission_type"] != ALLOW:
        raise BadAcl("only ALLOW rules exist in StreamHouse (what no rule allows is denied)")
    _host(creation["host"], filtering=False)
    principal = _principal(creation["principal"], "principal")
    rtype, pattern = RESOURCE_TYPES[creation["resource_type"]], PATTERNS[creation["resource_pattern_type"]]
    try:
        return [
            AclRule(org, principal, rtype, pattern, creation["resource_name"], op)
            for op in sorted(_operations(creation["operation"], filtering=False))
        ]
    except StreamHouseError as exc:  # a bad name (AclRule checks it)
        raise BadAcl(str(exc)) from exc


def filter_of(body: Body) -> Filter:
    rtype = body["resource_type_filter"]
    if rtype == ANY:
        types = frozenset(RESOURCE_TYPES.values())
    elif rtype in RESOURCE_TYPES:
        types = frozenset({RESOURCE_TYPES[rtype]})
    elif rtype > ANY:
        types = frozenset()  # a Kafka type we have no rules of: matches nothing
    else:
        raise BadAcl(f"resource type filter {rtype} is not valid")
    if body["pattern_type_filter"] not in (ANY, MATCH, LITERAL, PREFIXED):
        raise BadAcl(f"pattern type filter {body['pattern_type_filter']} is not valid")
    if body["permission_type"] not in (ANY, ALLOW, DENY):
        raise BadAcl(f"permission type filter {body['permission_type']} is not valid")
    _host(body["host_filter"], filtering=True)
    operations = _operations(body["operation"], filtering=True)
    if body["permission_type"] == DENY:
        operations = frozenset()  # there are no deny rules
    principal = None if body["principal_filter"] is None else _principal(body["principal_filter"], "principal filter")
    return Filter(types, body["resource_name_filter"], body["pattern_type_filter"], principal, operations)


def binding(rule: AclRule) -> Body:
    return {"resource_type": _CODE_OF[rule.resource_type], "resource_name": rule.resource_name,
            "pattern_type": _CODE_OF[rule.pattern], "principal": _USER + rule.principal, "host": "*",
            "operation": _CODE_OF[rule.operation], "permission_type": ALLOW}  # fmt: skip


class AclHandlers:
    def __init__(self, store: AclStore, cache: Forgetting | None = None) -> None:
        self.store = store
        self.cache = cache
        self.by_key: dict[int, Any] = {29: self.describe_acls, 30: self.create_acls, 31: self.delete_acls}

    @staticmethod
    def _refusal(who: Who | None) -> tuple[int, str] | None:
        if who is None:
            return SECURITY_DISABLED, "no authorizer: the listener runs without SASL"
        if not who.admin:
            return CLUSTER_AUTHORIZATION_FAILED, f"{who.org}/{who.name} may not manage ACLs: no admin flag"
        return None

    async def _rules(self, org: str, wanted: Filter) -> list[AclRule]:
        return [r for r in await self.store.acl_list(org) if wanted.matches(r)]

    def _forget(self, org: str, rules: Iterable[AclRule]) -> None:
        if self.cache is not None:
            for principal in {r.principal for r in rules}:
                self.cache.forget(org, principal)

    async def describe_acls(self, body: Body, version: int, ctx: Context) -> Body:
        out: Body = {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "resources": []}
        refused = self._refusal(ctx.principal)
        if refused is not None:
            return dict(out, error_code=refused[0], error_message=refused[1])
        assert ctx.principal is not None
        try:
            rules = await self._rules(ctx.principal.org, filter_of(body))
        except BadAcl as exc:
            return dict(out, error_code=codes.INVALID_REQUEST, error_message=str(exc))
        resources: dict[tuple[str, str, str], list[Body]] = {}
        for rule in rules:
            one = binding(rule)
            acl = {k: one[k] for k in ("principal", "host", "operation", "permission_type")}
            resources.setdefault((rule.resource_type, rule.resource_name, rule.pattern), []).append(acl)
        out["resources"] = [
            {"resource_type": _CODE_OF[t], "resource_name": n, "pattern_type": _CODE_OF[p], "acls": acls}
            for (t, n, p), acls in resources.items()
        ]
        return out

    async def create_acls(self, body: Body, version: int, ctx: Context) -> Body:
        refused = self._refusal(ctx.principal)
        if refused is not None:
            results = [{"error_code": refused[0], "error_message": refused[1]} for _ in body["creations"]]
            return {"throttle_time_ms": 0, "results": results}
        assert ctx.principal is not None
        org, results = ctx.principal.org, []
        for creation in body["creations"]:
            try:
                rules = rules_of(creation, org)  # all checked before the first is stored
                for rule in rules:
                    await self.store.acl_add(rule)
                self._forget(org, rules)
                results.append({"error_code": 0, "error_message": None})
            except BadAcl as exc:
                results.append({"error_code": codes.INVALID_REQUEST, "error_message": str(exc)})
        return {"throttle_time_ms": 0, "results": results}

    async def delete_acls(self, body: Body, version: int, ctx: Context) -> Body:
        refused = self._refusal(ctx.principal)
        if refused is not None:
            results = [{"error_code": refused[0], "error_message": refused[1], "matching_acls": []}
                       for _ in body["filters"]]  # fmt: skip
            return {"throttle_time_ms": 0, "filter_results": results}
        assert ctx.principal is not None
        org, results = ctx.principal.org, []
        for wanted in body["filters"]:
            try:
                rules = await self._rules(org, filter_of(wanted))
            except BadAcl as exc:
                results.append({"error_code": codes.INVALID_REQUEST, "error_message": str(exc), "matching_acls": []})
                continue
            matching = []
            for rule in rules:
                removed = await self.store.acl_remove(rule)
                matching.append({"error_code": 0, "error_message": None, **binding(rule)} if removed else None)
            self._forget(org, rules)
            results.append({"error_code": 0, "error_message": None, "matching_acls": [m for m in matching if m]})
        return {"throttle_time_ms": 0, "filter_results": results}
