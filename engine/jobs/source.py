"""Where a job reads: the next records of one source partition, from its committed offset,
as the topic's SQL table (system columns and declared columns), through the partition scan
every query uses — committed segments only, up to the high watermark: a record a takeover
may still change never reaches a job's view (docs/DESIGN.md §6) — and whether a partition
that showed nothing may still hold records the job has not read (then it must not count as
idle: issue 10)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.agent.sql_source import AgentTopics
from streamhouse.jobs.host import JobHost
from streamhouse.sql.query.catalog import check_bad_values, segment_columns, to_sql_table, topic_schema
from streamhouse.storage.clock import now_ms
from streamhouse.storage.metadata.txn_reads import CommittedReads
from streamhouse.storage.model import TopicInfo, partition_resource
from streamhouse.storage.partition.scan import ScanBounds

# Empty windows skipped per read when a compacted gap swallows a whole window: bounded, so a
# read never loops for long; the next round goes on from where it stopped.
_GAP_WINDOWS = 16

log = logging.getLogger(__name__)


async def read_partition(
    topics: AgentTopics,
    info: TopicInfo,
    partition: int,
    offset: int,
    max_rows: int,
    skipped: Callable[[int], None] = lambda count: None,
    committed: CommittedReads | None = None,
) -> tuple[pa.Table, int]:
    """Up to `max_rows` records from `offset` on, and the offset to read next: after the last
    row read. Compacted segments have gaps (issue 14), so a window of `max_rows` offsets may
    hold fewer records, or none: a window found empty below the end offset (the high
    watermark) lies in a gap (the whole window is committed, nothing is hidden) and is
    stepped over, at most _GAP_WINDOWS of them per read.

    An `offset` below the log start (retention removed those records before the job read them)
    goes on from the log start, as a Kafka consumer with auto.offset.reset=earliest does: said
    in a warning, and `skipped(count)` told how many offsets were passed over (SHOW JOBS).

    With `committed` (the default for jobs: their output is exactly-once only over committed
    input) the rows are read committed (storage/metadata/txn_reads.py): the read stops at the
    partition's last stable offset (an open Kafka transaction; the next read asks again from
    there) and passes over aborted transactions' rows."""
    for _ in range(_GAP_WINDOWS):
        bounds = ScanBounds(start_offset=offset, end_offset=offset + max_rows)
        table, stats = await topics.scan(info, partition, bounds, segment_columns(info))
        if stats.log_start > offset:  # the scan started at the log start: retention was faster
            skipped(stats.log_start - offset)
            log.warning(
                "job source %s/%d: offsets %d to %d were removed by retention before the job read them; "
                "going on from the log start %d",
                info.name,
                partition,
                offset,
                stats.log_start - 1,
                stats.log_start,
            )
            offset = stats.log_start
            if not table.num_rows:
                continue  # the window lay wholly below the log start: read again from it
        if stats.json_errors:  # a view reads every declared column: refused as a query would be
            check_bad_values(await topics.get_topic(info.name), partition, stats, topic_schema(info).names)
        if table.num_rows:
            next_offset = int(pc.max(table.column("offset")).as_py()) + 1
            if committed is not None:
                view = await committed.stable(info.name, partition, offset, upto=next_offset)
                if not view.shows_all:
                    table = view.committed(table)
                    next_offset = max(offset, view.stable_end(next_offset))
            return to_sql_table(table, partition, info), next_offset
        if await topics.end_offset(info.name, partition) < offset + max_rows:
            break  # the log ends inside the window: nothing more to read yet
        offset += max_rows
    return to_sql_table(table, partition, info), offset


async def may_have_unread(
    host: JobHost, info: TopicInfo, partition: int, offset: int, quiet_ms: int | None, idle_timeout_ms: int
) -> bool:
    """Whether `partition` may hold records past `offset` that the last read did not return.

    - Its end offset is past `offset`: records landed after the read (a round reads its
      partitions one after another), or sit in segments the read did not reach.
    - This agent leads it and acknowledged records past `offset` that no segment holds yet:
      jobs read committed segments only (sql_source.AgentTopics.scan, which started their
      durable round).
    - Another agent leads it: the records that leader acknowledged stay out of this agent's
      reads until it rolls them into a segment, at most `roll_age_ms` after they arrived (the
      cluster's agents share their settings). Until the partition has been quiet that much
      longer than the idle timeout, its silence may only be that.
    """
    if await host.topics.end_offset(info.name, partition) > offset:
        return True
    if host.topics.leads(info.name, partition):
        # Acknowledged records past the durable end: the read started their durable round.
        return await host.topics.acked_end(info.name, partition) > offset
    lease = await host.metadata.get_lease(partition_resource(info.name, partition))
    if lease is None or lease.holder == host.config.holder or lease.expires_at_ms <= now_ms():
        return False  # nobody else leads it: nothing acknowledged is out of sight
    return quiet_ms is None or quiet_ms < idle_timeout_ms + host.config.roll_age_ms
