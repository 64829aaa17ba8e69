"""Where a produce request's records may go, decided before anything is written
(AgentService.produce): the per-record size limit, and the partition of each record (the one
asked for, or with -1 Kafka's murmur2 on keys and round robin for records without one, as the
SDK and Kafka clients partition). Whole batches with pyarrow compute, never a loop per record."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.api.partitioner import partition_for_keys, split_by_partition
from streamhouse.storage.errors import InvalidInputError, PartitionNotFoundError
from streamhouse.storage.model import TopicInfo

_KEY, _VALUE = 2, 3  # columns of RECORD_SCHEMA (offset, timestamp, key, value, headers)


def check_sizes(topic: str, batch: pa.RecordBatch, limit: int) -> None:
    """InvalidInputError naming the first record whose key + value is over `limit` bytes."""
    if batch.num_rows == 0:
        return
    # Fast path: all keys and values together fit the limit, so no single record exceeds it.
    if _data_bytes(batch.column(_KEY)) + _data_bytes(batch.column(_VALUE)) <= limit:
        return
    keys, values = cast(pa.BinaryArray, batch.column(_KEY)), cast(pa.BinaryArray, batch.column(_VALUE))
    size = cast(pa.Int32Array, pc.add(pc.binary_length(keys).fill_null(0), pc.binary_length(values).fill_null(0)))
    biggest = int(pc.max(size).as_py())
    if biggest > limit:
        index = int(np.argmax(size.to_numpy(zero_copy_only=False)))
        raise InvalidInputError(
            f"{topic}: record {index} of the batch is {biggest} bytes (key + value), over the limit of {limit}"
        )


class Router:
    """The partition choice, with the round-robin position per topic (records without a key
    continue where the previous request's left off, so they spread over every partition)."""

    def __init__(self) -> None:
        self._round_robin: dict[str, int] = {}

    def route(self, info: TopicInfo, partition: int, batch: pa.RecordBatch) -> dict[int, pa.RecordBatch]:
        if partition >= 0:
            if partition >= info.partitions:
                raise PartitionNotFoundError(info.name, partition, info.partitions)
            return {partition: batch}
        if partition != -1:
            raise InvalidInputError(f"partition must be >= 0, or -1 to let the agent choose, not {partition}")
        keys = batch.column(_KEY)
        start = self._round_robin.get(info.name, 0)
        self._round_robin[info.name] = start + keys.null_count
        ids = partition_for_keys(keys, info.partitions, start=start)
        return split_by_partition(batch, ids, info.partitions)


def _data_bytes(array: pa.Array[Any]) -> int:
    """Bytes of a binary array's values, from its offsets (slices included)."""
    offsets = array.buffers()[1]
    if offsets is None or len(array) == 0:
        return 0
    bounds = np.frombuffer(memoryview(offsets), dtype=np.int32)
    return int(bounds[array.offset + len(array)] - bounds[array.offset])
