"""Handing WAL records to another agent's leader: what an agent does with acknowledged records
of a leadership that was taken over while the partition's new leader is alive (so its lease
will not be free). The records are produced there with acks=durable, the normal path: the
leader assigns offsets at the partition's end and commits them before answering. The batch
keeps its Arrow schema metadata, hence an idempotent producer's tag (docs/DESIGN.md §10): the
leader deduplicates a batch the client already retried there.

The agent core only names the hook. Reaching another agent is the SDK's remote transport
(engine/client/forward.py), which sits above the agent: whoever composes an agent node (the
agent server, the embedded engine) passes it in (engine/node/), so the agent imports no client
or RPC code (docs/DESIGN.md §1, the layers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pyarrow as pa

from streamhouse.storage.errors import StreamHouseError

# (leader address, topic, partition, records) -> base offset the leader committed them at.
Forwarder = Callable[[str, str, int, pa.RecordBatch], Awaitable[int]]


async def cannot_forward(address: str, topic: str, partition: int, batch: pa.RecordBatch) -> int:
    """The hook of a partition manager started without one (its own tests): the records stay
    in the WAL and the take-over retries them, as when the leader is unreachable."""
    raise StreamHouseError(
        f"{topic}/{partition}: cannot hand {batch.num_rows} WAL records to the leader at {address}: "
        "this agent was started without a forwarder"
    )
