"""An Avro topic with a nested record, bytes, fixed and an enum, produced by confluent-kafka's
AvroSerializer through the agent's Kafka port: the record is a ROW column SQL reads by field,
bytes are BYTES; a writer schema adding a field inside the record is refused (nothing stored)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import streamhouse
from tests.engine.registry.conftest import RegistryAgents

ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 2}},
    ],
}
V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "demo",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "address", "type": ADDRESS},
        {"name": "blob", "type": "bytes"},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "DONE"]}},
    ],
}
ADDRESS_V2 = {
    **ADDRESS,
    "fields": [*ADDRESS["fields"], {"name": "street", "type": ["null", "string"], "default": None}],
}
V2 = {**V1, "fields": [V1["fields"][0], {"name": "address", "type": ADDRESS_V2}, *V1["fields"][2:]]}


def _send(bootstrap: str, topic: str, values: list[bytes]) -> list[Any]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    errors: list[Any] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    return errors


def test_nested_avro_topic(agents: RegistryAgents) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"orders_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    ctx = SerializationContext(topic, MessageField.VALUE)
    first = AvroSerializer(registry, json.dumps(V1))
    sent = [
        {
            "id": i,
            "address": {"city": f"c{i % 3}", "code": b"%02d" % i},
            "blob": bytes([i]),
            "state": "DONE" if i % 2 else "NEW",
        }
        for i in range(10)
    ]
    framed = [first(v, ctx) for v in sent]
    with streamhouse.connect(agents.a.address) as sh:
        sh.sql(f"CREATE TOPIC {topic} WITH (format = 'avro')")  # subject: <topic>-value
        columns = sh.sql(f"SELECT * FROM {topic} LIMIT 0").schema
        assert columns.field("address").type == pa.struct([("city", pa.string()), ("code", pa.binary())])
        assert columns.field("blob").type == pa.binary() and columns.field("state").type == pa.string()
        assert _send(bootstrap, topic, [b for b in framed if b is not None]) == [None] * 10
        query = f"SELECT id, address['city'] AS city, address.code AS code, blob, state FROM {topic} ORDER BY id"
        deadline = time.monotonic() + 30
        while (rows := sh.sql(query)).num_rows < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rows.to_pylist() == [
            {
                "id": v["id"],
                "city": v["address"]["city"],
                "code": v["address"]["code"],
                "blob": v["blob"],
                "state": v["state"],
            }
            for v in sent
        ]
        per_city = sh.sql(f"SELECT address['city'] AS c, count(*) AS n FROM {topic} GROUP BY 1 ORDER BY 1").to_pylist()
        assert per_city == [{"c": "c0", "n": 4}, {"c": "c1", "n": 3}, {"c": "c2", "n": 3}]

        # A field added inside the record would retype the ROW column: refused, nothing stored.
        registry.register_schema(f"{topic}-value", _schema(V2))
        second = AvroSerializer(
            registry, json.dumps(V2), conf={"auto.register.schemas": False, "use.latest.version": True}
        )
        grown = second({**sent[0], "address": {**sent[0]["address"], "street": "x"}}, ctx)
        assert grown is not None
        errors = _send(bootstrap, topic, [grown])
        assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD
        assert sh.sql(f"SELECT count(*) AS n FROM {topic}").column("n").to_pylist() == [10]


def _schema(value: dict[str, Any]) -> Any:
    from confluent_kafka.schema_registry import Schema

    return Schema(json.dumps(value), "AVRO")
