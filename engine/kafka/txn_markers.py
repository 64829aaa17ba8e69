"""COMMIT/ABORT markers written when a Kafka transaction ends (issue 18): one control row per
partition of the transaction, at its own offset, through the partition leader's append path
(storage/records/control.py), as Kafka's coordinator writes WriteTxnMarkers to every leader.

Visibility is decided before the markers are written (the store's EndTxn, txn_coordinator.py):
the markers are what Kafka clients see in the log (offsets occupied, control batches, an ABORT
closing an aborted transaction in a read_committed client), not what makes records committed.
A partition this agent cannot append to (another agent leads it, the object store refuses) is
logged and left without its marker; the transaction is ended all the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import pyarrow as pa

from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.records.control import Marker, marker_batch

log = logging.getLogger(__name__)

Append = Callable[[str, int, pa.RecordBatch], Awaitable[int]]


async def write_markers(
    append: Append, partitions: Iterable[tuple[str, int]], producer_id: int, producer_epoch: int, commit: bool
) -> dict[tuple[str, int], int]:
    """Each partition's marker offset (partitions that could not take one are left out)."""
    batch = marker_batch(Marker(producer_id, producer_epoch, commit), now_ms())

    async def one(topic: str, partition: int) -> int | None:
        try:
            return await append(topic, partition, batch)
        except StreamHouseError as exc:
            log.warning(
                "%s marker of producer %d not written to %s/%d: %s",
                "COMMIT" if commit else "ABORT", producer_id, topic, partition, exc,
            )  # fmt: skip
            return None

    # All partitions at once: EndTxn waits for the slowest WAL write, not for their sum.
    wanted = sorted(partitions)
    offsets = await asyncio.gather(*(one(topic, partition) for topic, partition in wanted))
    return {key: offset for key, offset in zip(wanted, offsets, strict=True) if offset is not None}
