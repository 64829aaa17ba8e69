"""The agent's own API key, for the calls agents make to each other when authentication is on
(held WAL records handed to a partition's new leader, engine/client/forward.py).

No secret is configured or shared: each agent makes a key for itself at start, in the metadata
store every agent reads (org AGENTS_ORG, principal = its agent id, admin), keeps the only copy of
the secret in memory, and revokes it when it stops. Other agents verify it like any key. It
lives KEY_LIFE_MS and is replaced after half of that, so an agent killed without stopping leaves
a key that stops working on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

from streamhouse.auth.admin import AuthAdmin, CreatedKey
from streamhouse.storage.errors import OrganisationExistsError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore

AGENTS_ORG = "streamhouse-agents"
KEY_LIFE_MS = 24 * 3600 * 1000
_BAD = re.compile(r"[^A-Za-z0-9._@-]")


class AgentCredential:
    def __init__(self) -> None:
        self._admin: AuthAdmin | None = None
        self._principal = ""
        self._key: CreatedKey | None = None
        self._made_at = 0.0
        self._lock = asyncio.Lock()

    async def open(self, store: MetadataStore, agent_id: str) -> None:
        self._admin = AuthAdmin(store)
        self._principal = (_BAD.sub("-", agent_id) or "agent")[:128]
        with contextlib.suppress(OrganisationExistsError):
            await self._admin.create_org(AGENTS_ORG)
        await self.token()

    async def token(self) -> str:
        """The current `<key_id>.<secret>`, a new key once the old one is half way to expiry."""
        async with self._lock:
            if self._admin is None:
                raise StreamHouseError("the agent's credential is used before the agent started")
            if self._key is None or (time.monotonic() - self._made_at) * 1000 > KEY_LIFE_MS / 2:
                old = self._key
                self._key = await self._admin.create_key(
                    AGENTS_ORG,
                    self._principal,
                    admin=True,
                    expires_in_ms=KEY_LIFE_MS,
                    description="the agent's own key for calls to other agents",
                )
                self._made_at = time.monotonic()
                if old is not None:
                    await self._admin.revoke(old.key.key_id)
            return self._key.token

    async def close(self) -> None:
        """Revoke the key (best effort: a store that is down leaves it to expire)."""
        if self._admin is not None and self._key is not None:
            with contextlib.suppress(StreamHouseError):
                await self._admin.revoke(self._key.key.key_id)
            self._key = None
