"""Where the SDK sends produced records: keyed rows to the partition a Kafka producer would pick
(murmur2 over the topic's current partition count), rows without a key round robin, each
partition's share in requests of at most `BATCH_RECORDS`. The partition count is cached and
re-read every `PARTITIONS_TTL_S`, so keyed records hash over partitions another client added
(ALTER TOPIC … ADD PARTITIONS), as a Kafka producer's metadata refresh does."""

from __future__ import annotations

import time

import pyarrow as pa

from streamhouse.api.partitioner import partition_for_keys, split_by_partition
from streamhouse.api.types import Acks, ProduceResult
from streamhouse.client.produce_errors import in_caller_batch
from streamhouse.client.transport import Transport
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import InvalidInputError, TopicNotFoundError
from streamhouse.storage.records.schema import RECORD_SCHEMA, stamp_missing_timestamps

# One produce request carries at most this many records (tables are split).
BATCH_RECORDS = 50_000
PARTITIONS_TTL_S = 5.0


class ProduceRouter:
    """One client's partition counts and round-robin positions, per topic."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._round_robin: dict[str, int] = {}
        self._partitions: dict[str, tuple[int, float]] = {}  # topic → (partition count, read at)

    def remember(self, topic: str, partitions: int) -> None:
        self._partitions[topic] = (partitions, time.monotonic())

    def forget(self, topic: str | None = None) -> None:
        """Drop one topic's count (deleted), or every count (an ALTER may have added partitions)."""
        if topic is None:
            self._partitions.clear()
        else:
            self._partitions.pop(topic, None)

    def partition_count(self, topic: str) -> int:
        cached = self._partitions.get(topic)
        if cached is None:
            count = self.transport.describe_topic(topic).info.partitions
            self.remember(topic, count)
            return count
        if time.monotonic() - cached[1] < PARTITIONS_TTL_S:
            return cached[0]
        # A refresh needs only the count: one metadata read, not describe's per-partition ones.
        for info in self.transport.list_topics():
            if info.name == topic:
                self.remember(topic, info.partitions)
                return info.partitions
        self.forget(topic)
        raise TopicNotFoundError(topic)

    def send(
        self, topic: str, batch: pa.RecordBatch | pa.Table, partition: int | None, acks: Acks
    ) -> list[ProduceResult]:
        """Record-schema rows as they are, to their partitions; a refused value is named where
        the caller put it in `batch`."""
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else RECORD_SCHEMA.empty_table()
        if not isinstance(batch, pa.RecordBatch) or batch.num_rows == 0:
            return []
        if not batch.schema.equals(RECORD_SCHEMA):
            raise InvalidInputError(f"produce_arrow needs the record schema, got {batch.schema}")
        # The producer stamps create time (Kafka's default), so the agent can log the request's
        # bytes as they are instead of re-encoding a stamped copy.
        batch = stamp_missing_timestamps(batch, now_ms())
        ids = None
        if partition is not None:
            parts = {partition: batch}
        else:
            count = self.partition_count(topic)
            start = self._round_robin.get(topic, 0)
            self._round_robin[topic] = start + batch.column(2).null_count
            ids = partition_for_keys(batch.column(2), count, start=start)
            parts = split_by_partition(batch, ids, count)
        results: list[ProduceResult] = []
        for p, part in sorted(parts.items()):
            for begin in range(0, part.num_rows, BATCH_RECORDS):
                try:
                    results.extend(self.transport.produce(topic, p, part.slice(begin, BATCH_RECORDS), acks))
                except InvalidInputError as exc:  # a refused value: named in the caller's batch
                    raise in_caller_batch(exc, ids, p, begin, sum(r.record_count for r in results)) from None
        return results
