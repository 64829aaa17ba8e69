"""The cached ACL lookup beside the Authenticator (issue 15): a principal's rules, read from
the metadata store and evaluated (acl.py), for every request of every front end.

Cache: the same idea and the same TTL as the Authenticator's keys (CACHE_TTL_S, 5 s). A
principal's evaluated rules stay in memory for the TTL, so a warm request costs a dict lookup;
after it the next request reads the principal's rows again (one indexed query). A rule added
or removed therefore takes effect on every agent within CACHE_TTL_S; `forget` drops a
principal at once on the agent that made the change. Admins skip the store altogether.

`enter` puts the result where the rest of the request finds it (storage/access.py CURRENT).
The Authenticator owns one (`Authenticator.acls`, same store, TTL and clock) and enters it
after accepting a gRPC or HTTP credential (authenticate_header); the Kafka listener calls
it before each request of a logged-in connection (so a long connection sees new rules too).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from streamhouse.auth.acl import Grants, Who, grants
from streamhouse.storage import access, namespace
from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata.acl_sql import AclRule

CACHE_TTL_S = 5.0  # the Authenticator passes its own TTL (the same 5 s by default)
_MAX_CACHED = 10_000  # principals; the least recently read goes first past it


class AclLookup(Protocol):
    """What the authorizer needs of the metadata store (MetadataStore has it)."""

    async def acl_list(self, org: str | None = None, principal: str | None = None) -> list[AclRule]: ...


class Authorizer:
    def __init__(
        self,
        store: AclLookup | None,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.cache_ttl_s = cache_ttl_s
        self._monotonic = monotonic
        self._cache: OrderedDict[tuple[str, str], tuple[Grants, float]] = OrderedDict()

    def bind(self, store: AclLookup) -> None:
        self._store = store

    async def grants(self, principal: Who) -> Grants:
        if principal.admin:
            return Grants(principal, frozenset(), ())  # allows everything by the flag
        key = (principal.org, principal.name)
        now = self._monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[1] < self.cache_ttl_s:
            return cached[0]
        if self._store is None:
            raise StorageUnavailableError("the agent is starting: it cannot read ACLs yet")
        evaluated = grants(principal, await self._store.acl_list(principal.org, principal.name))
        self._cache[key] = (evaluated, now)
        self._cache.move_to_end(key)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)
        return evaluated

    async def enter(self, principal: Who) -> Grants:
        """The principal's grants, set as the current request's authorization."""
        evaluated = await self.grants(principal)
        access.CURRENT.set(evaluated)
        namespace.CURRENT_ORG.set(namespace.namespace_of(principal.org, admin=principal.admin))  # the org's names only
        return evaluated

    def forget(self, org: str, principal: str) -> None:
        self._cache.pop((org, principal), None)
