"""Everything a produced batch must pass before it reaches the WAL, in one place: its values
against the topic's declared columns (or the schemas of a registry-format topic), the schema
registry framing a topic asks for, keys on a compacted topic, the WAL's backpressure limit, and
the record timestamps the topic's `message.timestamp.type` gives it. A batch refused here
writes nothing (AgentService.produce checks every target partition's lease after this)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.routing import check_sizes
from streamhouse.registry.produce_check import SchemaIdCheck
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import BackpressureError, InvalidInputError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.records.control import refuse_reserved
from streamhouse.storage.records.schema import RECORD_SCHEMA, stamp_missing_timestamps
from streamhouse.storage.segment.compact import require_keys
from streamhouse.storage.topic_settings import (
    KEY_SCHEMA_VALIDATION,
    KEY_SUBJECT_STRATEGY,
    LOG_APPEND_TIME,
    TIMESTAMP_TYPE,
    VALUE_SCHEMA_VALIDATION,
    VALUE_SUBJECT_STRATEGY,
    compacted,
)
from streamhouse.storage.values.check import check_batch
from streamhouse.storage.wal.log import WriteAheadLog


@dataclass(frozen=True)
class Admitted:
    """A batch that passed: `info` as its schema ids found the topic (an Avro schema evolution
    grows the columns), `batch` with its timestamps stamped, `decoded` its declared columns
    (None for untyped topics), `restamped` when stamping changed it, so the request's bytes no
    longer hold these records."""

    info: TopicInfo
    batch: pa.RecordBatch
    decoded: pa.Table | None
    restamped: bool


async def admit(
    info: TopicInfo,
    batch: pa.RecordBatch,
    schema_ids: SchemaIdCheck,
    config: AgentConfig,
    wal: WriteAheadLog,
    append_time_ms: int | None = None,
) -> Admitted:
    """The WAL's size and the clock are read after the (awaited) value and schema checks,
    right before they decide: a batch waits on the registry, not on a stale figure."""
    topic = info.name
    if not batch.schema.equals(RECORD_SCHEMA):
        raise InvalidInputError(f"batch schema is not the record schema: {batch.schema}")
    check_sizes(topic, batch, config.max_record_bytes)
    refuse_reserved(batch, topic)  # only Kafka transactions write markers (append_control)
    decoded = await check_batch(info, batch)  # values vs declared columns
    if decoded is None:  # registry-format topics: typed columns per schema id
        info, decoded = await schema_ids.decoded(info, batch)
    if info.config.get(VALUE_SCHEMA_VALIDATION) == "true":  # framing + registered ids
        await schema_ids.check(topic, batch.column("value"), info.config.get(VALUE_SUBJECT_STRATEGY))
    if info.config.get(KEY_SCHEMA_VALIDATION) == "true":  # keys likewise, against <topic>-key
        await schema_ids.check(topic, batch.column("key"), info.config.get(KEY_SUBJECT_STRATEGY), role="key")
    if compacted(info.config):  # Kafka refuses keyless records on compacted topics
        require_keys(topic, batch.column("key"))
    wal_bytes = wal.disk_bytes
    if wal_bytes > config.max_wal_bytes:
        raise BackpressureError(
            f"the WAL holds {wal_bytes} bytes not yet in segments, limit {config.max_wal_bytes}: "
            "the object store is not keeping up (or is down); retry later"
        )
    now = append_time_ms if append_time_ms is not None else now_ms()
    if info.config.get(TIMESTAMP_TYPE) == LOG_APPEND_TIME:  # every path, as a Kafka broker does
        stamped = batch.set_column(1, RECORD_SCHEMA.field(1), pa.array(np.full(batch.num_rows, now, np.int64)))
    else:
        stamped = stamp_missing_timestamps(batch, now)
    return Admitted(info, stamped, decoded, stamped is not batch)
