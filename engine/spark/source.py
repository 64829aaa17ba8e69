"""The `streamhouse` data source for Spark (pyspark's Python data source API, Spark 4):

    from streamhouse.spark import register
    register(spark)
    bids = spark.readStream.format("streamhouse").option("bootstrap", "agent:50051").load("bid")

Batch reads (`spark.read`) and streaming reads (`spark.readStream`) of a topic's SQL table, and
an exactly-once streaming sink (`writeStream.format("streamhouse")`, sink.py). The driver learns
the topic (its schema and offsets) through the SDK; every task opens its own connection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    DataSourceStreamWriter,
    InputPartition,
)
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType

from streamhouse.spark.options import SourceOptions, parse_options
from streamhouse.spark.reader import (
    OffsetRange,
    bounds,
    from_spark,
    limited,
    ranges,
    read_range,
    spark_offsets,
    starting_offsets,
)
from streamhouse.spark.schema import arrow_target, projection, readable, topic_struct
from streamhouse.storage.model import TopicInfo

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

NAME = "streamhouse"


def register(spark: SparkSession) -> None:
    """Make `format("streamhouse")` known to this Spark session."""
    spark.dataSource.register(StreamHouseDataSource)


class StreamHouseDataSource(DataSource):
    """A topic as a table (system columns, then declared columns or `_value`)."""

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        self.parsed = parse_options(options)

    @classmethod
    def name(cls) -> str:
        return NAME

    def _info(self) -> TopicInfo:
        with self.parsed.connect() as client:
            info = client.describe(self.parsed.topic).info
        readable(info)
        return info

    def schema(self) -> StructType:
        return topic_struct(self._info())

    def reader(self, schema: StructType) -> DataSourceReader:
        return TopicBatchReader(self.parsed, self._info(), schema)

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return TopicStreamReader(self.parsed, self._info(), schema)

    def streamWriter(self, schema: StructType, overwrite: bool) -> DataSourceStreamWriter:
        from streamhouse.spark.sink import TopicStreamWriter

        return TopicStreamWriter(self.parsed, schema)


class _Reading:
    """What both readers share: the topic, and the Arrow schema of the columns Spark asked for
    (a user-given schema selects columns; it cannot rename or add any)."""

    def __init__(self, options: SourceOptions, info: TopicInfo, schema: StructType) -> None:
        projection(info, schema.fieldNames())
        self.options = options
        self.info = info
        self.target: pa.Schema = arrow_target(schema)

    def _read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, OffsetRange)
        return read_range(self.options, self.info, partition, self.target)


class TopicBatchReader(_Reading, DataSourceReader):
    """`spark.read`: from startingOffsets to endingOffsets (default: every record so far)."""

    def partitions(self) -> Sequence[InputPartition]:
        with self.options.connect() as client:
            start = starting_offsets(client, self.info, self.options.starting)
            _, ends = bounds(client, self.info.name)
        if isinstance(self.options.ending, dict):
            ends = {p: min(max(o, start.get(p, 0)), ends.get(p, o)) for p, o in self.options.ending.items()}
        return ranges(start, ends)

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        return self._read(partition)


class TopicStreamReader(_Reading, DataSourceStreamReader):
    """`spark.readStream`: each micro-batch the offsets that arrived since the last one."""

    def initialOffset(self) -> dict[str, int]:
        with self.options.connect() as client:
            return spark_offsets(starting_offsets(client, self.info, self.options.starting))

    def getDefaultReadLimit(self) -> ReadLimit:
        n = self.options.max_records_per_trigger
        return ReadAllAvailable() if n is None else ReadMaxRows(n)

    def latestOffset(self, start: dict[str, int], limit: ReadLimit) -> dict[str, int]:
        with self.options.connect() as client:
            _, ends = bounds(client, self.info.name)
        return spark_offsets(limited(from_spark(start), ends, limit))

    def reportLatestOffset(self) -> dict[str, int]:
        with self.options.connect() as client:
            return spark_offsets(bounds(client, self.info.name)[1])

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> Sequence[InputPartition]:
        return ranges(from_spark(start), from_spark(end))

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        return self._read(partition)

    def commit(self, end: dict[str, int]) -> None:
        """Nothing to release: offsets stay readable until retention removes them."""
