"""Handing WAL records to another agent's leader: what an agent does with acknowledged records
of a leadership that was taken over while the partition's new leader is alive (so its lease
will not be free). The records are produced there with acks=durable, the normal path: the
leader assigns offsets at the partition's end and commits them before answering."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pyarrow as pa

# (leader address, topic, partition, records) -> base offset the leader committed them at.
Forwarder = Callable[[str, str, int, pa.RecordBatch], Awaitable[int]]

_TIMEOUT_S = 30.0


async def forward_to_leader(address: str, topic: str, partition: int, batch: pa.RecordBatch) -> int:
    """Produce `batch` (original keys, values, headers and timestamps) to the agent at
    `address` with acks=durable; raises the leader's error if it does not commit them."""
    # The gRPC client is blocking and lives in the client package: imported here, on first
    # use, so the agent core keeps no import-time dependency on it.
    from streamhouse.client.remote import RemoteTransport

    def send() -> int:
        transport = RemoteTransport([address], retries=False, timeout_s=_TIMEOUT_S, retry_for_s=_TIMEOUT_S)
        try:
            results = transport.produce(topic, partition, batch, "durable")
        finally:
            transport.close()
        return min(r.base_offset for r in results)

    return await asyncio.to_thread(send)
