"""Protobuf messages ↔ Arrow batches and the agent's API values. Used by the gRPC servicers
and the remote SDK transport. Plain protobuf records are the any-language path and are
converted once per request here; the SDK's fast path ships framed Arrow IPC instead."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from streamhouse.api.types import FetchResult, GroupDescription, GroupOffset, PartitionState, TopicDescription
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.storage.errors import CorruptDataError, InvalidInputError
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.records.codec import decode_batch, encode_batch
from streamhouse.storage.records.schema import Record, batch_to_records, make_batch

# Produce batches and fetch responses are Arrow IPC frames of up to tens of MiB.
MAX_MESSAGE_BYTES = 256 << 20
ACKS_FROM_PB = {pb.ACKS_LEADER: "leader", pb.ACKS_DURABLE: "durable", pb.ACKS_NONE: "none"}
ACKS_TO_PB = {v: k for k, v in ACKS_FROM_PB.items()}


def request_batch(request: pb.ProduceRequest) -> pa.RecordBatch:
    """The records of a produce request as one batch; malformed bytes → CorruptDataError."""
    kind = request.WhichOneof("payload")
    if kind == "batch":
        return decode_batch(request.batch, source=f"produce request for {request.topic}")
    if kind == "records":
        return records_to_batch(request.records.records)
    raise InvalidInputError(f"produce request for {request.topic!r} carries no records (set `records` or `batch`)")


def records_to_batch(records: Iterable[pb.Record]) -> pa.RecordBatch:
    records = list(records)
    headers = None
    if any(r.headers for r in records):
        headers = [[(h.key, h.value if h.HasField("value") else None) for h in r.headers] for r in records]
    return make_batch(
        [r.value if r.HasField("value") else None for r in records],
        keys=[r.key if r.HasField("key") else None for r in records],
        timestamps=[max(r.timestamp_ms, 0) for r in records],
        headers=headers,
    )


def table_to_records(table: pa.Table | pa.RecordBatch) -> list[pb.Record]:
    return [_record_to_pb(r) for r in batch_to_records(table)]


def _record_to_pb(r: Record) -> pb.Record:
    msg = pb.Record(timestamp_ms=r.timestamp, offset=r.offset)
    if r.key is not None:
        msg.key = r.key
    if r.value is not None:
        msg.value = r.value
    for k, v in r.headers:
        header = msg.headers.add(key=k)
        if v is not None:
            header.value = v
    return msg


def fetch_to_pb(result: FetchResult, fmt: int, *, compress: bool = False) -> pb.FetchResponse:
    response = pb.FetchResponse(
        topic=result.topic,
        partition=result.partition,
        next_offset=result.next_offset,
        end_offset=result.end_offset,
        record_count=result.records.num_rows,
    )
    if fmt == pb.FetchRequest.FORMAT_RECORDS:
        response.records.records.extend(table_to_records(result.records))
    else:
        response.batch = encode_batch(result.records, compress=compress)
    return response


def fetch_from_pb(response: pb.FetchResponse) -> FetchResult:
    if response.WhichOneof("payload") == "records":
        table = pa.Table.from_batches([records_to_batch(response.records.records)])
        offsets = pa.array([r.offset for r in response.records.records], pa.int64())
        table = table.set_column(0, "offset", offsets)
    else:
        table = pa.Table.from_batches([decode_batch(response.batch, source=f"fetch of {response.topic}")])
    return FetchResult(response.topic, response.partition, table, response.next_offset, response.end_offset)


def topic_to_pb(info: TopicInfo, partitions: Iterable[PartitionState] = ()) -> pb.TopicDescription:
    return pb.TopicDescription(
        name=info.name,
        topic_id=info.topic_id,
        partitions=info.partitions,
        config=dict(info.config),
        value_schema=info.value_schema or "",
        partition_info=[
            pb.PartitionDescription(
                partition=p.partition,
                durable_end_offset=p.durable_end_offset,
                end_offset=p.end_offset,
                leader=p.leader,
                leader_epoch=p.leader_epoch,
                segments=p.segments,
                log_start_offset=p.log_start,
                size_bytes=p.size_bytes,
                last_compacted_ms=-1 if p.last_compacted_ms is None else p.last_compacted_ms,
            )
            for p in partitions
        ],
    )


def topic_from_pb(msg: pb.TopicDescription) -> TopicDescription:
    info = TopicInfo(msg.name, msg.topic_id, msg.partitions, dict(msg.config), msg.value_schema or None)
    states = tuple(
        PartitionState(
            p.partition,
            p.durable_end_offset,
            p.end_offset,
            p.leader,
            p.leader_epoch,
            p.segments,
            p.log_start_offset,
            p.size_bytes,
            p.last_compacted_ms if p.last_compacted_ms >= 0 else None,
        )
        for p in msg.partition_info
    )
    return TopicDescription(info, states)


def offset_to_pb(o: GroupOffset) -> pb.PartitionOffset:
    return pb.PartitionOffset(
        topic=o.topic, partition=o.partition, committed_offset=o.committed_offset, end_offset=o.end_offset, lag=o.lag
    )


def offset_from_pb(o: pb.PartitionOffset) -> GroupOffset:
    return GroupOffset(o.topic, o.partition, o.committed_offset, o.end_offset, o.lag)


def group_from_pb(msg: pb.DescribeGroupResponse) -> GroupDescription:
    return GroupDescription(msg.group, tuple(offset_from_pb(o) for o in msg.offsets))


# ExecuteSql answers one Arrow IPC stream cut into chunks of this size (gRPC messages stay small).
SQL_CHUNK_BYTES = 1 << 20


def arrow_to_chunks(table: pa.Table) -> list[bytes]:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    return [data[i : i + SQL_CHUNK_BYTES] for i in range(0, len(data), SQL_CHUNK_BYTES)] or [data]


def arrow_from_chunks(chunks: list[bytes]) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(b"".join(chunks))).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDataError(f"bad Arrow IPC stream in an ExecuteSql answer: {exc}", source="ExecuteSql") from None
