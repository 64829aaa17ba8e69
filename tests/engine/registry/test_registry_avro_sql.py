"""Avro topics read as typed columns (issue 13): `CREATE TOPIC t WITH (format = 'avro')` takes
its columns from the subject's latest schema; confluent-kafka's AvroSerializer produces through
the agent's Kafka port; produce decodes each schema id's rows once into the columns, so SQL and a
materialized view see them typed, from the buffer and from segments. A value that does not
decode is refused (INVALID_RECORD) and nothing of it is stored."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import streamhouse
from streamhouse.storage.errors import StreamHouseError
from tests.engine.registry.conftest import RegistryAgents

V1 = """{"type": "record", "name": "Click", "namespace": "demo", "fields": [
 {"name": "user", "type": "string"}, {"name": "n", "type": "long"},
 {"name": "score", "type": ["null", "double"], "default": null},
 {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"""
# Compatible (BACKWARD) evolution: a field added with a default.
V2 = V1.replace("]}", ', {"name": "country", "type": "string", "default": "none"}]}')


def _send(bootstrap: str, topic: str, values: list[bytes]) -> list[Any]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    errors: list[Any] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    return errors


def _serialize(registry: SchemaRegistryClient, schema: str, topic: str, rows: list[dict[str, Any]]) -> list[bytes]:
    serialize = AvroSerializer(registry, schema, conf={"auto.register.schemas": False, "use.latest.version": False})
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [serialize(row, ctx) for row in rows]


def _wait_rows(sh: Any, sql: str, count: int) -> pa.Table:
    deadline = time.monotonic() + 30
    while True:
        table = sh.sql(sql)
        if table.num_rows >= count or time.monotonic() > deadline:
            return table
        time.sleep(0.2)


def test_avro_topic_typed_columns_in_sql_and_jobs(agents: RegistryAgents) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"avro_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    v1 = registry.register_schema(f"{topic}-value", Schema(V1, "AVRO"))
    with streamhouse.connect(agents.a.address) as sh:
        with pytest.raises(StreamHouseError, match="has no schema"):
            sh.sql(f"CREATE TOPIC {topic}_x WITH (format = 'avro')")
        sh.sql(f"CREATE TOPIC {topic} WITH (format = 'avro', partitions = 1)")
        columns = sh.sql(f"SELECT * FROM {topic} LIMIT 0").schema
        assert [f.name for f in columns if not f.name.startswith("_")] == ["user", "n", "score", "at"]
        assert columns.field("n").type == pa.int64() and columns.field("score").type == pa.float64()
        assert columns.field("at").type == pa.timestamp("ms")

        first = [
            {"user": f"u{i}", "n": i, "score": None if i % 3 == 0 else i / 2, "at": 1_700_000_000_000 + i}
            for i in range(20)
        ]
        assert _send(bootstrap, topic, _serialize(registry, V1, topic, first)) == [None] * 20

        # A value that is not a framed Avro record of the subject: refused, nothing stored.
        good = _serialize(registry, V1, topic, first[:1])[0]
        bad = [good[:5] + b"\x01", b"plain text"]
        for err in _send(bootstrap, topic, bad):
            assert err is not None and err.code() == KafkaError.INVALID_RECORD, err

        rows = _wait_rows(sh, f"SELECT user, n, score, at FROM {topic} ORDER BY _offset", 20)
        assert rows.num_rows == 20
        assert rows.column("user").to_pylist() == [r["user"] for r in first]
        assert rows.column("n").to_pylist() == list(range(20))
        assert rows.column("score").to_pylist() == [r["score"] for r in first]
        assert rows.column("at").cast(pa.int64()).to_pylist() == [r["at"] for r in first]
        assert sh.sql(f"SELECT sum(n) AS s FROM {topic} WHERE score IS NOT NULL").column("s").to_pylist() == [
            sum(r["n"] for r in first if r["score"] is not None)
        ]

        # A job over the typed columns.
        view = f"{topic}_big"
        sh.sql(
            f"CREATE MATERIALIZED VIEW {view} WITH ('checkpoint-interval' = '100ms') AS "
            f"SELECT user, n * 10 AS ten FROM {topic} WHERE n >= 15"
        )
        out = _wait_rows(sh, f"SELECT user, ten FROM {view} ORDER BY ten", 5)
        assert out.column("ten").to_pylist() == [150, 160, 170, 180, 190]

        # Compatible evolution: v2 adds `country` (default "none"); writers on v1 and v2 both
        # produce. The v2 rows grow the topic's columns by `country` (schema evolution, covered
        # in test_registry_avro_evolution.py); nothing older breaks.
        v2 = registry.register_schema(f"{topic}-value", Schema(V2, "AVRO"))
        assert v2 != v1
        later = [
            {"user": f"w{i}", "n": 100 + i, "score": 1.0, "at": 1_700_000_001_000, "country": "nl"} for i in range(5)
        ]
        assert _send(bootstrap, topic, _serialize(registry, V2, topic, later)) == [None] * 5
        assert _send(bootstrap, topic, _serialize(registry, V1, topic, first[:2])) == [None] * 2
        rows = _wait_rows(sh, f"SELECT user, n FROM {topic} ORDER BY _offset", 27)
        assert rows.column("n").to_pylist() == list(range(20)) + [100 + i for i in range(5)] + [0, 1]


def test_avro_topic_created_on_the_evolved_subject_reads_old_rows_as_null(agents: RegistryAgents) -> None:
    """Created after v2: `country` is a column; rows an old producer still writes with v1 read
    it as NULL (each id's rows are decoded with their own writer schema and lined up by field
    name; the v2 default is a reader-side rule, not applied), v2 rows carry their value."""
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"avro2_{uuid.uuid4().hex[:8]}"
    subject = f"clicks-{topic}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    registry.register_schema(subject, Schema(V1, "AVRO"))
    registry.register_schema(subject, Schema(V2, "AVRO"))
    with streamhouse.connect(agents.a.address) as sh:
        sh.sql(f"CREATE TOPIC {topic} WITH (format = 'avro', subject = '{subject}')")
        old = {"user": "old", "n": 1, "score": None, "at": 1}
        new = {"user": "new", "n": 2, "score": 2.5, "at": 2, "country": "nl"}
        ctx = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
        conf = {
            "auto.register.schemas": False,
            "use.latest.version": False,
            "subject.name.strategy": lambda c, r: subject,
        }
        values = [AvroSerializer(registry, V1, conf=conf)(old, ctx), AvroSerializer(registry, V2, conf=conf)(new, ctx)]
        assert _send(bootstrap, topic, values) == [None, None]
        rows = _wait_rows(sh, f"SELECT user, country FROM {topic} ORDER BY _offset", 2).to_pylist()
        assert rows == [{"user": "old", "country": None}, {"user": "new", "country": "nl"}]


def test_kafka_topic_with_schema_validation_on_an_avro_subject_is_typed(agents: RegistryAgents) -> None:
    """A topic created through Kafka with `confluent.value.schema.validation=true` whose
    subject `<topic>-value` already has an Avro schema reads as that schema's columns."""
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"strict_avro_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    registry.register_schema(f"{topic}-value", Schema(V1, "AVRO"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config={"confluent.value.schema.validation": "true"})
    for future in admin.create_topics([new]).values():
        future.result(timeout=30)
    rows = [{"user": f"k{i}", "n": i, "score": 0.5, "at": 7} for i in range(3)]
    assert _send(bootstrap, topic, _serialize(registry, V1, topic, rows)) == [None] * 3
    with streamhouse.connect(agents.b.address) as sh:
        got = _wait_rows(sh, f"SELECT user, n, score FROM {topic} ORDER BY _offset", 3).to_pylist()
    assert got == [{"user": r["user"], "n": r["n"], "score": 0.5} for r in rows]


COLLECTIONS = """{"type": "record", "name": "Basket", "namespace": "demo", "fields": [
 {"name": "id", "type": "long"},
 {"name": "tags", "type": {"type": "array", "items": "string"}},
 {"name": "prices", "type": {"type": "map", "values": {"type": "array", "items": "double"}}},
 {"name": "code", "type": ["null", "int", "string"]}]}"""


def test_avro_arrays_maps_and_unions_are_columns(agents: RegistryAgents) -> None:
    """Arrays are ARRAY, maps MAP<STRING, …> (here of arrays), a union of several types a ROW with
    a field per branch; SQL indexes, unnests and counts them."""
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"baskets_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    registry.register_schema(f"{topic}-value", Schema(COLLECTIONS, "AVRO"))
    baskets = [
        {
            "id": i,
            "tags": [f"t{j}" for j in range(i % 4)],
            "prices": {"eu": [i + 0.5] * (i % 3)} if i % 2 else {},
            "code": None if i % 5 == 0 else (i if i % 2 else f"s{i}"),
        }
        for i in range(30)
    ]
    with streamhouse.connect(agents.a.address) as sh:
        sh.sql(f"CREATE TOPIC {topic} WITH (format = 'avro', partitions = 1)")
        columns = sh.sql(f"SELECT * FROM {topic} LIMIT 0").schema
        assert columns.field("tags").type == pa.list_(pa.string())
        assert columns.field("prices").type == pa.map_(pa.string(), pa.list_(pa.float64()))
        assert columns.field("code").type == pa.struct([("int", pa.int32()), ("string", pa.string())])
        assert _send(bootstrap, topic, _serialize(registry, COLLECTIONS, topic, baskets)) == [None] * 30
        sql = (
            f"SELECT id, tags[1] AS first, cardinality(tags) AS n, prices['eu'] AS eu, code['int'] AS i, "
            f"code['string'] AS s FROM {topic} ORDER BY id"
        )
        rows = _wait_rows(sh, sql, 30).to_pylist()
        assert rows == [
            {
                "id": b["id"],
                "first": b["tags"][0] if b["tags"] else None,
                "n": len(b["tags"]),
                "eu": b["prices"].get("eu"),
                "i": b["code"] if isinstance(b["code"], int) else None,
                "s": b["code"] if isinstance(b["code"], str) else None,
            }
            for b in baskets
        ]
        tags = sh.sql(f"SELECT unnest(tags) AS t, count(*) AS c FROM {topic} GROUP BY 1 ORDER BY 1").to_pylist()
        assert tags == [{"t": "t0", "c": 22}, {"t": "t1", "c": 14}, {"t": "t2", "c": 7}]
        nulls = sh.sql(f"SELECT count(*) AS c FROM {topic} WHERE code IS NULL").column("c").to_pylist()
        assert nulls == [6]
