"""Record timestamps as Kafka defines them per topic (`message.timestamp.type`, registered in
storage/topic_settings.py). Offsets by time (ListOffsets, MAX_TIMESTAMP) are contract operations:
engine/agent/offsets.py.

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

from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.topic_settings import LOG_APPEND_TIME, TIMESTAMP_TYPE

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
