"""Consumer groups: list (paged), describe with lag, commit, reset, delete. The offsets are
the ones every face shares (gRPC, Kafka, the SDK): a group committed over REST is the same
group a Kafka consumer joins."""

from __future__ import annotations

from fastapi import APIRouter, Response

from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import GroupDescription
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.models import GroupDetail, GroupList, GroupSummary, Lag, OffsetCommit, OffsetReset
from streamhouse.rest.pages import PageSize, PageToken, page
from streamhouse.storage.errors import InvalidInputError, PartitionNotFoundError


def _detail(d: GroupDescription) -> GroupDetail:
    return GroupDetail(
        group_id=d.group,
        total_lag=d.total_lag,
        offsets=[
            Lag(
                topic_name=o.topic,
                partition_id=o.partition,
                committed_offset=o.committed_offset,
                end_offset=o.end_offset,
                lag=o.lag,
            )
            for o in d.offsets
        ],
    )


def groups_router(front: FrontEnd) -> APIRouter:
    router = APIRouter(prefix="/v1/consumer-groups", tags=["consumer groups"], route_class=RestRoute)

    @router.get("", summary="List consumer groups (those with committed offsets), one page at a time")
    async def list_groups(page_token: PageToken = None, page_size: PageSize = 100) -> GroupList:
        groups, token = page(await front.list_groups(), lambda g: g, page_token, page_size)
        return GroupList(data=[GroupSummary(group_id=g) for g in groups], next_page_token=token)

    @router.get("/{group_id}", summary="A group's committed offsets and lag per partition")
    async def describe_group(group_id: str) -> GroupDetail:
        return _detail(await front.describe_group(group_id))

    @router.delete("/{group_id}", status_code=204, summary="Forget a group's committed offsets")
    async def delete_group(group_id: str) -> Response:
        await front.describe_group(group_id)  # an unknown group is a 404, as describe says
        await front.delete_group(group_id)
        return Response(status_code=204)

    @router.post("/{group_id}/offsets", summary="Commit the next offset to read per partition")
    async def commit(group_id: str, body: OffsetCommit) -> GroupDetail:
        offsets = {p.partition_id: p.offset for p in body.partitions}
        if len(offsets) != len(body.partitions):
            raise InvalidInputError(f"commit {group_id}: a partition appears twice")
        await front.commit_offsets(group_id, body.topic_name, offsets)
        return _detail(await front.describe_group(group_id))

    @router.post(
        "/{group_id}/offsets:reset",
        summary="Move a group's offsets on a topic to earliest, latest, an offset or a time",
    )
    async def reset(group_id: str, body: OffsetReset) -> GroupDetail:
        topic = body.topic_name
        info = await front.topic(topic)
        partitions = sorted(set(body.partition_ids)) if body.partition_ids is not None else range(info.partitions)
        for p in partitions:
            if not 0 <= p < info.partitions:
                raise PartitionNotFoundError(topic, p, info.partitions)
        if body.to == "offset" and body.offset is None:
            raise InvalidInputError("to=offset needs offset")
        if body.to == "timestamp" and body.timestamp_ms is None:
            raise InvalidInputError("to=timestamp needs timestamp_ms")
        target: dict[int, int] = {}
        for p in partitions:
            end = await front.end_offset(topic, p)
            if body.to == "earliest":
                target[p] = await front.earliest_offset(topic, p)
            elif body.to == "latest":
                target[p] = end
            elif body.to == "offset":
                assert body.offset is not None
                target[p] = max(min(body.offset, end), await front.earliest_offset(topic, p))  # Kafka clamps
            else:
                assert body.timestamp_ms is not None
                found = (await front.offset_for_time(topic, p, body.timestamp_ms)).offset
                target[p] = end if found < 0 else found
        if target:
            await front.commit_offsets(group_id, topic, target)
        return _detail(await front.describe_group(group_id))

    return router
