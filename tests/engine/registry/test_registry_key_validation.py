"""Key-schema validation (issue 13, Confluent Server's `confluent.key.schema.validation` and
`confluent.key.subject.name.strategy`): every non-null key must carry the framing and an id
registered under `<topic>-key` (or the record strategies' subject), on every produce path: the
Kafka port (confluent-kafka's AvroSerializer for keys) and REST (AVRO keys by subject, and plain
keys refused with the same typed error). A refused batch stores nothing."""

from __future__ import annotations

import json
import uuid

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.engine.registry.conftest import RegistryAgents
from tests.engine.rest.conftest import Rest, assert_error

KEY = json.dumps({"type": "record", "name": "UserKey", "namespace": "acct", "fields": [{"name": "id", "type": "long"}]})


def test_keys_validated_against_the_key_subject(agents: RegistryAgents) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"keyed-{uuid.uuid4().hex[:8]}"
    config = {"confluent.key.schema.validation": "true"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        future.result(timeout=30)
    registry = SchemaRegistryClient({"url": agents.url_a})
    key_ctx = SerializationContext(topic, MessageField.KEY)
    good = AvroSerializer(registry, KEY)({"id": 1}, key_ctx)  # registers <topic>-key
    assert registry.get_latest_version(f"{topic}-key").version == 1
    # The same schema registered only as the topic's value schema is not a key schema.
    value_only = AvroSerializer(registry, KEY.replace("UserKey", "Other"))(
        {"id": 2}, SerializationContext(topic, MessageField.VALUE)
    )

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    outcomes: list[tuple[bytes | None, object]] = []
    for key in (good, b"plain", value_only, None):
        producer.produce(topic, key=key, value=b"v", on_delivery=lambda err, msg: outcomes.append((msg.key(), err)))
        assert producer.flush(30) == 0
    errors = dict(outcomes)
    assert errors[good] is None and errors[None] is None
    for bad in (b"plain", value_only):
        err = errors[bad]
        assert err is not None and err.code() == KafkaError.INVALID_RECORD, err

    rest = Rest(f"http://127.0.0.1:{agents.b.http_port}")
    path = f"/v1/topics/{topic}/records"
    refused = assert_error(rest.post(path, {"keys": ["k0", "k1"], "key_type": "STRING", "values": [1, 2]}), 400)
    assert refused["code"] == "schema_validation" and "record 0" in refused["message"], refused
    assert "key" in refused["message"]
    by_subject = rest.post(path, {"key_type": "AVRO", "keys": [{"id": 7}, None], "values": [1, 2]})
    assert by_subject.status == 200, by_subject.body
    leader = Rest(f"http://127.0.0.1:{agents.a.http_port}")  # b forwarded to a, which sees its WAL
    ends = leader.get(f"/v1/topics/{topic}").json()["partitions"]
    assert [p["end_offset"] for p in ends] == [4]  # 2 over Kafka, 2 over REST; the refused stored nothing

    # Values are not checked by the key setting, nor keys by the value setting.
    plain_values = rest.post(path, {"values": ["not framed"], "key_type": "AVRO", "keys": [{"id": 8}]})
    assert plain_values.status == 200, plain_values.body


def test_record_name_strategy_for_keys(agents: RegistryAgents) -> None:
    rest = Rest(f"http://127.0.0.1:{agents.a.http_port}")
    topic = f"keyrec_{uuid.uuid4().hex[:8]}"
    configs = [
        {"name": "confluent.key.schema.validation", "value": "true"},
        {
            "name": "confluent.key.subject.name.strategy",
            "value": "io.confluent.kafka.serializers.subject.RecordNameStrategy",
        },
    ]
    assert rest.post("/v1/topics", {"topic_name": topic, "configs": configs}).status == 201
    registry = SchemaRegistryClient({"url": agents.url_a})
    under_topic = registry.register_schema(f"{topic}-key", Schema(KEY, "AVRO"))
    body = {"key_type": "AVRO", "key_schema": {"schema_id": under_topic}, "keys": [{"id": 1}], "values": [1]}
    assert_error(rest.post(f"/v1/topics/{topic}/records", body), 400, "schema_validation")  # not under acct.UserKey
    registry.register_schema("acct.UserKey", Schema(KEY, "AVRO"))
    ok = rest.post(f"/v1/topics/{topic}/records", body)
    assert ok.status == 200, ok.body
