"""Record timestamps as Kafka defines them per topic (`message.timestamp.type`, registered in
storage/topic_config.py), and ListOffsets' MAX_TIMESTAMP (-3, KIP-734).

CreateTime keeps what the producer stamped. LogAppendTime replaces it with the time the
agent appended the batch (AgentService.produce does it on every path, Kafka, gRPC and SDK;
the Kafka front end picks the time so its Produce answer carries it); that time is what is
stored, so SQL, jobs and the SDK see the same timestamps Kafka consumers do. On fetch, each run of records
appended together goes out as one batch marked LogAppendTime carrying that time, as a Kafka
broker's own batches are, so clients report the timestamp type too.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from streamhouse.agent.service import AgentService
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.topic_config import LOG_APPEND_TIME, TIMESTAMP_TYPE

_SCAN_RECORDS = 50_000
MAX_RUNS = 64  # LogAppendTime batches per fetched Arrow batch, before falling back to one CreateTime batch
_TIMESTAMP = 1  # column index in RECORD_SCHEMA (offset, timestamp, key, value, headers)


def log_append_time(config: Mapping[str, str]) -> bool:
    """Whether a topic (its stored config) stamps append time."""
    return config.get(TIMESTAMP_TYPE) == LOG_APPEND_TIME


def encode_log_append_time(batches: list[pa.RecordBatch]) -> bytes:
    """A Fetch `records` field for a LogAppendTime topic: one Kafka batch per run of equal
    timestamps (each run is one append), marked LogAppendTime. The runs come from numpy; the
    loop is per append, not per record.

    Records stored while the topic was CreateTime have a timestamp each, so their runs are
    single records: past MAX_RUNS runs the Arrow batch goes out as one CreateTime batch
    instead, keeping every timestamp exact and the fetch free of a loop per record."""
    out = []
    for batch in batches:
        if not batch.num_rows:
            continue
        stamps = batch.column(_TIMESTAMP).to_numpy(zero_copy_only=False)
        cuts = np.flatnonzero(np.diff(stamps)) + 1
        if len(cuts) + 1 > MAX_RUNS:
            out.append(encode_batch(batch))
            continue
        edges = [0, *cuts.tolist(), batch.num_rows]
        for start, end in itertools.pairwise(edges):
            out.append(encode_batch(batch.slice(start, end - start), log_append_time=True))
    return b"".join(out)


async def max_timestamp_offset(service: AgentService, topic: str, partition: int) -> tuple[int, int]:
    """ListOffsets -3: the offset and timestamp of the record with the largest timestamp (the
    first such record on a tie, as Kafka keeps it); (-1, -1) for an empty partition.

    Segments carry their max timestamp in metadata, so only the segment holding the largest
    one and the unsegmented tail are read, in whole fetches scanned with numpy."""
    best_ts, best_range = -1, (0, 0)
    tail = 0
    for segment in await service.metadata.list_segments(topic, partition):
        if segment.max_timestamp > best_ts:
            best_ts, best_range = segment.max_timestamp, (segment.base_offset, segment.end_offset)
        tail = max(tail, segment.end_offset)
    end = await service.manager.end_offset(topic, partition)
    tail_offset, tail_ts = await _first_max(service, topic, partition, tail, end)
    if tail_offset >= 0 and tail_ts > best_ts:  # strictly greater: an earlier segment wins a tie
        return tail_offset, tail_ts
    if best_ts < 0:
        return -1, -1
    offset, ts = await _first_max(service, topic, partition, *best_range)
    return (offset, ts) if offset >= 0 else (-1, -1)


async def _first_max(service: AgentService, topic: str, partition: int, start: int, end: int) -> tuple[int, int]:
    """The first offset in [start, end) holding the range's largest timestamp, and that timestamp."""
    best_offset, best_ts = -1, -1
    # Each fetch returns at least one record while start < end, so this ends.
    while start < end:
        result = await service.fetch(topic, partition, start, max_records=min(_SCAN_RECORDS, end - start))
        stamps = result.records.column("timestamp").to_numpy(zero_copy_only=False)
        if len(stamps) == 0:
            break
        offsets = result.records.column("offset").to_numpy(zero_copy_only=False)
        inside = offsets < end
        stamps, offsets = stamps[inside], offsets[inside]
        if len(stamps) == 0:
            break
        top = int(np.argmax(stamps))  # argmax: the first of equal maxima
        if int(stamps[top]) > best_ts:
            best_offset, best_ts = int(offsets[top]), int(stamps[top])
        start = int(offsets[-1]) + 1
    return best_offset, best_ts
