"""Produce-time check of values against a topic's declared columns (docs/DESIGN.md §7): a batch whose
values do not fit is refused before anything is written (no WAL entry, no offsets taken),
so a value the segment writer would have to null out never reaches a partition unless the
topic asked for that with json.ignore-errors. Topics without declared columns skip it; every
topic gets the one-comparison check of record timestamps."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.values.json_decode import MAX_EPOCH_MS, check_values
from streamhouse.storage.values.schema import ValueSchema, parse_value_schema

IGNORE_ERRORS = "json.ignore-errors"
# Below this many records the check runs inline: handing a small batch to the IO pool costs
# more than decoding it. Larger batches decode there, so the event loop keeps serving.
_INLINE_ROWS = 2_048


@functools.lru_cache(maxsize=1_024)
def _schema(text: str) -> ValueSchema | None:
    return parse_value_schema(text)


def ignores_errors(info: TopicInfo) -> bool:
    """Whether the topic stores values that do not fit (they read as nulls) instead of refusing them."""
    return str(info.config.get(IGNORE_ERRORS, "false")).strip().lower() == "true"


async def check_batch(info: TopicInfo, batch: pa.RecordBatch) -> pa.Table | None:
    """InvalidValueError (record index, column, reason) for the first value of `batch` that
    does not fit `info`'s declared columns (untyped and lenient topics skip that check), and
    InvalidInputError for a record timestamp past year 9999 (every topic).

    Returns the batch's declared columns under their segment names when the check decoded
    them in one pass: the partition writer keeps them beside the buffered batch, so neither
    the segment writer nor a query of the buffer decodes the same JSON again."""
    if batch.num_rows == 0:
        return None
    _check_timestamps(info, batch)
    if not info.value_schema or ignores_errors(info):
        return None
    schema = _schema(info.value_schema)
    if schema is None or schema.format != "json":
        return None  # Avro topics decode with their writer schemas: engine/registry/produce_check.py
    values = batch.column("value")
    if batch.num_rows < _INLINE_ROWS:
        decoded = check_values(values, schema)
    else:
        decoded = await run_blocking(check_values, values, schema)
    return None if decoded is None else decoded.rename_columns(schema.segment_schema().names)


def _check_timestamps(info: TopicInfo, batch: pa.RecordBatch) -> None:
    """Record timestamps past year 9999 cannot be shown by Python, pandas or SQL clients: one
    such record would break every read of `_timestamp`. (Timestamps <= 0 mean "none given"
    and are stamped with the append time.) One vectorised max on the success path."""
    stamps = batch.column("timestamp")
    high = pc.max(stamps).as_py()
    if high is None or high <= MAX_EPOCH_MS:
        return
    values = stamps.to_numpy(zero_copy_only=False)
    index = int(np.argmax(values > MAX_EPOCH_MS))
    raise InvalidInputError(
        f"{info.name}: record {index} of the batch has timestamp {int(values[index])}, after year 9999 "
        f"(epoch milliseconds up to {MAX_EPOCH_MS})"
    )
