"""The front-end contract as our own readers see it (issue 18): fetches through gRPC, REST and the
SDK read committed data, as a Kafka read_committed consumer does (storage/metadata/txn_reads.py):
nothing at or past a partition's last stable offset, no record of an aborted transaction.

A fetch that stops at the last stable offset answers `next_offset` there, so the reader's next
fetch asks for the held records again; skipped aborted records are passed over. The Kafka
listener does not go through this wrapper: it filters per request (isolation_level), so a Kafka
read_uncommitted consumer still sees everything, which is also the way to look at uncommitted
records. A request may ask for every record instead (storage/metadata/isolation.py: the SDK's
`isolation="read_uncommitted"`, gRPC's `isolation_level`, REST's `isolation` parameter): its
fetches then go straight through too. Every other operation goes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, cast

from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import FetchResult
from streamhouse.storage.metadata.isolation import READ_UNCOMMITTED, requested
from streamhouse.storage.metadata.txn_reads import CommittedReads
from streamhouse.storage.records.control import without_control

_RECHECK_S = 0.2  # a transaction ended on another agent is seen within this (and txn_reads.CACHE_S)


class CommittedFrontEnd:
    def __init__(self, inner: FrontEnd, reads: CommittedReads) -> None:
        self.inner = inner
        self.reads = reads

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def fetch(self, topic: str, partition: int, offset: int, **options: Any) -> FetchResult:
        if requested() == READ_UNCOMMITTED:
            raw: FetchResult = await self.inner.fetch(topic, partition, offset, **options)
            return dataclasses.replace(raw, records=without_control(raw.records))
        wait_ms = int(options.get("max_wait_ms", 0))
        deadline = time.monotonic() + max(wait_ms, 0) / 1000
        while True:
            result: FetchResult = await self.inner.fetch(topic, partition, offset, **options)
            # Kafka transaction markers hold offsets but are no records here (storage/records/control.py).
            result = dataclasses.replace(result, records=without_control(result.records))
            upto = result.next_offset if result.records.num_rows else None
            view = await self.reads.stable(topic, partition, offset, upto=upto)
            if view.last_stable is None and not len(view.bases):
                return result  # nothing transactional to hold back or skip here
            records = view.committed(result.records)
            next_offset = result.next_offset
            if view.last_stable is not None and view.last_stable < next_offset:
                next_offset = max(offset, view.last_stable)
            left = deadline - time.monotonic()
            if records.num_rows or next_offset > offset or left <= 0:
                return dataclasses.replace(result, records=records, next_offset=next_offset)
            # Everything there is held by an open transaction: wait for one to end (here), or
            # the caller's MaxWait, instead of answering "nothing" at once to a long-poll.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reads.moved(), timeout=min(left, _RECHECK_S))


def read_committed(inner: FrontEnd, reads: CommittedReads) -> FrontEnd:
    """`inner` with its fetches read committed; the rest delegated by __getattr__."""
    return cast(FrontEnd, CommittedFrontEnd(inner, reads))
