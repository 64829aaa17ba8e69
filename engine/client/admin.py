"""The SDK's admin surface for organisations and API keys (issue 15): `client.auth`.

In embedded mode the process holding the files is the admin (engine/auth LOCAL) and these run on
the engine's own metadata store. A remote client sends the admin SQL statements
(sql/statements/admin.py: CREATE ORG, CREATE API KEY, SHOW API KEYS, REVOKE API KEY) through
`sql`, so the agent checks the caller's admin flag (PERMISSION_DENIED otherwise) and nothing new
is needed on the wire; the results are read back into the same values the embedded path returns.
A remote CreatedKey's row has an empty `secret_hash`: the agent never sends the hash.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from streamhouse.auth.admin import AuthAdmin, CreatedKey, KeyInfo
from streamhouse.storage.metadata.auth_sql import ApiKeyRow, Organisation

T = TypeVar("T")


class _AdminRunner(Protocol):
    def run_admin(self, work: Callable[[AuthAdmin], Coroutine[Any, Any, T]]) -> T: ...


class _SqlRunner(Protocol):
    def sql(self, query: str) -> pa.Table: ...


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class KeysAdmin:
    def __init__(self, transport: object) -> None:
        self._transport = transport
        self._local = getattr(transport, "run_admin", None) is not None

    def _run(self, work: Callable[[AuthAdmin], Coroutine[Any, Any, T]]) -> T:
        runner: _AdminRunner = self._transport  # type: ignore[assignment]
        return runner.run_admin(work)

    def _sql(self, statement: str) -> list[dict[str, Any]]:
        runner: _SqlRunner = self._transport  # type: ignore[assignment]
        rows: list[dict[str, Any]] = runner.sql(statement).to_pylist()
        return rows

    def create_org(self, name: str) -> Organisation:
        if self._local:
            return self._run(lambda admin: admin.create_org(name))
        row = self._sql(f"CREATE ORG {_quote(name)}")[0]
        return Organisation(row["org"], row["created_at_ms"])

    def orgs(self) -> list[Organisation]:
        if self._local:
            return self._run(lambda admin: admin.orgs())
        return [Organisation(row["org"], row["created_at_ms"]) for row in self._sql("SHOW ORGS")]

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
        if self._local:
            return self._run(
                lambda a: a.create_key(org, principal, admin=admin, expires_in_ms=expires_ms, description=description)
            )
        statement = f"CREATE API KEY FOR PRINCIPAL {_quote(principal)} IN ORG {_quote(org)}"
        if admin:
            statement += " ADMIN"
        if expires_ms is not None:
            statement += f" EXPIRES IN '{max(expires_ms, 1)}ms'"
        if description:
            statement += f" COMMENT {_quote(description)}"
        row = self._sql(statement)[0]
        key = ApiKeyRow(
            row["key_id"],
            row["org"],
            row["principal"],
            row["admin"],
            "",  # the hash stays on the agent
            row["description"],
            row["created_at_ms"],
            row["expires_at_ms"],
            None,
        )
        return CreatedKey(key, row["token"])

    def keys(self, org: str | None = None) -> list[KeyInfo]:
        if self._local:
            return self._run(lambda admin: admin.keys(org))
        where = "" if org is None else f" IN ORG {_quote(org)}"
        return [KeyInfo(**row) for row in self._sql("SHOW API KEYS" + where)]

    def revoke(self, key_id: str) -> KeyInfo:
        if self._local:
            return self._run(lambda admin: admin.revoke(key_id))
        return KeyInfo(**self._sql(f"REVOKE API KEY {_quote(key_id.split('.', 1)[0])}")[0])
