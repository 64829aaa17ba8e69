"""StreamHouse topics in Spark Structured Streaming (the `spark` extra): a data source named
`streamhouse` that reads topics with their offsets and event-time columns, batch and streaming,
and an exactly-once streaming sink back into a topic. `register(spark)` registers it.

Nothing under `streamhouse` imports this package: `import streamhouse` never imports pyspark."""

from streamhouse.spark.source import NAME, StreamHouseDataSource, register

__all__ = ["NAME", "StreamHouseDataSource", "register"]
