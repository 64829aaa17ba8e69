"""acks=all refused before anything is written while a partition's acknowledgements are stalled:
Kafka's NOT_ENOUGH_REPLICAS (docs/DESIGN.md §10).

An acks=all answer waits for the segment commit, which an object-store outage holds back (a
blackholed S3 request hangs until its read timeout). Records appended meanwhile are written
but cannot be acknowledged, and a client gives up on them: librdkafka fails the messages whose
`message.timeout.ms` passes and then bumps its producer epoch by itself (KIP-360) and sends the
rest of its queue again from sequence 0 of the new epoch, including messages the agent had
already written under the old epoch. No broker can tell those from new records (Kafka accepts
sequence 0 of a new epoch too), so each bump wrote the queue again: blocks of hundreds of
records two to eight times in the chaos run (issue 19, finding 1).

A Kafka broker does not write what it already knows it cannot acknowledge: with fewer in-sync
replicas than required it refuses acks=all before the append (NOT_ENOUGH_REPLICAS, nothing
written, so no retry or re-send can duplicate). The agent keeps the same rule with the signal
it has: while the oldest acks=all append of a partition has waited longer than
`stall_limit_s(timeout_ms)`, a new acks=all batch is never written. Its request is placed at
once (the connection reads on) and its answer, NOT_ENOUGH_REPLICAS, held until the stall ends
or the request's answer is due, whichever is first; the client's retry is then written as
usual. Held, not written later: a client may have given up on the request meanwhile and sent
its messages again under a new epoch. Answered late, not at once: every retriable error costs
the client a retry with a backoff of its own per message, and librdkafka (2.16 here, see
its issue 4736) fails for good ("Unable to reconstruct MessageSet") when a batch whose messages have
different retry counts is answered with one; immediate refusals, a hundred a second, killed
the chaos run's producer. What is in doubt is then only what was appended before the stall
showed, which are the client's oldest messages, the first to time out. A retry of a batch
already written is not refused (it gets the original's offsets, idempotence.py): refusing it
would tell the client "not persisted" about records that are.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator

from streamhouse.kafka.errors import KafkaProtocolError

NOT_ENOUGH_REPLICAS = 19
# The stall that refuses new batches, as a share of the request's timeout_ms, within bounds:
# above a busy box's slowest normal commit round, and well inside the request timeout
# (and the client's message timeout, which is usually no shorter).
STALL_SHARE = 0.2
MIN_STALL_S = 2.0
MAX_STALL_S = 5.0

Key = tuple[str, int]


class AcksStalledError(KafkaProtocolError):
    """acks=all refused before the append: the partition's segment commits were stalled."""

    error_code = NOT_ENOUGH_REPLICAS

    def __init__(self, where: str, waited_s: float) -> None:
        super().__init__(
            f"acks=all on {where}: the oldest acknowledgement had waited {waited_s:.1f}s for its segment "
            "commit (object store stalled) when this batch came; it was not written, retry",
            api="Produce",
            field="acks",
        )


def stall_limit_s(timeout_ms: int) -> float:
    """How long the oldest acks=all append may wait before new ones are refused."""
    return min(max(timeout_ms / 1000 * STALL_SHARE, MIN_STALL_S), MAX_STALL_S)


class AckStalls:
    """The acks=all appends of each partition waiting for their acknowledgement, by start time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ids = itertools.count()
        self._waiting: dict[Key, dict[int, float]] = {}  # insertion order: the oldest first
        self._left: dict[Key, asyncio.Event] = {}  # set when a waiter of the partition leaves

    def now(self) -> float:
        return self._clock()

    @contextlib.contextmanager
    def waiting(self, topic: str, partition: int) -> Iterator[None]:
        """Counts an acks=all append (and its wait) from entry to exit."""
        key, token = (topic, partition), next(self._ids)
        self._waiting.setdefault(key, {})[token] = self._clock()
        try:
            yield
        finally:
            left = self._waiting.get(key)
            if left is not None:
                left.pop(token, None)
                if not left:
                    del self._waiting[key]
            event = self._left.pop(key, None)
            if event is not None:
                event.set()

    def waited_s(self, topic: str, partition: int) -> float:
        """How long the partition's oldest acks=all append has been waiting (0: none)."""
        left = self._waiting.get((topic, partition))
        return self._clock() - next(iter(left.values())) if left else 0.0

    def stalled(self, topic: str, partition: int, limit_s: float) -> bool:
        return self.waited_s(topic, partition) > limit_s

    async def refuse_if_stalled(
        self, topic: str, partition: int, limit_s: float, until: float, placed: Callable[[], None]
    ) -> None:
        """Returns at once unless the partition is stalled (its oldest acks=all append has
        waited over `limit_s`). If it is, calls `placed()` and raises AcksStalledError once the
        stall ends or at `until` (this clock's time), whichever is first."""
        if not self.stalled(topic, partition, limit_s):
            return
        placed()
        waited = self.waited_s(topic, partition)
        key = (topic, partition)
        while self.stalled(topic, partition, limit_s) and (left := until - self._clock()) > 0:
            event = self._left.setdefault(key, asyncio.Event())
            with contextlib.suppress(TimeoutError):  # a stall ends only when a waiter leaves: no polling
                await asyncio.wait_for(event.wait(), left)
        raise AcksStalledError(f"{topic}/{partition}", waited)
