"""A bounded read of one partition: every record acknowledged when the read began, batch by
batch. Client.read and the Daft SQL source's tail read (engine/daft_sql/sources.py) share it.

A fetch serves records up to the durable end (the high watermark); records the leader
acknowledged past it are only in its buffer and WAL. The leader's answer carries the
acknowledged end, and a fetch that waits below it starts the durable round that commits them
and is answered as soon as that commits (docs/DESIGN.md §6). So the read takes the
acknowledged end from the first answer and, where a fetch stops short of it, waits once for
that round."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from streamhouse.client.routing import BATCH_RECORDS
from streamhouse.client.transport import Transport
from streamhouse.storage.errors import OffsetOutOfRangeError

# How long a fetch below the acknowledged end waits for its durable round (one roll, or a
# store outage's backoff).
ROUND_WAIT_MS = 10_000


def read_acknowledged(
    transport: Transport,
    topic: str,
    partition: int,
    start: int,
    *,
    acked: int = 0,
    stop: int | None = None,
    isolation: str = "read_committed",
) -> Iterator[pa.Table]:
    """The records of `partition` from `start` up to its acknowledged end, as fetched
    (a batch may reach past `stop`, where the read ends). `acked`: the end the caller already
    knows (a describe), so the first fetch may already wait; a non-leader's describe knows only
    the committed end, and the leader's first answer takes over. Offsets below the log start
    (retention removed them meanwhile) are passed over; read_committed passes over aborted
    records."""
    offset = start
    end: int | None = acked if acked > start else None  # unknown until the first answer
    answered = False
    while (end is None or offset < end) and (stop is None or offset < stop):
        wait_ms = ROUND_WAIT_MS if end is not None and offset < end else 0
        try:
            result = transport.fetch(
                topic, partition, offset, max_records=BATCH_RECORDS, max_wait_ms=wait_ms, isolation=isolation
            )
        except OffsetOutOfRangeError as exc:
            offset = max(offset + 1, exc.log_start)
            continue
        # The tail as of the leader's first answer: records acknowledged later are not waited for.
        end = end if answered else result.end_offset
        answered = True
        if result.records.num_rows == 0:
            if result.next_offset > offset:  # only aborted records there (read_committed)
                offset = result.next_offset
                continue
            if wait_ms == 0 and end is not None and offset < end:
                continue  # acknowledged records past the durable end: wait for their round
            return
        yield result.records
        offset = result.next_offset
