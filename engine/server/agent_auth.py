"""The authentication parts of one agent process (issue 15), wired by agent_server.py in a few
lines: built before the agent's stores exist (the gRPC server takes its interceptor at
construction), bound once the node has opened its metadata store, closed when it stops.

With `auth = "api-key"`: one Authenticator (engine/auth/) behind the gRPC interceptor, the HTTP
guard and, later, Kafka SASL; and the agent's own key (engine/auth/agent_key.py) on the calls it
makes to other agents. With `auth = "none"` every part is absent and nothing changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow as pa
from grpc import aio
from prometheus_client import CollectorRegistry

from streamhouse.agent.config import AgentConfig
from streamhouse.auth import Authenticator
from streamhouse.auth.agent_key import AgentCredential
from streamhouse.auth.exposure import AUTH_MODES
from streamhouse.server.grpc.auth import AuthInterceptor
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.base import MetadataStore

Forward = Callable[..., Awaitable[int]]


class AgentAuth:
    def __init__(self, config: AgentConfig) -> None:
        if config.auth not in AUTH_MODES:
            raise InvalidInputError(f"auth must be one of {', '.join(AUTH_MODES)}, not {config.auth!r}")
        on = config.auth == "api-key"
        self.authenticator: Authenticator | None = Authenticator(None) if on else None
        self._credential: AgentCredential | None = AgentCredential() if on else None

    def interceptors(self) -> list[aio.ServerInterceptor]:
        return [] if self.authenticator is None else [AuthInterceptor(self.authenticator)]

    def forward(self, forward: Forward) -> Forward:
        """`forward` (engine/client/forward.py) sending this agent's own key."""
        credential = self._credential
        if credential is None:
            return forward

        async def with_key(address: str, topic: str, partition: int, batch: pa.RecordBatch, **kw: Any) -> int:
            return await forward(address, topic, partition, batch, api_key=await credential.token(), **kw)

        return with_key

    async def bind(self, store: MetadataStore, registry: CollectorRegistry, agent_id: str) -> None:
        if self.authenticator is not None:
            self.authenticator.bind(store, registry)
        if self._credential is not None:
            await self._credential.open(store, agent_id)

    async def close(self) -> None:
        if self._credential is not None:
            await self._credential.close()
