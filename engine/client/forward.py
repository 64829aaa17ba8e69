"""The agent's Forwarder (engine/agent/forward.py) over the SDK's gRPC transport: held WAL
records produced to another agent's leader with acks=durable. Injected by whoever builds an
agent node (engine/server/agent_server.py, engine/client/embedded.py): the agent core stays
below the SDK and imports no network client."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from streamhouse.api.tls import ClientTls

_TIMEOUT_S = 30.0


async def forward_to_leader(
    address: str,
    topic: str,
    partition: int,
    batch: pa.RecordBatch,
    *,
    tls: ClientTls | None = None,
    api_key: str | None = None,
) -> int:
    """Produce `batch` (original keys, values, headers and timestamps) to the agent at
    `address` with acks=durable; raises the leader's error if it does not commit them.
    `tls`: the cluster's agents serve TLS (the agent server binds its peer settings here);
    `api_key`: they require keys (the agent's own, engine/auth/agent_key.py)."""
    # gRPC is loaded on first use: an embedded engine that never forwards does not pay for it.
    from streamhouse.client.remote import RemoteTransport

    def send() -> int:
        transport = RemoteTransport(
            [address], retries=False, timeout_s=_TIMEOUT_S, retry_for_s=_TIMEOUT_S, tls=tls or False, api_key=api_key
        )
        try:
            results = transport.produce(topic, partition, batch, "durable")
        finally:
            transport.close()
        return min(r.base_offset for r in results)

    # The gRPC client blocks: on a thread, so the agent's loop keeps serving meanwhile.
    return await asyncio.to_thread(send)
