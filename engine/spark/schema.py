"""A topic as Spark sees it: its SQL table (system columns `_partition`, `_offset`, `_timestamp`,
`_key`, then the declared columns or `_value`, the same table SQL and jobs read, sql/query/catalog.py)
as a Spark schema, and fetched records turned into Arrow batches of exactly the Arrow schema
pyspark's reader expects for that Spark schema (it compares them with `Schema.equals`).

Column-wise only: JSON values are decoded by the one decoder segments and scans use
(storage/values/json_decode.py), timestamps are cast, never a Python step per record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streamhouse.sql.query.catalog import topic_schema
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.values.json_decode import decode_json_values
from streamhouse.storage.values.registry_formats import registry_format
from streamhouse.storage.values.schema import parse_value_schema

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

# pyspark's reader builds its expected Arrow schema with this zone (plan_data_source_read.py).
_SPARK_ZONE = "UTC"


def readable(info: TopicInfo) -> None:
    """InvalidInputError unless the Spark source can decode this topic's values: declared JSON
    columns or raw `_value` bytes. Schema-registry topics (Avro, Protobuf, JSON Schema) need the
    registry's writer schemas per record, which the source does not fetch (yet)."""
    declared = parse_value_schema(info.value_schema)
    if declared is not None and registry_format(declared.format) is not None:
        raise InvalidInputError(
            f"topic {info.name!r} holds {declared.format} values: the Spark source reads topics with "
            "declared JSON columns or raw values only; read it with streamhouse SQL or a Kafka client"
        )


def topic_struct(info: TopicInfo) -> StructType:
    """The Spark schema of a topic: its SQL table's columns. `_timestamp` and declared
    TIMESTAMP(3) columns are TimestampType, the latter read as UTC (our SQL's zone for them):
    Spark's withWatermark takes TimestampType only, and event time is what a stream needs."""
    from pyspark.sql.pandas.types import from_arrow_schema

    readable(info)
    schema = topic_schema(info)
    fields = [_as_instant(f) for f in schema]
    return from_arrow_schema(pa.schema(fields))


def _as_instant(field: pa.Field[Any]) -> pa.Field[Any]:
    kind = field.type
    if pa.types.is_timestamp(kind) and kind.tz is None:
        return field.with_type(pa.timestamp(kind.unit, tz=_SPARK_ZONE))
    return field


def arrow_target(struct: StructType) -> pa.Schema:
    """The Arrow schema pyspark checks each yielded batch against, for `struct`."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(struct, timezone=_SPARK_ZONE)


def projection(info: TopicInfo, wanted: Sequence[str]) -> list[str]:
    """The topic columns a Spark schema names, in its order; InvalidInputError naming any that
    the topic does not have (a user-given `.schema(...)` selects columns, it cannot add any)."""
    have = set(topic_schema(info).names)
    missing = [name for name in wanted if name not in have]
    if missing:
        raise InvalidInputError(
            f"topic {info.name!r} has no column(s) {', '.join(missing)}; its columns are {', '.join(sorted(have))}"
        )
    return list(wanted)


def to_spark_batch(records: pa.Table, partition: int, info: TopicInfo, target: pa.Schema) -> pa.RecordBatch:
    """Fetched records (RECORD_SCHEMA rows of one partition) as one batch of `target`: the topic's
    SQL columns that `target` names, each cast to the type pyspark expects (ms → µs timestamps)."""
    n = records.num_rows
    declared = parse_value_schema(info.value_schema)
    decoded: dict[str, Any] = {}
    if declared is not None and any(not name.startswith("_") for name in target.names):
        table = decode_json_values(records.column("value"), declared).table
        decoded = dict(zip(table.column_names, table.columns, strict=True))
    arrays: list[Any] = []
    for field in target:
        arrays.append(_column(field, records, decoded, partition, n).cast(field.type))
    return pa.RecordBatch.from_arrays([_single(a) for a in arrays], schema=target)


def _column(field: pa.Field[Any], records: pa.Table, decoded: dict[str, Any], partition: int, n: int) -> Any:
    name = field.name
    if name == "_partition":
        return pa.repeat(pa.scalar(partition, pa.int32()), n)
    if name == "_offset":
        return records.column("offset")
    if name == "_timestamp":  # epoch ms → a UTC instant: a zero-copy view, then pyspark's unit
        return records.column("timestamp").cast(pa.timestamp("ms", tz=_SPARK_ZONE))
    if name == "_key":
        return records.column("key")
    if name == "_value":
        return records.column("value")
    return decoded[name]


def _single(column: Any) -> Any:
    """One array per column (a batch holds no chunks); fetch results are one chunk already."""
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column
