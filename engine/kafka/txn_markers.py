"""COMMIT/ABORT markers written when a Kafka transaction ends (issue 18): one control row per
partition of the transaction, at its own offset, through the partition leader's append path
(storage/records/control.py), as Kafka's coordinator writes WriteTxnMarkers to every leader.

Visibility is decided before the markers are written (the store's EndTxn, txn_coordinator.py):
the markers are what Kafka clients see in the log (offsets occupied, control batches, an ABORT
closing an aborted transaction in a read_committed client), not what makes records committed.
A partition that cannot take its marker when the transaction ends (its leader unreachable, the
WAL disk full, the metadata store restarting) is logged once and retried with backoff until it
does (`PendingMarkers`, run by the coordinator's background loop): the transaction is ended all
the same, and the marker lands late, after later records perhaps. That is harmless to clients,
because committed records go out as plain batches and an ABORT only closes its producer's aborted
range (fetch_txn.py). Pending markers are kept in memory: a coordinator that crashes in between
leaves those partitions without their marker, which changes nobody's view (visibility is the
store's, and Fetch's aborted list still covers the range).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import pyarrow as pa

from streamhouse.agent.failures import Backoff
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import NotFoundError, StreamHouseError
from streamhouse.storage.records.control import Marker, marker_batch

log = logging.getLogger(__name__)

Append = Callable[[str, int, pa.RecordBatch], Awaitable[int]]


FIRST_RETRY_S = 0.5
RETRY_CAP_S = 30.0
MAX_PENDING = 10_000  # bounded: past it the oldest is given up (logged)

PendingKey = tuple[str, int, Marker]
_BACKOFF = Backoff(FIRST_RETRY_S, RETRY_CAP_S, RETRY_CAP_S)  # the background tasks' one backoff rule


class PendingMarkers:
    """Markers a partition could not take when their transaction ended, retried until written
    (or until the partition is gone)."""

    def __init__(self, append: Append) -> None:
        self._append = append
        self._pending: dict[PendingKey, tuple[int, float]] = {}  # -> (failed attempts, retry at)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, topic: str, partition: int, marker: Marker) -> None:
        if len(self._pending) >= MAX_PENDING:
            dropped = next(iter(self._pending))
            del self._pending[dropped]
            log.warning("%s marker of producer %d for %s/%d given up: too many pending", _kind(dropped[2]),
                        dropped[2].producer_id, dropped[0], dropped[1])  # fmt: skip
        self._pending[(topic, partition, marker)] = (1, time.monotonic() + FIRST_RETRY_S)

    async def retry_due(self) -> None:
        """One attempt for every marker whose backoff has run out, side by side."""
        now = time.monotonic()
        due = [key for key, (_, at) in self._pending.items() if at <= now]
        await asyncio.gather(*(self._retry(key) for key in due))

    async def _retry(self, key: PendingKey) -> None:
        topic, partition, marker = key
        try:
            await self._append(topic, partition, marker_batch(marker, now_ms()))
        except NotFoundError as exc:  # the topic or partition was deleted: nothing to mark
            self._pending.pop(key, None)
            log.warning("%s marker of producer %d for %s/%d dropped: %s", _kind(marker), marker.producer_id,
                        topic, partition, exc)  # fmt: skip
        except StreamHouseError:
            failures = self._pending.get(key, (0, 0.0))[0] + 1
            self._pending[key] = (failures, time.monotonic() + _BACKOFF.delay(failures, outage=False))
        else:
            attempts = self._pending.pop(key, (0, 0.0))[0]
            log.warning("%s marker of producer %d written to %s/%d after %d failed attempts", _kind(marker),
                        marker.producer_id, topic, partition, attempts)  # fmt: skip


def _kind(marker: Marker) -> str:
    return "COMMIT" if marker.commit else "ABORT"


async def write_markers(
    append: Append,
    partitions: Iterable[tuple[str, int]],
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    pending: PendingMarkers | None = None,
) -> dict[tuple[str, int], int]:
    """Each partition's marker offset (partitions that could not take one are left out, and
    handed to `pending` for retries)."""
    marker = Marker(producer_id, producer_epoch, commit)
    batch = marker_batch(marker, now_ms())

    async def one(topic: str, partition: int) -> int | None:
        try:
            return await append(topic, partition, batch)
        except StreamHouseError as exc:
            log.warning(
                "%s marker of producer %d not written to %s/%d: %s%s", _kind(marker), producer_id, topic, partition,
                exc, "; retrying with backoff" if pending is not None else "",
            )  # fmt: skip
            if pending is not None and not isinstance(exc, NotFoundError):
                pending.add(topic, partition, marker)
            return None

    # All partitions at once: EndTxn waits for the slowest WAL write, not for their sum.
    wanted = sorted(partitions)
    offsets = await asyncio.gather(*(one(topic, partition) for topic, partition in wanted))
    return {key: offset for key, offset in zip(wanted, offsets, strict=True) if offset is not None}
