"""An Avro topic with a nested record, bytes, fixed and an enum, produced by confluent-kafka's
AvroSerializer through the agent's Kafka port: the record is a ROW column SQL reads by field,
bytes are BYTES; a writer schema adding a field inside the record widens the ROW column (older
rows read the new field as NULL). Nested evolution end to end (issue 13): ROW, ARRAY<ROW> and
MAP<…, ROW> columns widened by a v2 across flushed segments, the buffer, two partitions, both
agents and a continuous query planned before the evolution."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pyarrow as pa
from confluent_kafka import Producer
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

        # A field added inside the record widens the ROW column: v1 rows read it as NULL.
        registry.register_schema(f"{topic}-value", _schema(V2))
        second = AvroSerializer(
            registry, json.dumps(V2), conf={"auto.register.schemas": False, "use.latest.version": True}
        )
        grown = second({**sent[0], "id": 10, "address": {**sent[0]["address"], "street": "x"}}, ctx)
        assert grown is not None
        assert _send(bootstrap, topic, [grown]) == [None]
        streets = sh.sql(f"SELECT id, address['street'] AS s FROM {topic} WHERE id IN (0, 10) ORDER BY id")
        assert streets.to_pylist() == [{"id": 0, "s": None}, {"id": 10, "s": "x"}]


def _schema(value: dict[str, Any]) -> Any:
    from confluent_kafka.schema_registry import Schema

    return Schema(json.dumps(value), "AVRO")


INNER1 = {"type": "record", "name": "Stop", "fields": [{"name": "city", "type": "string"}]}
INNER2 = {**INNER1, "fields": [*INNER1["fields"], {"name": "zip", "type": ["null", "long"], "default": None}]}


def _order(inner: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Trip",
        "namespace": "demo",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "stop", "type": inner},
            {"name": "stops", "type": {"type": "array", "items": "Stop"}},
            {"name": "sites", "type": {"type": "map", "values": "Stop"}},
            {"name": "leg", "type": {"type": "record", "name": "Leg", "fields": [{"name": "stop", "type": "Stop"}]}},
        ],
    }


def _trip(i: int, zip_code: int | None = None) -> dict[str, Any]:
    stop: dict[str, Any] = {"city": f"c{i}"} if zip_code is None else {"city": f"c{i}", "zip": zip_code}
    return {"id": i, "stop": stop, "stops": [stop, stop] if i % 2 else [], "sites": {"k": stop}, "leg": {"stop": stop}}


def _until_rows(sh: Any, sql: str, count: int) -> pa.Table:
    deadline = time.monotonic() + 30
    while True:
        try:
            rows = sh.sql(sql)
        except Exception:  # another agent's topic cache still has the older columns: retry
            if time.monotonic() > deadline:
                raise
            rows = None
        if rows is not None and rows.num_rows == count:
            return rows
        assert time.monotonic() < deadline, f"{sql}: {rows}"
        time.sleep(0.2)


def test_nested_fields_added_by_v2_read_as_null_in_older_rows(agents: RegistryAgents) -> None:
    topic = f"trips_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    ctx = SerializationContext(topic, MessageField.VALUE)
    conf = {"auto.register.schemas": False, "use.latest.version": False}
    registry.register_schema(f"{topic}-value", _schema(_order(INNER1)))
    v1 = AvroSerializer(registry, json.dumps(_order(INNER1)), conf=conf)
    with streamhouse.connect(agents.a.address) as a, streamhouse.connect(agents.b.address) as b:
        a.sql(f"CREATE TOPIC {topic} WITH (format = 'avro', partitions = 2)")
        for p in (0, 1):  # v1 rows flushed to a segment on each partition
            a.produce_batch(topic, [v1(_trip(i), ctx) for i in range(p, 40, 2)], partition=p, acks="durable")
        # A continuous query planned over the v1 columns, running across the evolution.
        a.create_job(
            f"{topic}_j",
            f"SELECT id, leg['stop']['city'] AS city, cardinality(stops) AS n FROM {topic}",
            checkpoint_interval="100ms",
            start="earliest",
        )
        a.produce_batch(topic, [v1(_trip(40), ctx)], partition=0)  # buffered, decoded as v1
        registry.register_schema(f"{topic}-value", _schema(_order(INNER2)))
        v2 = AvroSerializer(registry, json.dumps(_order(INNER2)), conf=conf)
        a.produce_batch(topic, [v2(_trip(i, 1000 + i), ctx) for i in range(41, 51)], partition=1, acks="durable")
        a.produce_batch(topic, [v2(_trip(51, 1051), ctx)], partition=0)  # buffered beside the v1 row

        stop2 = pa.struct([("city", pa.string()), ("zip", pa.int64())])
        schema = a.sql(f"SELECT * FROM {topic} LIMIT 0").schema
        assert schema.field("stop").type == stop2
        assert schema.field("stops").type == pa.list_(stop2)
        assert schema.field("sites").type == pa.map_(pa.string(), stop2)
        assert schema.field("leg").type == pa.struct([("stop", stop2)])  # ROW in ROW
        rows = a.sql(f"SELECT id, stop, stops, sites, leg FROM {topic} ORDER BY id").to_pylist()
        assert len(rows) == 52
        for row in rows:
            i = row["id"]
            want = {"city": f"c{i}", "zip": 1000 + i if i > 40 else None}
            assert row["stop"] == want
            assert row["stops"] == ([want, want] if i % 2 else [])
            assert row["sites"] == [("k", want)]
            assert row["leg"] == {"stop": want}
        nulls = a.sql(f"SELECT count(*) AS n FROM {topic} WHERE stop['zip'] IS NULL")
        assert nulls.column("n").to_pylist() == [41]

        # The other agent (reads committed segments; its topic cache follows within 2 s).
        sql = f"SELECT id, stop['zip'] AS z FROM {topic} WHERE id IN (0, 45) ORDER BY id"
        assert _until_rows(b, sql, 2).to_pylist() == [{"id": 0, "z": None}, {"id": 45, "z": 1045}]

        # The job survived the widening and read every row, old and new.
        a.produce_batch(topic, [v2(_trip(52, 1052), ctx)], partition=0, acks="durable")
        a.wait_for_job(f"{topic}_j", timeout=30)
        out = _until_rows(a, f"SELECT id, city, n FROM {topic}_j ORDER BY id", 53).to_pylist()
        assert out == [{"id": i, "city": f"c{i}", "n": 2 if i % 2 else 0} for i in range(53)]
        assert a.describe_job(f"{topic}_j").state == "running here"
