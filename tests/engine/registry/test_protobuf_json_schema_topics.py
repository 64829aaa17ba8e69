"""Protobuf and JSON Schema topics read as typed columns (issue 13): confluent-kafka's
ProtobufSerializer (which registers the message's file descriptor, base64) and JSONSerializer
produce through the agent's Kafka port into topics created with `format = 'protobuf' |
'json-schema'`; SQL reads the typed columns; a compatible new version (a field added) grows the
columns and older rows read it as NULL; a value naming an unknown schema id, or not framed, is
refused (INVALID_RECORD) and nothing is stored; a Kafka-created topic requiring framing whose
`<topic>-value` already has a schema is typed too."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import streamhouse
from streamhouse.registry.proto_descriptor import proto_text, serialized
from tests.engine.registry.conftest import RegistryAgents

PROTO_V1 = """syntax = "proto3";
package shop;
message Order {
  string sku = 1;
  int64 qty = 2;
  optional double price = 3;
  Status status = 4;
  repeated string tags = 5;
  map<string, int64> stock = 7;
  enum Status { NEW = 0; PAID = 1; }
}
"""
PROTO_V2 = PROTO_V1.replace("  repeated string tags = 5;\n", "  repeated string tags = 5;\n  string country = 6;\n")

# Closed (additionalProperties false), so adding a property is BACKWARD compatible.
JSON_V1 = {
    "title": "Visit",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "page": {"type": "string"},
        "ms": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "ref": {"type": "object", "properties": {"host": {"type": "string"}}},
        "hits": {"type": "object", "additionalProperties": {"type": "integer"}},  # a MAP<STRING, BIGINT>
    },
}
JSON_V2 = {**JSON_V1, "properties": {**JSON_V1["properties"], "score": {"type": "number"}}}


def _order_class(tmp: Path, name: str, text: str) -> Any:
    """shop.Order of `text`, compiled by protoc into its own descriptor pool (v1 and v2 declare
    the same names, so they cannot share the default pool)."""
    (tmp / f"{name}.proto").write_text(text)
    out = tmp / f"{name}.pb"
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp}", f"--descriptor_set_out={out}", f"{name}.proto"]
    subprocess.run(protoc, check=True)
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def _send(bootstrap: str, topic: str, values: list[bytes]) -> list[Any]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    errors: list[Any] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    return errors


def _wait_rows(sh: Any, sql: str, count: int) -> pa.Table:
    deadline = time.monotonic() + 30
    while True:
        table = sh.sql(sql)
        if table.num_rows >= count or time.monotonic() > deadline:
            return table
        time.sleep(0.2)


def _refused(bootstrap: str, topic: str, good: bytes) -> None:
    unknown_id = good[:1] + struct.pack(">I", 999_999) + good[5:]
    for err in _send(bootstrap, topic, [unknown_id, b"not framed"]):
        assert err is not None and err.code() == KafkaError.INVALID_RECORD, err


def test_protobuf_topic(agents: RegistryAgents, tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"orders_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    order_v1 = _order_class(tmp_path, "order_v1", PROTO_V1)
    order_v2 = _order_class(tmp_path, "order_v2", PROTO_V2)
    ctx = SerializationContext(topic, MessageField.VALUE)
    first = ProtobufSerializer(order_v1, registry, {"use.deprecated.format": False})  # auto-registers v1
    sent = [order_v1(sku=f"s{i}", qty=i, status=i % 2, tags=["a"] * i, stock={"nl": i}) for i in range(10)]
    for i in range(0, 10, 2):
        sent[i].price = i / 4
    framed = [first(m, ctx) for m in sent]
    assert framed[0] is not None and framed[0][5] == 0  # message indexes [0]
    with streamhouse.connect(agents.a.address) as sh:
        sh.sql(f"CREATE TOPIC {topic} WITH (format = 'protobuf', subject = '{topic}-value')")
        columns = sh.sql(f"SELECT * FROM {topic} LIMIT 0").schema
        names = ["sku", "qty", "price", "status", "tags", "stock"]
        assert [f.name for f in columns if not f.name.startswith("_")] == names
        assert columns.field("qty").type == pa.int64() and columns.field("status").type == pa.string()
        assert columns.field("tags").type == pa.list_(pa.string())  # repeated: an ARRAY column
        assert columns.field("stock").type == pa.map_(pa.string(), pa.int64())  # map<K, V>: a MAP column
        assert _send(bootstrap, topic, [b for b in framed if b is not None]) == [None] * 10
        _refused(bootstrap, topic, framed[0] or b"")

        rows = _wait_rows(sh, f"SELECT sku, qty, price, status FROM {topic} ORDER BY _offset", 10)
        assert rows.column("sku").to_pylist() == [f"s{i}" for i in range(10)]
        assert rows.column("qty").to_pylist() == list(range(10))
        assert rows.column("price").to_pylist() == [i / 4 if i % 2 == 0 else None for i in range(10)]
        assert rows.column("status").to_pylist() == ["NEW", "PAID"] * 5
        assert sh.sql(f"SELECT sum(qty) AS s FROM {topic} WHERE status = 'PAID'").column("s").to_pylist() == [25]
        lengths = sh.sql(f"SELECT array_length(tags) AS n FROM {topic} ORDER BY _offset").column("n").to_pylist()
        assert lengths == list(range(10))  # an absent repeated field reads as empty, as in proto3
        stock = sh.sql(f"SELECT stock['nl'] AS nl, stock['de'] AS de FROM {topic} ORDER BY _offset").to_pylist()
        assert stock == [{"nl": i, "de": None} for i in range(10)]

        # A job over the typed columns.
        view = f"{topic}_paid"
        sh.sql(
            f"CREATE MATERIALIZED VIEW {view} WITH ('checkpoint-interval' = '100ms') AS "
            f"SELECT sku, qty * 10 AS ten FROM {topic} WHERE status = 'PAID'"
        )
        assert _wait_rows(sh, f"SELECT ten FROM {view} ORDER BY ten", 5).column("ten").to_pylist() == [
            10,
            30,
            50,
            70,
            90,
        ]

        # Evolution: ProtobufSerializer registers v2 (a field added; BACKWARD compatible), whose
        # rows grow the topic's columns.
        second = ProtobufSerializer(order_v2, registry, {"use.deprecated.format": False})
        # use.latest.version reads the subject's latest version ?format=serialized (base64
        # FileDescriptorProto), as does a deserializer given the registry.
        latest = ProtobufSerializer(order_v2, registry, {"auto.register.schemas": False, "use.latest.version": True})
        later = [second(order_v2(sku="n", qty=100 + i, country="nl"), ctx) for i in range(2)]
        later.append(latest(order_v2(sku="n", qty=102, country="nl"), ctx))
        deserialize = ProtobufDeserializer(order_v2, {"use.deprecated.format": False}, registry)
        assert deserialize(later[-1], ctx).qty == 102
        assert _send(bootstrap, topic, [b for b in later if b is not None]) == [None] * 3
        rows = _wait_rows(sh, f"SELECT qty, country FROM {topic} ORDER BY _offset", 13)
        assert rows.column("country").to_pylist() == [None] * 10 + ["nl"] * 3
        assert rows.column("qty").to_pylist() == [*range(10), 100, 101, 102]


def test_json_schema_topic(agents: RegistryAgents) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"visits_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    ctx = SerializationContext(topic, MessageField.VALUE)
    first = JSONSerializer(json.dumps(JSON_V1), registry)  # auto-registers v1
    sent = [
        {"page": f"/p{i}", "ms": i * 10, "at": f"2026-01-01T00:00:0{i}Z", "ref": {"host": "x"}, "hits": {"a": i}}
        for i in range(8)
    ]
    framed = [first(v, ctx) for v in sent]
    with streamhouse.connect(agents.a.address) as sh:
        sh.sql(f"CREATE TOPIC {topic} WITH (format = 'json-schema')")  # subject: <topic>-value
        columns = sh.sql(f"SELECT * FROM {topic} LIMIT 0").schema
        assert [f.name for f in columns if not f.name.startswith("_")] == ["page", "ms", "at", "ref", "hits"]
        assert columns.field("at").type == pa.timestamp("ms")
        assert columns.field("ref").type == pa.struct([pa.field("host", pa.string())])  # an object: a ROW
        assert _send(bootstrap, topic, [b for b in framed if b is not None]) == [None] * 8
        _refused(bootstrap, topic, framed[0] or b"")
        wrong_type = (framed[0] or b"")[:5] + json.dumps({"page": "/x", "ms": "ten"}).encode()
        assert _send(bootstrap, topic, [wrong_type])[0].code() == KafkaError.INVALID_RECORD

        rows = _wait_rows(sh, f"SELECT page, ms, at FROM {topic} ORDER BY _offset", 8)
        assert rows.column("page").to_pylist() == [v["page"] for v in sent]
        assert rows.column("ms").to_pylist() == [i * 10 for i in range(8)]
        hosts = sh.sql(f"SELECT ref['host'] AS h FROM {topic} ORDER BY _offset").column("h").to_pylist()
        assert hosts == ["x"] * 8
        hits = sh.sql(f"SELECT hits['a'] AS a FROM {topic} ORDER BY _offset").column("a").to_pylist()
        assert hits == list(range(8))  # a plain JSON object read as a MAP
        assert rows.column("at").cast(pa.int64()).to_pylist() == [1_767_225_600_000 + i * 1000 for i in range(8)]

        second = JSONSerializer(json.dumps(JSON_V2), registry)  # registers v2: a property added
        later = [second({"page": "/new", "ms": 1, "score": 0.5}, ctx)]
        assert _send(bootstrap, topic, [b for b in later if b is not None]) == [None]
        rows = _wait_rows(sh, f"SELECT page, score FROM {topic} ORDER BY _offset", 9)
        assert rows.column("score").to_pylist() == [None] * 8 + [0.5]

        # A topic created over Kafka with confluent.value.schema.validation=true, whose
        # `<topic>-value` already has a JSON Schema, is typed the same way.
        other = f"{topic}_k"
        registry.register_schema(f"{other}-value", Schema(json.dumps(JSON_V1), "JSON"))
        config = {"confluent.value.schema.validation": "true"}
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(other, 1, 1, config=config)]).values():
            future.result(timeout=30)
        value = first(sent[0], SerializationContext(other, MessageField.VALUE))
        assert _send(bootstrap, other, [value or b""]) == [None]
        assert _wait_rows(sh, f"SELECT page, ms FROM {other}", 1).to_pylist() == [{"page": "/p0", "ms": 0}]


def test_proto_text_and_serialized_descriptor_round_trip() -> None:
    """`?format=serialized` and what ProtobufSerializer registers are the same .proto: the text
    rendered as a FileDescriptorProto loads in a descriptor pool, and that descriptor turned back
    into text (type names then fully qualified) describes the same descriptor."""
    extra = "message Extra {\n  map<string, int64> counts = 1;\n  oneof pick { string a = 2; int32 b = 3; }\n}\n"
    text = PROTO_V2 + extra
    fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(serialized(text)))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
    assert order.DESCRIPTOR.fields_by_name["price"].has_presence
    assert pool.FindMessageTypeByName("shop.Extra").fields_by_name["counts"].message_type.GetOptions().map_entry
    again = proto_text(serialized(text))
    assert again != text and serialized(again) == serialized(text)
