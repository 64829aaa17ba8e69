"""Fetch with long-poll: records from an offset up to the durable end (the high watermark),
waiting up to `max_wait_ms` for `min_bytes` of them. A waiter is woken by an append to the
partition (this agent leads it) or by a committed segment; a follower re-checks the metadata
store every 100 ms, the only way it learns of new segments."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from streamhouse.agent.partitions import PartitionManager
from streamhouse.api.types import FetchResult
from streamhouse.storage.errors import InvalidInputError, PartitionNotFoundError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.storage.tasks import wait_event

if TYPE_CHECKING:  # prometheus_client stays out of the embedded engine's import
    from streamhouse.agent.metrics import AgentMetrics

# A follower learns about new committed segments only from metadata: it re-checks this often.
_FOLLOWER_POLL_S = 0.1


class Fetcher:
    def __init__(
        self,
        manager: PartitionManager,
        topic: Callable[[str, int], Awaitable[TopicInfo]],
        metrics: AgentMetrics | None,
    ) -> None:
        self.manager, self.topic, self.metrics = manager, topic, metrics
        # One event per partition, replaced on every append: a waiter holds the event current
        # when it looked, so no append between its check and its wait is missed.
        self._appended: dict[tuple[str, int], asyncio.Event] = {}

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 50_000,
        max_bytes: int = 16 << 20,
        max_wait_ms: int = 0,
        min_bytes: int = 1,
    ) -> FetchResult:
        """Records from `offset`, up to the durable end (the high watermark: what no takeover
        can change); waits up to max_wait_ms for at least min_bytes of them. A fetch that
        stops short at the durable end while this leader holds acknowledged records past it
        starts a durable round (PartitionManager.make_durable) and, if it may wait, is
        answered when that round commits. `end_offset` of the answer is the acknowledged end
        (a bounded read knows what is still to come), `high_watermark` the durable end."""
        info = await self.topic(topic, partition)
        if not 0 <= partition < info.partitions:
            raise PartitionNotFoundError(topic, partition, info.partitions)
        if offset < 0:
            raise InvalidInputError(f"{topic}/{partition}: offset must be >= 0, not {offset}")
        max_records = max_records if max_records > 0 else 50_000
        max_bytes = max_bytes if max_bytes > 0 else 16 << 20
        deadline = time.monotonic() + max(max_wait_ms, 0) / 1000
        while True:
            event = self._appended.setdefault((topic, partition), asyncio.Event())
            durable, end = await self.manager.end_offsets(topic, partition)
            if offset > end:
                raise InvalidInputError(f"{topic}/{partition}: offset {offset} is past the end offset {end}")
            table = await self._read(topic, partition, offset, min(max_records, durable - offset), max_bytes)
            reached = int(table.column("offset")[-1].as_py()) + 1 if table.num_rows else offset
            if end > durable and (reached >= durable or table.nbytes < max(min_bytes, 1)):
                # Stopped at the durable end: the round starts now (a waiting fetch is woken by
                # its commit, AgentService._committed), the next fetch finds the records committed.
                self.manager.make_durable(topic, partition)
            remaining = deadline - time.monotonic()
            if table.nbytes >= max(min_bytes, 1) or remaining <= 0:
                break
            wait = remaining if self.manager.leading(topic, partition) else min(remaining, _FOLLOWER_POLL_S)
            await wait_event(event, wait)
        if self.metrics is not None:
            self.metrics.observe_fetch(topic, table.num_rows, table.nbytes)
        # Compacted segments have gaps (issue 14): the next offset follows the last row read.
        after = int(table.column("offset")[-1].as_py()) + 1 if table.num_rows else offset
        log_start = self.manager.reader.lists.cached_log_start(topic, partition)  # as the read listed it
        return FetchResult(topic, partition, table, after, max(end, after), log_start, max(durable, after))

    async def _read(self, topic: str, partition: int, offset: int, count: int, max_bytes: int) -> pa.Table:
        if count <= 0:
            return RECORD_SCHEMA.empty_table()
        table = await self.manager.read(topic, partition, offset, count)
        if table.nbytes > max_bytes and table.num_rows > 1:
            # Cut in proportion to the average row size; at least one record always goes out.
            keep = max(1, table.num_rows * max_bytes // table.nbytes)
            table = table.slice(0, keep)
        return table

    def wake(self, topic: str, partition: int) -> None:
        event = self._appended.pop((topic, partition), None)
        if event is not None:
            event.set()
