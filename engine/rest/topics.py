"""Topics: list (paged), create, describe, configs (read, alter), add partitions, delete.
Shaped after Confluent REST Proxy v3's topic resources, without its cluster segment."""

from __future__ import annotations

from fastapi import APIRouter, Response

from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import TopicDescription
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.models import (
    ConfigAlter,
    ConfigEntry,
    ConfigList,
    Partition,
    Topic,
    TopicCreate,
    TopicDetail,
    TopicList,
    TopicPatch,
)
from streamhouse.rest.pages import PageSize, PageToken, page
from streamhouse.storage import topic_config
from streamhouse.storage.errors import InvalidInputError, PartitionCountError
from streamhouse.storage.model import TopicInfo


def topic_model(info: TopicInfo) -> Topic:
    return Topic(
        topic_name=info.name,
        topic_id=info.topic_id,
        partitions_count=info.partitions,
        configs=_configs(info),
        value_schema=info.value_schema,
    )


def _configs(info: TopicInfo) -> list[ConfigEntry]:
    return [ConfigEntry(name=k, value=v) for k, v in sorted(info.config.items())]


def _detail(d: TopicDescription) -> TopicDetail:
    parts = [
        Partition(
            partition_id=p.partition,
            end_offset=p.end_offset,
            durable_end_offset=p.durable_end_offset,
            leader=p.leader,
            leader_epoch=p.leader_epoch,
            segments=p.segments,
            log_start_offset=p.log_start,
            size_bytes=p.size_bytes,
            last_compacted_ms=p.last_compacted_ms,
        )
        for p in d.partitions
    ]
    return TopicDetail(**topic_model(d.info).model_dump(), partitions=parts)


def topics_router(front: FrontEnd) -> APIRouter:
    router = APIRouter(prefix="/v1/topics", tags=["topics"], route_class=RestRoute)

    @router.get("", summary="List topics, by name, one page at a time")
    async def list_topics(page_token: PageToken = None, page_size: PageSize = 100) -> TopicList:
        topics, token = page(await front.list_topics(), lambda t: t.name, page_token, page_size)
        return TopicList(data=[topic_model(t) for t in topics], next_page_token=token)

    @router.post("", status_code=201, summary="Create a topic")
    async def create_topic(body: TopicCreate) -> Topic:
        where = f"create topic {body.topic_name}"
        if len({c.name for c in body.configs}) != len(body.configs):
            raise InvalidInputError(f"{where}: a config name appears twice")
        config = topic_config.create_config({c.name: c.value for c in body.configs}, where)
        info = await front.create_topic(body.topic_name, body.partitions_count, config, body.value_schema)
        return topic_model(info)

    @router.get("/{topic_name}", summary="Describe a topic: settings and each partition's offsets and leader")
    async def describe_topic(topic_name: str) -> TopicDetail:
        return _detail(await front.describe_topic(topic_name))

    @router.patch("/{topic_name}", summary="Add partitions: partitions_count is the new total")
    async def patch_topic(topic_name: str, body: TopicPatch) -> TopicDetail:
        info = await front.topic(topic_name)
        add = body.partitions_count - info.partitions
        if add <= 0:
            raise PartitionCountError(
                f"{topic_name} has {info.partitions} partitions; partitions_count must be more "
                f"(partitions can be added, never removed), not {body.partitions_count}"
            )
        await front.alter_topic(topic_name, add_partitions=add)
        return _detail(await front.describe_topic(topic_name))

    @router.delete("/{topic_name}", status_code=204, summary="Delete a topic and its records")
    async def delete_topic(topic_name: str) -> Response:
        await front.delete_topic(topic_name)
        return Response(status_code=204)

    @router.get("/{topic_name}/configs", summary="A topic's settings")
    async def list_configs(topic_name: str) -> ConfigList:
        return ConfigList(data=_configs(await front.topic(topic_name)))

    @router.post(
        "/{topic_name}/configs:alter",
        summary="Set or reset settings, all of the change or none of it (DELETE resets to the default)",
    )
    async def alter_configs(topic_name: str, body: ConfigAlter) -> ConfigList:
        set_config: dict[str, str] = {}
        reset: list[str] = []
        for change in body.data:
            if change.operation == "DELETE":
                reset.append(change.name)
            elif change.value is None:
                raise InvalidInputError(f"alter {topic_name}: SET {change.name} needs a value")
            else:
                set_config[change.name] = change.value
        info = await front.alter_topic(topic_name, set_config or None, reset or None)
        return ConfigList(data=_configs(info))

    return router
