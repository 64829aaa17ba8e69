"""REST produce by schema subject (issue 13): `value_type`/`key_type` AVRO with a subject,
version or id (Confluent REST Proxy v3's names) against real agents on PostgreSQL + SeaweedFS.
The agent serialises the JSON data with the registered schema in Confluent's wire format, so an
Avro topic's typed columns fill (SQL) and confluent-kafka's AvroDeserializer reads the records
back through the Kafka port; a bad subject, version, id or record is a typed JSON error and
nothing is stored."""

from __future__ import annotations

import json
import struct
import time
import uuid
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.engine.registry.conftest import RegistryAgents
from tests.engine.rest.conftest import Rest, assert_error

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": ["null", "double"], "default": None},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID"]}},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}]}
KEY = {"type": "record", "name": "OrderKey", "namespace": "shop", "fields": [{"name": "id", "type": "long"}]}


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": i, "item": f"item-{i}", "qty": i % 7, "price": None if i % 3 == 0 else i * 1.25, "state": "PAID"}
        for i in range(start, start + n)
    ]


def _read_kafka(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def _end(rest: Rest, topic: str) -> int:
    detail = rest.get(f"/v1/topics/{topic}").json()
    return sum(p["end_offset"] for p in detail["partitions"])


def test_avro_values_and_keys_by_subject(agents: RegistryAgents) -> None:
    rest = Rest(f"http://127.0.0.1:{agents.a.http_port}")
    registry = SchemaRegistryClient({"url": agents.url_a})
    topic = f"orders_{uuid.uuid4().hex[:8]}"
    v1 = registry.register_schema(f"{topic}-value", Schema(json.dumps(V1), "AVRO"))
    key_id = registry.register_schema(f"{topic}-key", Schema(json.dumps(KEY), "AVRO"))
    created = rest.post("/v1/sql", {"statement": f"CREATE TOPIC {topic} WITH (format = 'avro', partitions = 1)"})
    assert created.status == 200, created.body
    v2 = registry.register_schema(f"{topic}-value", Schema(json.dumps(V2), "AVRO"))

    # Version 1 by number, then the latest (v2) by default; keys by the <topic>-key subject.
    first = rest.post(
        f"/v1/topics/{topic}/records?acks=durable",
        {
            "value_type": "AVRO",
            "value_schema": {"schema_version": 1},
            "values": _rows(300),
            "key_type": "AVRO",
            "keys": [{"id": i} for i in range(300)],
        },
    )
    assert first.status == 200, first.body
    body = first.json()
    assert body["value_schema"] == {"subject": f"{topic}-value", "schema_id": v1, "schema_version": 1}
    assert body["key_schema"] == {"subject": f"{topic}-key", "schema_id": key_id, "schema_version": 1}
    later = [dict(r, note="v2") for r in _rows(5, start=300)]
    second = rest.post(f"/v1/topics/{topic}/records", {"value_type": "AVRO", "values": [*later, None]})
    assert second.status == 200, second.body
    assert second.json()["value_schema"]["schema_id"] == v2
    by_id = rest.post(
        f"/v1/topics/{topic}/records",
        {"value_type": "AVRO", "value_schema": {"schema_id": v1}, "values": _rows(1, start=400)},
    )
    assert by_id.status == 200 and by_id.json()["value_schema"]["schema_version"] == 1, by_id.body

    # Stored as a Kafka serializer stores it: framed with the id, read back by AvroDeserializer.
    records = _read_kafka(f"127.0.0.1:{agents.kafka_port}", topic, 307)
    assert len(records) == 307
    assert {struct.unpack(">bI", v[:5]) for _, v in records if v} == {(0, v1), (0, v2)}
    values = AvroDeserializer(SchemaRegistryClient({"url": agents.url_b}))
    keys = AvroDeserializer(SchemaRegistryClient({"url": agents.url_b}))
    got = [values(v, SerializationContext(topic, MessageField.VALUE)) for _, v in records]
    assert got == [*_rows(300), *later, None, *_rows(1, start=400)]
    assert [keys(k, SerializationContext(topic, MessageField.KEY)) for k, _ in records[:300]] == [
        {"id": i} for i in range(300)
    ]

    # The Avro topic's typed columns filled (the v2 field grew the columns).
    table = rest.post(
        "/v1/sql", {"statement": f"SELECT id, item, qty, price, state, note FROM {topic} WHERE id IN (3, 4, 301)"}
    )
    assert table.status == 200, table.body
    assert sorted(table.json()["rows"], key=lambda r: r["id"]) == [
        {"id": 3, "item": "item-3", "qty": 3, "price": None, "state": "PAID", "note": None},
        {"id": 4, "item": "item-4", "qty": 4, "price": 5.0, "state": "PAID", "note": None},
        {"id": 301, "item": "item-301", "qty": 0, "price": 376.25, "state": "PAID", "note": "v2"},
    ]


def test_avro_errors_are_typed_and_store_nothing(agents: RegistryAgents) -> None:
    rest = Rest(f"http://127.0.0.1:{agents.b.http_port}")
    registry = SchemaRegistryClient({"url": agents.url_b})
    topic = f"strict_{uuid.uuid4().hex[:8]}"
    schema_id = registry.register_schema(f"{topic}-value", Schema(json.dumps(V1), "AVRO"))
    other = registry.register_schema(f"other-{topic}", Schema(json.dumps(KEY), "AVRO"))
    json_schema = registry.register_schema(f"js-{topic}", Schema('{"type": "object"}', "JSON"))
    assert rest.post("/v1/topics", {"topic_name": topic, "partitions_count": 2}).status == 201
    path = f"/v1/topics/{topic}/records"

    def produce(values: list[Any], **fields: Any) -> Any:
        return rest.post(path, {"value_type": "AVRO", "values": values, **fields})

    bad_rows = _rows(10)
    bad_rows[7] = dict(bad_rows[7], qty="seven")
    body = assert_error(produce(bad_rows), 400, "avro_data")
    assert "values[7]" in body["message"] and "'qty'" in body["message"], body
    bad_rows[7] = dict(_rows(1)[0], state="LOST")
    assert "values[7] field 'state'" in assert_error(produce(bad_rows), 400, "avro_data")["message"]
    missing = _rows(3)
    del missing[2]["item"]
    assert "values[2] field 'item'" in assert_error(produce(missing), 400, "avro_data")["message"]
    assert (
        "values[1] field 'extra'"
        in assert_error(produce([_rows(1)[0], {**_rows(1)[0], "extra": 1}]), 400, "avro_data")["message"]
    )
    assert (
        "values[0] field 'qty'" in assert_error(produce([{**_rows(1)[0], "qty": 2**40}]), 400, "avro_data")["message"]
    )

    assert_error(produce(_rows(1), value_schema={"subject": f"nope-{topic}"}), 404, "subject_not_found")
    assert_error(produce(_rows(1), value_schema={"schema_version": 9}), 404, "version_not_found")
    assert_error(produce(_rows(1), value_schema={"schema_id": 2**31 - 1}), 404, "schema_not_found")
    assert_error(produce(_rows(1), value_schema={"schema_id": other}), 404, "schema_not_found")  # not under t-value
    assert_error(produce(_rows(1), value_schema={"schema_id": schema_id, "schema_version": 1}), 400, "invalid_input")
    assert_error(produce(_rows(1), value_schema={"subject": f"js-{topic}"}), 400, "invalid_input")
    assert_error(produce(_rows(1), value_schema={"subject_name_strategy": "RECORD_NAME"}), 400, "invalid_input")
    assert_error(rest.post(path, {"values": [1], "value_schema": {"schema_id": schema_id}}), 400, "invalid_input")
    assert json_schema > 0
    assert _end(rest, topic) == 0  # every refusal stored nothing

    # RECORD_NAME with an id: the subject is the record's full name, where it must be registered.
    by_record = produce(_rows(2), value_schema={"subject_name_strategy": "RECORD_NAME", "schema_id": schema_id})
    assert_error(by_record, 404, "schema_not_found")
    registry.register_schema("shop.Order", Schema(json.dumps(V1), "AVRO"))
    by_record = produce(_rows(2), value_schema={"subject_name_strategy": "RECORD_NAME", "schema_id": schema_id})
    assert by_record.status == 200 and by_record.json()["value_schema"]["subject"] == "shop.Order", by_record.body
    assert _end(rest, topic) == 2


def test_an_avro_topic_created_with_a_subject_takes_it_by_default(agents: RegistryAgents) -> None:
    rest = Rest(f"http://127.0.0.1:{agents.a.http_port}")
    registry = SchemaRegistryClient({"url": agents.url_a})
    topic = f"custom_{uuid.uuid4().hex[:8]}"
    subject = f"orders-{topic}"  # not <topic>-value
    schema_id = registry.register_schema(subject, Schema(json.dumps(V1), "AVRO"))
    statement = f"CREATE TOPIC {topic} WITH (format = 'avro', subject = '{subject}')"
    assert rest.post("/v1/sql", {"statement": statement}).status == 200
    produced = rest.post(f"/v1/topics/{topic}/records", {"value_type": "AVRO", "values": _rows(3)})
    assert produced.status == 200, produced.body
    assert produced.json()["value_schema"] == {"subject": subject, "schema_id": schema_id, "schema_version": 1}
    # Naming the strategy asks for <topic>-value, which has no schema.
    by_strategy = {"value_type": "AVRO", "value_schema": {"subject_name_strategy": "TOPIC_NAME"}, "values": _rows(1)}
    assert_error(rest.post(f"/v1/topics/{topic}/records", by_strategy), 404, "subject_not_found")
    rows = rest.post("/v1/sql", {"statement": f"SELECT id, item FROM {topic} ORDER BY id"}).json()["rows"]
    assert rows == [{"id": i, "item": f"item-{i}"} for i in range(3)]
