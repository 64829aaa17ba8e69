"""ACL rules in the metadata store (issue 15, migration 0009): the row as a value and the SQL
both backends run (written with `?`; registry_sql.numbered gives PostgreSQL's `$n`).

A rule allows one operation on the resources of one type whose name matches, for one principal
of one org. The evaluation (which rule allows what, admin bypass, Kafka's implied describe) is
IO-free in engine/auth/acl.py; this layer only stores, lists and removes rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.rows import Row

OPERATIONS = ("read", "write", "create", "delete", "alter", "describe")
RESOURCE_TYPES = ("topic", "group", "job", "subject", "transactional_id")  # the last: migration 0013
PATTERNS = ("literal", "prefixed")  # Kafka's LITERAL / PREFIXED pattern types
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")  # org / principal (auth_sql's, wider)
_MAX_RESOURCE = 249  # Kafka's longest topic name; subjects and groups fit too


@dataclass(frozen=True)
class AclRule:
    """Allow `operation` on `resource_type` resources named `resource_name` (exactly, or as a
    prefix when `pattern` is 'prefixed'; the literal '*' is every name) to org/principal."""

    org: str
    principal: str
    resource_type: str
    pattern: str
    resource_name: str
    operation: str

    def __post_init__(self) -> None:
        for what, value in (("organisation", self.org), ("principal", self.principal)):
            if not _NAME_RE.match(value):
                raise InvalidInputError(f"ACL {what} {value!r} is not a valid name")
        _one_of("resource type", self.resource_type, RESOURCE_TYPES)
        _one_of("pattern type", self.pattern, PATTERNS)
        _one_of("operation", self.operation, OPERATIONS)
        if len(self.resource_name) > _MAX_RESOURCE or any(ord(c) < 32 for c in self.resource_name):
            name = self.resource_name[:64]
            raise InvalidInputError(f"ACL resource name {name!r} is too long or has control characters")
        if self.pattern == "literal" and not self.resource_name:
            raise InvalidInputError("a literal ACL needs a resource name ('*' for every name)")

    def key(self) -> tuple[str, str, str, str, str, str]:
        return (self.org, self.principal, self.resource_type, self.pattern, self.resource_name, self.operation)


def _one_of(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInputError(f"ACL {what} {value!r} is not one of {', '.join(allowed)}")


def acl_row(row: Row) -> AclRule:
    return AclRule(*(str(row[c]) for c in _COLUMNS.split(", ")))


_COLUMNS = "org, principal, resource_type, pattern, resource_name, operation"
_ORDER = " ORDER BY org, principal, resource_type, pattern, resource_name, operation"
INSERT = (
    f"INSERT INTO auth_acls ({_COLUMNS}, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, {{now}}) "
    "ON CONFLICT DO NOTHING RETURNING org"
)
DELETE = (
    "DELETE FROM auth_acls WHERE org = ? AND principal = ? AND resource_type = ? AND pattern = ? "
    "AND resource_name = ? AND operation = ? RETURNING org"
)
ALL = f"SELECT {_COLUMNS} FROM auth_acls" + _ORDER
OF_ORG = f"SELECT {_COLUMNS} FROM auth_acls WHERE org = ?" + _ORDER
OF_PRINCIPAL = f"SELECT {_COLUMNS} FROM auth_acls WHERE org = ? AND principal = ?" + _ORDER
