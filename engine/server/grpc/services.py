"""The gRPC servicers: thin adapters from protobuf to the front-end contract (engine/api/contract.py,
FrontEnd; AgentService implements it). Every StreamHouseError becomes the status the contract's
error table names (engine/rpc/status.py); nothing else is decided here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from grpc import aio

from streamhouse.api.contract import FrontEnd
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.rpc import convert
from streamhouse.rpc.status import status_of
from streamhouse.storage import topic_config
from streamhouse.storage.errors import InvalidInputError, StreamHouseError
from streamhouse.storage.metadata.isolation import READ_COMMITTED, READ_UNCOMMITTED, reading

log = logging.getLogger(__name__)
T = TypeVar("T")
Context = aio.ServicerContext[Any, Any]
# A Subscribe stream re-polls at least this often, so it notices a cancelled client.
_SUBSCRIBE_WAIT_MS = 1_000


async def _abort(context: Context, exc: StreamHouseError) -> NoReturn:
    code, trailers = status_of(exc)
    await context.abort(code, str(exc), trailers)
    raise AssertionError("context.abort returns only by raising")


async def _call(context: Context, work: Awaitable[T]) -> T:
    try:
        return await work
    except StreamHouseError as exc:
        await _abort(context, exc)


class ProduceService(pbg.ProduceServicer):
    def __init__(self, front: FrontEnd) -> None:
        self.front = front

    async def _produce(
        self, request: pb.ProduceRequest, appended: Callable[[], None] | None = None
    ) -> pb.ProduceResponse:
        acks = convert.ACKS_FROM_PB.get(request.acks)
        if acks is None:
            raise InvalidInputError(f"unknown acks value {request.acks}")
        batch = convert.request_batch(request)
        payload = request.batch if request.WhichOneof("payload") == "batch" else None
        results = await self.front.produce(
            request.topic,
            request.partition,
            batch,
            acks,  # type: ignore[arg-type]
            payload,
            appended,
        )
        first = results[0] if results else None
        return pb.ProduceResponse(
            topic=request.topic,
            partition=first.partition if first else request.partition,
            base_offset=first.base_offset if first else -1,
            record_count=sum(r.record_count for r in results),
            request_id=request.request_id,
            appends=[
                pb.PartitionAppend(partition=r.partition, base_offset=r.base_offset, record_count=r.record_count)
                for r in results
            ],
        )

    async def Produce(self, request: pb.ProduceRequest, context: Context) -> pb.ProduceResponse:
        return await _call(context, self._produce(request))

    async def ProduceStream(
        self, request_iterator: AsyncIterator[pb.ProduceRequest], context: Context
    ) -> AsyncIterator[pb.ProduceResponse]:
        """Pipelined: each request is appended before the next is read, so appends keep the
        stream's order, while acknowledgements (a durable roll, a lease check) overlap and are
        answered as they complete. The first failure ends the stream with its status;
        responses already sent stand."""
        done: asyncio.Queue[pb.ProduceResponse | StreamHouseError | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def one(request: pb.ProduceRequest, appended: asyncio.Event) -> None:
            try:
                await done.put(await self._produce(request, appended.set))
            except StreamHouseError as exc:
                await done.put(exc)
            finally:
                appended.set()

        async def pump() -> None:
            async for request in request_iterator:
                appended = asyncio.Event()
                task = asyncio.create_task(one(request, appended))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await appended.wait()
            if pending:
                await asyncio.gather(*list(pending))
            await done.put(None)

        reader = asyncio.create_task(pump())
        try:
            while (item := await done.get()) is not None:
                if isinstance(item, StreamHouseError):
                    await _abort(context, item)
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


class FetchService(pbg.FetchServicer):
    def __init__(self, front: FrontEnd) -> None:
        self.front = front

    async def _fetch(self, request: pb.FetchRequest, max_wait_ms: int) -> pb.FetchResponse:
        uncommitted = request.isolation_level == pb.FetchRequest.READ_UNCOMMITTED
        with reading(READ_UNCOMMITTED if uncommitted else READ_COMMITTED):  # (api/committed_front.py)
            result = await self.front.fetch(
                request.topic,
                request.partition,
                request.offset,
                max_records=request.max_records,
                max_bytes=request.max_bytes,
                max_wait_ms=max_wait_ms,
                min_bytes=request.min_bytes,
            )
        return convert.fetch_to_pb(result, request.format, compress=request.compress)

    async def Fetch(self, request: pb.FetchRequest, context: Context) -> pb.FetchResponse:
        return await _call(context, self._fetch(request, request.max_wait_ms))

    async def Subscribe(self, request: pb.FetchRequest, context: Context) -> AsyncIterator[pb.FetchResponse]:
        offset = request.offset
        wait = request.max_wait_ms if request.max_wait_ms > 0 else _SUBSCRIBE_WAIT_MS
        while True:
            step = pb.FetchRequest()
            step.CopyFrom(request)
            step.offset = offset
            response = await _call(context, self._fetch(step, wait))
            if response.record_count:
                offset = response.next_offset
                yield response
            elif response.next_offset > offset:  # only aborted records there (read committed)
                offset = response.next_offset


class AdminService(pbg.AdminServicer):
    def __init__(self, front: FrontEnd) -> None:
        self.front = front

    async def CreateTopic(self, request: pb.CreateTopicRequest, context: Context) -> pb.TopicDescription:
        try:  # the SDK checks too; any other gRPC client is held to the same setting registry
            config = topic_config.create_config(dict(request.config), f"CreateTopic {request.name}")
        except StreamHouseError as exc:
            await _abort(context, exc)
        info = await _call(
            context,
            self.front.create_topic(request.name, request.partitions, config, request.value_schema or None),
        )
        return convert.topic_to_pb(info)

    async def ListTopics(self, request: pb.ListTopicsRequest, context: Context) -> pb.ListTopicsResponse:
        topics = await _call(context, self.front.list_topics())
        return pb.ListTopicsResponse(topics=[convert.topic_to_pb(t) for t in topics])

    async def DescribeTopic(self, request: pb.DescribeTopicRequest, context: Context) -> pb.TopicDescription:
        d = await _call(context, self.front.describe_topic(request.name))
        return convert.topic_to_pb(d.info, d.partitions)

    async def DeleteTopic(self, request: pb.DeleteTopicRequest, context: Context) -> pb.DeleteTopicResponse:
        await _call(context, self.front.delete_topic(request.name))
        return pb.DeleteTopicResponse()

    async def AlterTopic(self, request: pb.AlterTopicRequest, context: Context) -> pb.TopicDescription:
        change = self.front.alter_topic(
            request.name, dict(request.set_config), list(request.reset_config), request.add_partitions or None
        )
        return convert.topic_to_pb(await _call(context, change))


class GroupService(pbg.ConsumerGroupsServicer):
    def __init__(self, front: FrontEnd) -> None:
        self.front = front

    async def CommitOffsets(self, request: pb.CommitOffsetsRequest, context: Context) -> pb.CommitOffsetsResponse:
        await _call(context, self.front.commit_offsets(request.group, request.topic, dict(request.offsets)))
        return pb.CommitOffsetsResponse()

    async def FetchOffsets(self, request: pb.FetchOffsetsRequest, context: Context) -> pb.FetchOffsetsResponse:
        offsets = await _call(context, self.front.fetch_offsets(request.group, request.topic))
        return pb.FetchOffsetsResponse(offsets=[convert.offset_to_pb(o) for o in offsets])

    async def ListGroups(self, request: pb.ListGroupsRequest, context: Context) -> pb.ListGroupsResponse:
        return pb.ListGroupsResponse(groups=await _call(context, self.front.list_groups()))

    async def DescribeGroup(self, request: pb.DescribeGroupRequest, context: Context) -> pb.DescribeGroupResponse:
        d = await _call(context, self.front.describe_group(request.group))
        return pb.DescribeGroupResponse(group=d.group, offsets=[convert.offset_to_pb(o) for o in d.offsets])


class QueryService(pbg.QueryServicer):
    def __init__(self, front: FrontEnd) -> None:
        self.front = front

    async def ExecuteSql(self, request: pb.ExecuteSqlRequest, context: Context) -> AsyncIterator[pb.ArrowChunk]:
        # A client that cancels or disconnects gets this handler's task cancelled by grpc; the
        # cancellation reaches the running DataFusion stream and drops it (sql/query/run.py).
        table = await _call(context, self.front.sql(request.sql, dict(request.settings)))
        for chunk in convert.arrow_to_chunks(table):
            yield pb.ArrowChunk(ipc=chunk)


def add_services(server: aio.Server, front: FrontEnd) -> list[str]:
    """Register every StreamHouse service on `server`; returns their full names (for
    reflection and health)."""
    adders: list[tuple[Callable[[Any, aio.Server], None], Any, str]] = [
        (pbg.add_ProduceServicer_to_server, ProduceService(front), "Produce"),
        (pbg.add_FetchServicer_to_server, FetchService(front), "Fetch"),
        (pbg.add_AdminServicer_to_server, AdminService(front), "Admin"),
        (pbg.add_ConsumerGroupsServicer_to_server, GroupService(front), "ConsumerGroups"),
        (pbg.add_QueryServicer_to_server, QueryService(front), "Query"),
    ]
    names = []
    for add, servicer, name in adders:
        add(servicer, server)
        names.append(pb.DESCRIPTOR.services_by_name[name].full_name)
    return names
