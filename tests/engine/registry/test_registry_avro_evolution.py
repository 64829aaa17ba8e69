"""Schema evolution of Avro topics across real agents (issue 13): v1 rows, then v2 (a field added
with a default) registered and produced through the Kafka port with confluent-kafka's
AvroSerializer. The v2 rows grow the topic's columns once (a compare-and-set in PostgreSQL);
`SELECT country` is NULL for v1 rows, from segments flushed before and from the buffer, and the
value for v2 rows, on the agent that evolved and on the other one (its topic cache: 2 s). Two
agents evolving one topic at the same moment end with one column set."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pyarrow as pa
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import streamhouse
from tests.engine.registry.conftest import RegistryAgents

V1 = """{"type": "record", "name": "Click", "namespace": "demo", "fields": [
 {"name": "user", "type": "string"}, {"name": "n", "type": "long"}]}"""
V2 = V1.replace("]}", ', {"name": "country", "type": "string", "default": "none"}]}')
V3 = V2.replace("]}", ', {"name": "device", "type": ["null", "string"], "default": null}]}')


def _send(bootstrap: str, topic: str, values: list[bytes], acks: str) -> list[Any]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0, "retries": 0})
    errors: list[Any] = []
    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    return errors


def _serialize(registry: SchemaRegistryClient, schema: str, topic: str, rows: list[dict[str, Any]]) -> list[bytes]:
    serialize = AvroSerializer(registry, schema, conf={"auto.register.schemas": False, "use.latest.version": False})
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [serialize(row, ctx) for row in rows]


def _until(check: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = check()
        except Exception as exc:  # a column not yet visible on this agent (topic cache): retry
            got, last = None, exc
        else:
            last = None
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not seen within {timeout_s}s (last error: {last})"
        time.sleep(0.2)


def _columns(sh: Any, topic: str) -> list[str]:
    return [f.name for f in sh.sql(f"SELECT * FROM {topic} LIMIT 0").schema if not f.name.startswith("_")]


def test_v2_rows_add_a_column_that_v1_rows_read_as_null(agents: RegistryAgents) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"evolve_{uuid.uuid4().hex[:8]}"
    registry = SchemaRegistryClient({"url": agents.url_a})
    registry.register_schema(f"{topic}-value", Schema(V1, "AVRO"))
    flushed = [{"user": f"f{i}", "n": i} for i in range(4)]
    buffered = [{"user": f"b{i}", "n": 10 + i} for i in range(3)]
    later = [{"user": f"v{i}", "n": 20 + i, "country": "nl"} for i in range(3)]
    with streamhouse.connect(agents.a.address) as a, streamhouse.connect(agents.b.address) as b:
        a.sql(f"CREATE TOPIC {topic} WITH (format = 'avro', partitions = 1)")
        assert _columns(a, topic) == ["user", "n"]
        # acks=all is durable here: these v1 rows are in a segment written before the evolution.
        assert _send(bootstrap, topic, _serialize(registry, V1, topic, flushed), "all") == [None] * 4
        assert a.describe(topic).partitions[0].segments >= 1
        assert _send(bootstrap, topic, _serialize(registry, V1, topic, buffered), "1") == [None] * 3  # buffered
        registry.register_schema(f"{topic}-value", Schema(V2, "AVRO"))
        assert _send(bootstrap, topic, _serialize(registry, V2, topic, later), "1") == [None] * 3

        # The agent that evolved the topic sees the column at once: old segment + buffer.
        assert _columns(a, topic) == ["user", "n", "country"]
        described = str(a.sql(f"DESCRIBE {topic}").to_pylist())
        assert "country" in described
        expected = [{"user": r["user"], "country": None} for r in flushed + buffered]
        expected += [{"user": r["user"], "country": "nl"} for r in later]
        rows = a.sql(f"SELECT user, country FROM {topic} ORDER BY _offset").to_pylist()
        assert rows == expected
        assert a.sql(f"SELECT count(*) AS c FROM {topic} WHERE country IS NULL").column("c").to_pylist() == [7]

        # One more v1 row, durable: everything buffered is flushed with it, so agent b (which
        # reads committed segments) sees all rows, and the column once its topic cache expires.
        tail = [{"user": "t0", "n": 30}]
        assert _send(bootstrap, topic, _serialize(registry, V1, topic, tail), "all") == [None]
        expected.append({"user": "t0", "country": None})
        want = pa.Table.from_pylist(expected)
        for sh in (a, b):
            sql = f"SELECT user, country FROM {topic} ORDER BY _offset"
            got = _until(lambda sh=sh, sql=sql: _rows(sh, sql, 11), "all 11 rows with country")
            assert got.to_pylist() == want.to_pylist()
            assert "country" in str(sh.sql(f"DESCRIBE {topic}").to_pylist())


def _rows(sh: Any, sql: str, count: int) -> pa.Table | None:
    table = sh.sql(sql)
    return table if table.num_rows == count else None


def _race(a: Any, b: Any, registry: SchemaRegistryClient) -> None:
    topic = f"race_{uuid.uuid4().hex[:8]}"
    subject = f"{topic}-value"
    registry.register_schema(subject, Schema(V1, "AVRO"))
    a.sql(f"CREATE TOPIC {topic} WITH (format = 'avro', partitions = 2)")
    # Each agent leads its partition before the race (the first produce takes the lease).
    a.produce_batch(topic, _serialize(registry, V1, topic, [{"user": "a0", "n": 0}]), partition=0)
    b.produce_batch(topic, _serialize(registry, V1, topic, [{"user": "b0", "n": 0}]), partition=1)
    registry.register_schema(subject, Schema(V2, "AVRO"))
    registry.register_schema(subject, Schema(V3, "AVRO"))
    on_a = _serialize(registry, V3, topic, [{"user": "a1", "n": 1, "country": "nl", "device": "ios"}])
    on_b = _serialize(registry, V2, topic, [{"user": "b1", "n": 1, "country": "de"}])
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def produce(sh: Any, values: list[bytes], partition: int) -> None:
        try:
            start.wait(10)
            sh.produce_batch(topic, values, partition=partition, acks="durable")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(a, on_a, 0)), threading.Thread(target=produce, args=(b, on_b, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    full = ["user", "n", "country", "device"]
    sql = f"SELECT user, country, device FROM {topic} WHERE n = 1 ORDER BY user"
    for sh in (a, b):
        assert _until(lambda sh=sh: _columns(sh, topic) == full, f"columns {full}")
        got = _until(lambda sh=sh: _rows(sh, sql, 2), "both evolved rows")
        assert got.to_pylist() == [
            {"user": "a1", "country": "nl", "device": "ios"},
            {"user": "b1", "country": "de", "device": None},
        ]


def test_two_agents_evolving_at_once_end_with_one_column_set(agents: RegistryAgents) -> None:
    """Agent a gets v3 rows (country + device) on partition 0 while agent b gets v2 rows
    (country) on partition 1, at the same moment, several times: each topic ends with the
    columns user, n, country, device, each once, in that order, on both agents."""
    registry = SchemaRegistryClient({"url": agents.url_a})
    with streamhouse.connect(agents.a.address) as a, streamhouse.connect(agents.b.address) as b:
        for _ in range(3):
            _race(a, b, registry)
