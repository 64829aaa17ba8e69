"""Produce: POST a batch of records to a topic (or one partition) with acks, answered with
where each partition's share landed. The batch is built column-wise (records.py) and handed to
the agent whole: every record is stored or none is (the contract's produce)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from streamhouse.api.contract import FrontEnd
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.models import Acks, PartitionOffsets, ProduceRequest, ProduceResponse
from streamhouse.rest.records import produce_batch


def produce_router(front: FrontEnd) -> APIRouter:
    router = APIRouter(prefix="/v1/topics", tags=["records"], route_class=RestRoute)

    @router.post(
        "/{topic_name}/records",
        summary="Produce a batch of records (columns: values, keys, timestamps, headers)",
        description=(
            "leader: acknowledged once in the leader's WAL; durable: once in a committed segment "
            "on the object store; none: on receipt (offsets -1). A refused batch stores nothing."
        ),
    )
    async def produce(
        topic_name: str, body: ProduceRequest, acks: Annotated[Acks, Query()] = "leader"
    ) -> ProduceResponse:
        batch = produce_batch(body.values, body.keys, body.timestamps, body.headers, body.key_type, body.value_type)
        partition = -1 if body.partition_id is None else body.partition_id
        results = await front.produce(topic_name, partition, batch, acks=acks)
        return ProduceResponse(
            topic_name=topic_name,
            record_count=batch.num_rows,
            partitions=[
                PartitionOffsets(partition_id=r.partition, base_offset=r.base_offset, record_count=r.record_count)
                for r in results
            ],
        )

    return router
