"""Each partition of a topic as the metadata store and this agent see it: its lease holder
(the leader: the contract's partition_leaders, for Kafka's Metadata and NOT_LEADER
redirects) and, for DESCRIBE, its end offsets, log start, segment count and bytes and last
compaction. A lease past its expiry names no leader: the next produce takes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from streamhouse.agent.config import holder_agent_id, leader_address
from streamhouse.api.contract import Leadership
from streamhouse.api.types import PartitionState
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.log_start import PartitionStats
from streamhouse.storage.model import TopicInfo, partition_resource

# (topic, partition) -> one past the last acknowledged record (the leader's view when it is here)
EndOffset = Callable[[str, int], Awaitable[int]]


async def leaders(metadata: MetadataStore, info: TopicInfo) -> tuple[Leadership, ...]:
    now = await metadata.now_ms()
    out = []
    for p in range(info.partitions):
        lease = await metadata.get_lease(partition_resource(info.name, p))
        epoch = lease.epoch if lease is not None else 0
        if lease is None or lease.expires_at_ms <= now:
            out.append(Leadership(p, "", "", epoch))
        else:
            out.append(Leadership(p, holder_agent_id(lease.holder), leader_address(lease.holder), epoch))
    return tuple(out)


async def states(metadata: MetadataStore, info: TopicInfo, end_offset: EndOffset) -> tuple[PartitionState, ...]:
    """Per partition: leader, end offsets, and what the operations surface shows (log start,
    segments and their bytes, last compaction) from one read of the metadata."""
    name = info.name
    now = await metadata.now_ms()
    stats = {s.partition: s for s in await metadata.partition_stats(name)}
    out = []
    for p in range(info.partitions):
        lease = await metadata.get_lease(partition_resource(name, p))
        live = lease is not None and lease.expires_at_ms > now
        stat = stats.get(p) or PartitionStats(p, 0, 0, 0, 0, None)  # added after the read: empty
        out.append(
            PartitionState(
                partition=p,
                durable_end_offset=stat.durable_end,
                end_offset=await end_offset(name, p),
                leader=leader_address(lease.holder) if live and lease is not None else "",
                leader_epoch=lease.epoch if lease is not None else 0,
                segments=stat.segments,
                log_start=stat.log_start,
                size_bytes=stat.size_bytes,
                last_compacted_ms=stat.last_compacted_ms,
            )
        )
    return tuple(out)
