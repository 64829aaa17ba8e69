"""A topic as a table of its latest value per key (issue 14 item 2): `SELECT … FROM latest.<topic>`.

A compacted topic is a changelog: each record upserts its key, a tombstone (null value) deletes
it. `latest.<topic>` (the system schema `latest`, like Flink's upsert-kafka table or a
materialised DuckDB view) is that changelog applied: per partition and key the record with the
highest offset, keys whose latest record is a tombstone left out, records without a key left
out, with the topic's own columns (system columns, then declared columns or `_value`).

It reads every segment and the leaders' unflushed buffers (the scan every query uses), so it is
exact whether or not the compactor has run yet: compaction only makes it cheaper. The choice
per key is the compaction kernel's (storage/segment/compact.py, with tombstones kept, then
hidden), so the table and a compacted log can never disagree. Keys are per partition, as in
Kafka: a key written to two partitions (partitions added later) has a row in each.

Any topic may be read this way, compacted or not. Predicates apply to the latest rows (no
pruning by offset or time underneath, which would change which record is the latest); the
window functions take topics, not `latest.` tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.catalog import TopicSource, check_bad_values, segment_columns, to_sql_table, topic_schema
from streamhouse.storage.metadata.txn_reads import CommittedReads
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.partition.scan import ScanBounds
from streamhouse.storage.segment.compact import keep_offsets, surviving_offsets

SCHEMA = "latest"
_PREFIX = "latest$"  # the name the table is registered under (no topic name can hold '$')
_FOREVER = 2**62  # tombstones never expire here: they must hide their key


def latest_tables(tree: exp.Expr, resolve: Callable[[str], TopicInfo | None]) -> dict[str, TopicInfo]:
    """Point every `latest.<topic>` of `tree` at its registered table (in place; an unaliased
    one keeps the topic's name as alias, so `kv._key` still resolves); registered name → topic."""
    found: dict[str, TopicInfo] = {}
    for table in list(tree.find_all(exp.Table)):
        if table.db.lower() != SCHEMA or table.args.get("catalog"):
            continue
        info = resolve(table.name)
        if info is None:
            raise SqlError(
                f"unknown topic {table.name!r} in {SCHEMA}.{table.name}; SHOW TOPICS lists them", name=table.name
            )
        name = _PREFIX + info.name
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
        table.set("db", None)
        table.set("this", exp.to_identifier(name, quoted=True))
        found[name] = info
    return found


def is_latest(name: str) -> bool:
    return name.startswith(_PREFIX)


async def scan_latest(source: TopicSource, info: TopicInfo, committed: CommittedReads | None = None) -> pa.Table:
    """The latest row per key of every partition, as the topic's SQL table. With `committed`, of
    the committed rows only (storage/metadata/txn_reads.py): an aborted or still open Kafka
    transaction's row neither shows nor hides its key's committed one."""
    parts = await asyncio.gather(*(_partition(source, info, p, committed) for p in range(info.partitions)))
    return pa.concat_tables(parts) if parts else topic_schema(info).empty_table()


async def _partition(
    source: TopicSource, info: TopicInfo, partition: int, committed: CommittedReads | None
) -> pa.Table:
    columns = segment_columns(info)
    read = columns if "value" in columns else [*columns, "value"]  # a tombstone is a null value
    table, stats = await source.scan(info, partition, ScanBounds(), read, tail=True)  # ad-hoc SQL: the tail too
    if committed is not None:
        table = (
            (await committed.stable(info.name, partition, 0, fresh=True))
            .with_tail(stats.tail_producers)
            .committed(table)
        )
    check_bad_values(info, partition, stats, topic_schema(info).names)
    tombstone = pc.is_null(table.column("value"))
    kept, _ = surviving_offsets(
        table.column("offset"), table.column("key"), tombstone, now_ms=0, delete_retention_ms=_FOREVER
    )
    latest = keep_offsets(table, kept)
    latest = latest.filter(pc.is_valid(latest.column("value")))  # a tombstone deletes its key
    return to_sql_table(latest.select(columns), partition, info)


__all__ = ["SCHEMA", "is_latest", "latest_tables", "scan_latest"]
