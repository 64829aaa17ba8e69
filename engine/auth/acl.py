"""ACL evaluation (issue 15): what one principal's allow rules permit, IO-free.

Rules are rows of storage/metadata/acl_sql.py (migration 0009): allow `operation` on resources
of `resource_type` whose name equals `resource_name` ('*': every name) or, for a 'prefixed'
rule, starts with it. There are no deny rules: once auth is on, what no rule allows is
refused (deny by default), and a principal with the `admin` flag is allowed everything.

As in Kafka, read, write, delete and alter each imply describe (a producer that may write a
topic may see it in Metadata), and nothing else is implied.

`Grants` is the evaluated form a request carries (storage/access.py): literal names in a set,
prefixes in a tuple, so a check is a couple of set lookups plus a scan of the prefixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import AuthorizationError
from streamhouse.storage.metadata.acl_sql import AclRule

IMPLY_DESCRIBE = frozenset({"read", "write", "delete", "alter", "describe"})
WILDCARD = "*"  # Kafka's literal wildcard name


class Who(Protocol):
    """The principal a request speaks for (authenticator.Principal; kept structural so the
    Authenticator can own the ACL lookup without an import cycle)."""

    @property
    def org(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def admin(self) -> bool: ...


@dataclass(frozen=True)
class Grants:
    principal: Who
    literal: frozenset[tuple[str, str, str]]  # (resource_type, operation, name)
    prefixed: tuple[tuple[str, str, str], ...]  # (resource_type, operation, prefix)

    def allows(self, operation: str, resource_type: str, name: str) -> bool:
        if self.principal.admin:
            return True
        # Rules name resources as the principal's org does; a stored name of its own org
        # (`<org>~<name>`, storage/namespace.py: the registry's routes check those) is its name.
        name = ns.outer(name, self.principal.org) or name
        operations = IMPLY_DESCRIBE if operation == "describe" else (operation,)
        for op in operations:
            if (resource_type, op, name) in self.literal or (resource_type, op, WILDCARD) in self.literal:
                return True
            for rtype, rop, prefix in self.prefixed:
                if rtype == resource_type and rop == op and name.startswith(prefix):
                    return True
        return False

    def require(self, operation: str, resource_type: str, name: str) -> None:
        if not self.allows(operation, resource_type, name):
            who = f"{self.principal.org}/{self.principal.name}"
            name = ns.outer(name, self.principal.org) or name
            raise AuthorizationError(
                f"{who} may not {operation} {resource_type} {name!r}: no ACL allows it "
                "(an admin adds one with `streamhouse auth acl add`)",
                resource_type,
            )


def grants(principal: Who, rules: Iterable[AclRule]) -> Grants:
    """The principal's rules in evaluated form (rules of other principals are ignored)."""
    literal: set[tuple[str, str, str]] = set()
    prefixed: list[tuple[str, str, str]] = []
    for rule in rules:
        if (rule.org, rule.principal) != (principal.org, principal.name):
            continue
        entry = (rule.resource_type, rule.operation, rule.resource_name)
        if rule.pattern == "prefixed":
            prefixed.append(entry)
        else:
            literal.add(entry)
    return Grants(principal, frozenset(literal), tuple(prefixed))
