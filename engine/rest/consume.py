"""Consume: a partition by offset range (long-poll), or a topic through a consumer group
(its committed offsets, optionally committing what it returns). Answers are built as JSON
text column-wise (records.py) and sent as one body; a schema-registry topic's values come back
decoded to JSON by default (typed_consume.py), value_type=BINARY gives the stored bytes.

Group reads are stateless (no consumer instances to create and keep alive as in Confluent's
v2 API): each call reads from the group's committed offsets, or from `reset` where it has
none, and says which offsets to commit next. `commit=true` commits them before answering:
at-most-once, for clients that accept losing a batch in flight; the default leaves the
commit to the client (POST .../offsets) after it has processed the records: at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Annotated, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Query, Response

from streamhouse.api.contract import FrontEnd
from streamhouse.api.json_rows import single_chunk
from streamhouse.api.types import FetchResult
from streamhouse.registry.service import RegistryService
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.models import (
    MAX_FETCH_BYTES,
    MAX_FETCH_RECORDS,
    MAX_WAIT_MS,
    DataType,
    GroupRecords,
    PartitionRecords,
)
from streamhouse.rest.records import join, record_texts
from streamhouse.rest.typed_consume import ConsumeValueType, decoded_json, value_kind
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.isolation import reading
from streamhouse.storage.records.schema import RECORD_SCHEMA

MaxRecords = Annotated[int, Query(ge=1, le=MAX_FETCH_RECORDS)]
MaxBytes = Annotated[int, Query(ge=1, le=MAX_FETCH_BYTES)]
TimeoutMs = Annotated[int, Query(ge=0, le=MAX_WAIT_MS, description="long-poll: wait this long for a record")]
_RESET = "where a partition with no commit starts"
# How long a read waits for acknowledged records to reach a committed segment (one durable round).
_ACKED_WAIT_MS = 10_000
Isolation = Annotated[
    Literal["read_committed", "read_uncommitted"],
    Query(
        description=(
            "read_committed (default): as a Kafka read_committed consumer, nothing at or past a partition's "
            "last stable offset (an open transaction) and no aborted transaction's records; "
            "read_uncommitted: every record (debugging)"
        )
    ),
]
KeyType = Annotated[DataType, Query()]
ValueType = Annotated[
    ConsumeValueType | None,
    Query(
        description=(
            "default: a schema-registry topic's values decoded to JSON by its format (AVRO, PROTOBUF, "
            "JSONSCHEMA), other topics' as JSON; BINARY: the stored bytes (base64, wire format included)"
        )
    ),
]


def _json(body: str) -> Response:
    return Response(body, media_type="application/json")


async def fetch_acknowledged(
    front: FrontEnd, topic: str, partition: int, offset: int, *, max_records: int, max_bytes: int, max_wait_ms: int = 0
) -> FetchResult:
    """A fetch that includes what was acknowledged before it: fetches serve up to the high
    watermark (the durable end), so when one stops there short of the acknowledged end, the
    durable round it started is waited for (up to _ACKED_WAIT_MS) and its records follow."""
    result = await front.fetch(
        topic, partition, offset, max_records=max_records, max_bytes=max_bytes, max_wait_ms=max_wait_ms
    )
    left = max_records - result.records.num_rows
    hw = result.high_watermark
    if left <= 0 or hw is None or result.next_offset < hw or result.end_offset <= hw:
        return result  # all served, or stopped before the durable end (max_bytes, an open transaction)
    more = await front.fetch(
        topic, partition, result.next_offset, max_records=left, max_bytes=max_bytes,
        max_wait_ms=max(max_wait_ms, _ACKED_WAIT_MS),
    )  # fmt: skip
    records = pa.concat_tables([result.records, more.records])
    return dataclasses.replace(more, records=records, next_offset=max(more.next_offset, result.next_offset))


async def read_partitions(
    front: FrontEnd, topic: str, starts: dict[int, int], max_records: int, max_bytes: int, timeout_ms: int
) -> list[FetchResult]:
    """Whatever the partitions hold now (what was acknowledged included: fetch_acknowledged);
    if none holds anything, wait up to `timeout_ms` for the first that gets a record (the other
    waits are cancelled: reads change nothing)."""
    share = max(1, max_records // max(len(starts), 1))
    now = await asyncio.gather(
        *(fetch_acknowledged(front, topic, p, off, max_records=share, max_bytes=max_bytes) for p, off in starts.items())
    )
    if any(r.records.num_rows for r in now) or timeout_ms == 0 or not starts:
        return list(now)
    waits = [
        asyncio.ensure_future(
            front.fetch(topic, p, off, max_records=share, max_bytes=max_bytes, max_wait_ms=timeout_ms)
        )
        for p, off in starts.items()
    ]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return [task.result() for task in done]
    finally:
        for task in waits:
            if not task.done():
                task.cancel()
        for task in waits:
            with contextlib.suppress(BaseException):
                await task


async def records_of(
    results: list[FetchResult],
    key_type: DataType,
    value_type: ConsumeValueType | None,
    front: FrontEnd,
    registry: RegistryService | None,
    topic: str,
) -> str:
    kind, fmt, schema = await value_kind(front, topic, value_type)
    tables = [r.records for r in results if r.records.num_rows]
    if not tables:
        return ""
    partitions = pa.concat_arrays(
        [pa.repeat(pa.scalar(r.partition, pa.int32()), r.records.num_rows) for r in results if r.records.num_rows]
    )
    records = pa.concat_tables(tables)
    value_json = None
    if fmt is not None and schema is not None:
        value_json = await decoded_json(registry, single_chunk(records.column("value")), fmt, schema)
    plain = cast(DataType, kind) if value_json is None else "JSON"
    return join(record_texts(records, partitions, key_type, plain, value_json))


def consume_router(front: FrontEnd, registry: RegistryService | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["records"], route_class=RestRoute)

    @router.get(
        "/topics/{topic_name}/partitions/{partition_id}/records",
        response_model=PartitionRecords,
        summary="Read a partition from an offset (up to end_offset, exclusive), waiting up to timeout_ms",
    )
    async def consume_partition(
        topic_name: str,
        partition_id: int,
        offset: Annotated[int, Query(ge=0)] = 0,
        end_offset: Annotated[int | None, Query(ge=0, description="stop before this offset")] = None,
        max_records: MaxRecords = 1_000,
        max_bytes: MaxBytes = 1 << 20,
        timeout_ms: TimeoutMs = 0,
        key_type: KeyType = "JSON",
        value_type: ValueType = None,
        isolation: Isolation = "read_committed",
    ) -> Response:
        with reading(isolation):  # (engine/api/committed_front.py)
            return await _consume_partition(
                topic_name, partition_id, offset, end_offset, max_records, max_bytes, timeout_ms, key_type, value_type
            )

    async def _consume_partition(
        topic_name: str,
        partition_id: int,
        offset: int,
        end_offset: int | None,
        max_records: int,
        max_bytes: int,
        timeout_ms: int,
        key_type: DataType,
        value_type: ConsumeValueType | None,
    ) -> Response:
        if end_offset is not None:
            if end_offset < offset:
                raise InvalidInputError(f"end_offset {end_offset} is before offset {offset}")
            max_records = min(max_records, end_offset - offset)
        if max_records == 0:  # an empty range: nothing to read, but the offsets are still checked
            end = await front.end_offset(topic_name, partition_id)
            if offset > end:
                raise InvalidInputError(f"{topic_name}/{partition_id}: offset {offset} is past the end offset {end}")
            result = FetchResult(topic_name, partition_id, RECORD_SCHEMA.empty_table(), offset, end)
        else:
            result = await fetch_acknowledged(
                front, topic_name, partition_id, offset, max_records=max_records, max_bytes=max_bytes,
                max_wait_ms=timeout_ms,
            )  # fmt: skip
            if end_offset is not None and result.next_offset > end_offset:
                # A compacted topic has gaps (issue 14): max_records records may reach past end_offset.
                before_end = pc.less(result.records.column("offset"), pa.scalar(end_offset, pa.int64()))
                rows = result.records.filter(before_end)
                result = FetchResult(topic_name, partition_id, rows, end_offset, result.end_offset)
        texts = await records_of([result], key_type, value_type, front, registry, topic_name)
        return _json(
            f'{{"topic_name":{_quote(topic_name)},"partition_id":{partition_id},"records":[{texts}],'
            f'"next_offset":{result.next_offset},"end_offset":{result.end_offset}}}'
        )

    @router.get(
        "/consumer-groups/{group_id}/topics/{topic_name}/records",
        response_model=GroupRecords,
        summary="Read a topic from a group's committed offsets (reset where it has none)",
    )
    async def consume_group(
        group_id: str,
        topic_name: str,
        reset: Annotated[
            Literal["earliest", "latest"], Query(description="where a partition with no commit starts")
        ] = ("earliest"),
        commit: Annotated[bool, Query(description="commit next_offsets before answering (at-most-once)")] = False,
        max_records: MaxRecords = 1_000,
        max_bytes: MaxBytes = 1 << 20,
        timeout_ms: TimeoutMs = 0,
        key_type: KeyType = "JSON",
        value_type: ValueType = None,
        isolation: Isolation = "read_committed",
    ) -> Response:
        starts = await group_starts(front, group_id, topic_name, reset)
        with reading(isolation):  # (engine/api/committed_front.py)
            results = await read_partitions(front, topic_name, starts, max_records, max_bytes, timeout_ms)
        # A partition moves past what it returned, and past aborted records skipped (read committed).
        moved = {
            r.partition: r.next_offset for r in results if r.records.num_rows or r.next_offset > starts[r.partition]
        }
        if commit and moved:
            await front.commit_offsets(group_id, topic_name, moved)
        nexts = {**starts, **moved}
        next_offsets = ",".join(f'{{"partition_id":{p},"offset":{o}}}' for p, o in sorted(nexts.items()))
        texts = await records_of(results, key_type, value_type, front, registry, topic_name)
        return _json(
            f'{{"group_id":{_quote(group_id)},"topic_name":{_quote(topic_name)},"records":[{texts}],'
            f'"next_offsets":[{next_offsets}],"committed":{"true" if commit and moved else "false"}}}'
        )

    return router


async def group_starts(front: FrontEnd, group: str, topic: str, reset: str) -> dict[int, int]:
    """Where the group reads each partition next: its commit, else earliest/latest. A commit
    below the log start (retention removed those records) is reset the same way, as a Kafka
    consumer's auto.offset.reset does."""
    offsets = await front.fetch_offsets(group, topic)
    starts: dict[int, int] = {}
    for o in offsets:
        if o.committed_offset >= 0:
            starts[o.partition] = min(o.committed_offset, o.end_offset)
            if starts[o.partition] < (log_start := await front.earliest_offset(topic, o.partition)):
                starts[o.partition] = o.end_offset if reset == "latest" else log_start
        elif reset == "latest":
            starts[o.partition] = o.end_offset
        else:
            starts[o.partition] = await front.earliest_offset(topic, o.partition)
    return starts


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
