"""Where a job reads: the next records of one source partition, from its committed offset,
as the topic's SQL table (system columns and declared columns), through the partition scan
every query uses — segments, then the leader's unflushed buffer when this agent leads it."""

from __future__ import annotations

import pyarrow as pa

from streamhouse.agent.sql_source import AgentTopics
from streamhouse.sql.catalog import check_bad_values, segment_columns, to_sql_table, topic_schema
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.partition_scan import ScanBounds


async def read_partition(
    topics: AgentTopics, info: TopicInfo, partition: int, offset: int, max_rows: int
) -> tuple[pa.Table, int]:
    """Up to `max_rows` records from `offset` on, and the offset to read next. Offsets are
    dense, so the next offset is `offset` + the rows read."""
    bounds = ScanBounds(start_offset=offset, end_offset=offset + max_rows)
    table, stats = await topics.scan(info, partition, bounds, segment_columns(info))
    if stats.json_errors:  # a view reads every declared column: refused as a query would be
        check_bad_values(await topics.get_topic(info.name), partition, stats, topic_schema(info).names)
    return to_sql_table(table, partition, info), offset + table.num_rows
