"""Produce: POST a batch of records to a topic (or one partition) with acks, answered with
where each partition's share landed. The batch is built column-wise (records.py; AVRO, PROTOBUF and
JSONSCHEMA keys and values serialised with a registered schema, avro_produce.py) and handed to the agent whole:
every record is stored or none is (the contract's produce). A partition led by another agent
is produced there (forward.py), so a client can send to any agent of the cluster."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from streamhouse.api.contract import FrontEnd
from streamhouse.api.tls import ClientTls
from streamhouse.registry.service import RegistryService
from streamhouse.rest.avro_produce import SCHEMA_TYPES, schema_column
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.forward import Forwarder
from streamhouse.rest.models import (
    Acks,
    PartitionOffsets,
    ProduceRequest,
    ProduceResponse,
    ProduceType,
    SchemaSelector,
    SchemaUsed,
)
from streamhouse.rest.records import produce_batch
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.values.schema import parse_value_schema


def produce_router(
    front: FrontEnd, registry: RegistryService | None = None, peer_tls: ClientTls | None = None
) -> APIRouter:
    router = APIRouter(prefix="/v1/topics", tags=["records"], route_class=RestRoute)
    forwarder = Forwarder(front, peer_tls)

    async def encoded(
        topic: str, items: Any, kind: ProduceType, selector: SchemaSelector | None, role: str
    ) -> tuple[Any, SchemaUsed | None]:
        if kind not in SCHEMA_TYPES:
            if selector is not None:
                raise InvalidInputError(
                    f"{role}_schema is only for {role}_type AVRO, PROTOBUF or JSONSCHEMA, not {kind}"
                )
            return items, None
        if registry is None:
            raise InvalidInputError(f"{role}_type {kind} needs the agent's schema registry, which is not served here")
        # A topic created with a subject (CREATE TOPIC … WITH (format, subject)) names its values' subject.
        declared = parse_value_schema((await front.topic(topic)).value_schema) if role == "value" else None
        done = await schema_column(registry, topic, items, selector, role, declared.subject if declared else None, kind)
        return done.column, done.used

    @router.post(
        "/{topic_name}/records",
        summary="Produce a batch of records (columns: values, keys, timestamps, headers)",
        response_model_exclude_none=True,  # key_schema / value_schema only when a schema type was asked for
        description=(
            "leader: acknowledged once in the leader's WAL; durable: once in a committed segment "
            "on the object store; none: on receipt (offsets -1). A refused batch stores nothing. "
            "key_type/value_type AVRO, PROTOBUF or JSONSCHEMA: the JSON data is checked and serialised with "
            "the schema (of that type) key_schema / "
            "value_schema selects (subject, subject_name_strategy, schema_id or schema_version; "
            "default the latest of <topic>-key / <topic>-value) in the schema registry's wire format. "
            "A partition another agent leads is produced there (over gRPC), so any agent takes any produce."
        ),
    )
    async def produce(
        topic_name: str, body: ProduceRequest, acks: Annotated[Acks, Query()] = "leader"
    ) -> ProduceResponse:
        if body.keys is not None and len(body.keys) != len(body.values):
            raise InvalidInputError(f"keys has {len(body.keys)} entries for {len(body.values)} values")
        values, value_used = await encoded(topic_name, body.values, body.value_type, body.value_schema, "value")
        keys, key_used = (None, None)
        if body.keys is not None:
            keys, key_used = await encoded(topic_name, body.keys, body.key_type, body.key_schema, "key")
        elif body.key_schema is not None:
            raise InvalidInputError("key_schema needs keys")
        batch = produce_batch(values, keys, body.timestamps, body.headers, body.key_type, body.value_type)
        partition = -1 if body.partition_id is None else body.partition_id
        results = await forwarder.produce(topic_name, partition, batch, acks)
        return ProduceResponse(
            topic_name=topic_name,
            record_count=batch.num_rows,
            partitions=[
                PartitionOffsets(partition_id=r.partition, base_offset=r.base_offset, record_count=r.record_count)
                for r in results
            ],
            key_schema=key_used,
            value_schema=value_used,
        )

    return router
