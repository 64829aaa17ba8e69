"""The SDK's admin surface for organisations and API keys (issue 15): `client.auth`.

In embedded mode the process holding the files is the admin (engine/auth LOCAL) and these run on
the engine's own metadata store. Over gRPC they are not served yet: an agent has no RPC for them
in this slice, so a remote client gets a clear error naming the way that works (`streamhouse
auth …` against the metadata store); the principal's `admin` flag is stored for the slice that
adds those RPCs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from streamhouse.auth.admin import AuthAdmin, CreatedKey, KeyInfo
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.auth_sql import Organisation

T = TypeVar("T")


class _AdminRunner(Protocol):
    def run_admin(self, work: Callable[[AuthAdmin], Coroutine[Any, Any, T]]) -> T: ...


class KeysAdmin:
    def __init__(self, transport: object) -> None:
        self._transport = transport

    def _run(self, work: Callable[[AuthAdmin], Coroutine[Any, Any, T]]) -> T:
        run = getattr(self._transport, "run_admin", None)
        if run is None:
            raise InvalidInputError(
                "managing organisations and API keys is not served over gRPC yet: use `streamhouse auth … "
                "--metadata URL` on the metadata store, or an embedded client (streamhouse.open)"
            )
        result: T = run(work)
        return result

    def create_org(self, name: str) -> Organisation:
        return self._run(lambda admin: admin.create_org(name))

    def orgs(self) -> list[Organisation]:
        return self._run(lambda admin: admin.orgs())

    def create_key(
        self,
        org: str,
        principal: str,
        *,
        admin: bool = False,
        expires_in_s: float | None = None,
        description: str = "",
    ) -> CreatedKey:
        """A new key; its `.token` (`<key_id>.<secret>`) is the only copy of the secret."""
        expires_ms = None if expires_in_s is None else int(expires_in_s * 1000)
        return self._run(
            lambda a: a.create_key(org, principal, admin=admin, expires_in_ms=expires_ms, description=description)
        )

    def keys(self, org: str | None = None) -> list[KeyInfo]:
        return self._run(lambda admin: admin.keys(org))

    def revoke(self, key_id: str) -> KeyInfo:
        return self._run(lambda admin: admin.revoke(key_id))
