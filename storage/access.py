"""The authorization of the request being served (issue 15, ACLs), where every layer can ask it.

The front ends authenticate a request, look up its principal's ACL rules (engine/auth/
authorizer.py, cached) and leave the evaluated rules here, in a context variable that follows
the request's task. Everything the request reaches then asks the same object with no IO: the
front-end contract's guard (engine/api/guarded.py) for topics, records, groups and jobs, the
SQL engine (sql/engine.py, sql/query/catalog.py) for the topics a statement names, the schema
registry's routes for subjects. It lives at the bottom (storage) because sql/ may not import
the engine; the rules themselves are engine/auth/acl.py.

Nothing set (auth off, embedded mode, an agent's own background work such as jobs) means
everything is allowed, as before ACLs. With auth on, the guard refuses a request that reached
it without an authorization (deny by default), so a forgotten front end fails closed.
"""

from __future__ import annotations

import contextvars
from typing import Protocol


class Access(Protocol):
    """What a principal may do: `allows` answers, `require` raises AuthorizationError."""

    def allows(self, operation: str, resource_type: str, name: str) -> bool: ...

    def require(self, operation: str, resource_type: str, name: str) -> None: ...


CURRENT: contextvars.ContextVar[Access | None] = contextvars.ContextVar("streamhouse_access", default=None)


def require(operation: str, resource_type: str, name: str) -> None:
    """AuthorizationError unless the current request may (no request authorization: allowed)."""
    access = CURRENT.get()
    if access is not None:
        access.require(operation, resource_type, name)


def allows(operation: str, resource_type: str, name: str) -> bool:
    access = CURRENT.get()
    return access is None or access.allows(operation, resource_type, name)
