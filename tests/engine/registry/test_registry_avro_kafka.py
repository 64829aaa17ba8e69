"""confluent-kafka's AvroSerializer producing through the agent's Kafka port with the schema
registered automatically in the agent's registry (subject `<topic>-value`, TopicNameStrategy),
then read back with AvroDeserializer: the records carry the Confluent framing with the id the
registry gave, and another agent's registry resolves that id."""

from __future__ import annotations

import struct
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.engine.registry.conftest import RegistryAgents

SCHEMA = """
{"type": "record", "name": "Click", "namespace": "demo",
 "fields": [{"name": "user", "type": "string"}, {"name": "n", "type": "long"}]}
"""


def test_avro_serializer_through_kafka(agents: RegistryAgents) -> None:
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"clicks-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)
    registry = SchemaRegistryClient({"url": agents.url_a})
    serialize = AvroSerializer(registry, SCHEMA)  # auto.register.schemas defaults to true
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    sent = [{"user": f"u{i}", "n": i} for i in range(50)]
    for value in sent:
        producer.produce(topic, value=serialize(value, SerializationContext(topic, MessageField.VALUE)))
    assert producer.flush(30) == 0

    # Registered by the serializer, under the topic's value subject.
    latest = registry.get_latest_version(f"{topic}-value")
    assert latest.version == 1

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": agents.url_b}))
    got: list[object] = []
    raw: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            value = msg.value()
            assert isinstance(value, bytes)
            raw.append(value)
            got.append(deserialize(value, SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    assert got == sent
    assert {struct.unpack(">bI", v[:5]) for v in raw} == {(0, latest.schema_id)}


def test_topic_requiring_registry_framing(agents: RegistryAgents) -> None:
    """`confluent.value.schema.validation=true`: a plain value, a bad magic byte and an unknown
    schema id are refused (INVALID_RECORD, nothing stored); framed values with a registered id
    and tombstones go through."""
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"strict-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config={"confluent.value.schema.validation": "true"})
    for future in admin.create_topics([new]).values():
        future.result(timeout=30)
    registry = SchemaRegistryClient({"url": agents.url_a})
    serialize = AvroSerializer(registry, SCHEMA)
    good = serialize({"user": "u", "n": 1}, SerializationContext(topic, MessageField.VALUE))
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0})
    outcomes: list[tuple[bytes | None, object]] = []

    def send(value: bytes | None) -> None:
        producer.produce(topic, value=value, on_delivery=lambda err, msg: outcomes.append((msg.value(), err)))
        assert producer.flush(30) == 0

    unknown = b"\x00" + struct.pack(">I", 987_654_321) + good[5:]
    # Registered, but under another topic's subject: TopicNameStrategy refuses it.
    other_topic = SerializationContext(f"other-{topic}", MessageField.VALUE)
    elsewhere = AvroSerializer(registry, SCHEMA.replace('"Click"', '"Other"'))({"user": "x", "n": 2}, other_topic)
    for value in (good, b"plain text", b"\x07" + good[1:], unknown, elsewhere, None, good):
        send(value)
    errors = {value: err for value, err in outcomes}
    assert errors[good] is None and errors[None] is None
    for bad in (b"plain text", b"\x07" + good[1:], unknown, elsewhere):
        err = errors[bad]
        assert err is not None and err.code() == KafkaError.INVALID_RECORD, err

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    stored: list[bytes | None] = []
    deadline = time.monotonic() + 30
    try:
        while len(stored) < 3 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                stored.append(msg.value())
    finally:
        consumer.close()
    assert stored == [good, None, good]


def test_record_name_strategy(agents: RegistryAgents) -> None:
    """A topic validating with RecordNameStrategy takes values whose schema is registered under
    the record's full name (the serializer's record_subject_name_strategy), and refuses the same
    record registered only under <topic>-value."""
    bootstrap = f"127.0.0.1:{agents.kafka_port}"
    topic = f"byrecord-{uuid.uuid4().hex[:8]}"
    config = {
        "confluent.value.schema.validation": "true",
        "confluent.value.subject.name.strategy": "io.confluent.kafka.serializers.subject.RecordNameStrategy",
    }
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        future.result(timeout=30)
    registry = SchemaRegistryClient({"url": agents.url_a})
    ctx = SerializationContext(topic, MessageField.VALUE)
    schema = SCHEMA.replace('"Click"', '"Visit"')
    by_record = AvroSerializer(registry, schema, conf={"subject.name.strategy": record_subject_name_strategy})
    by_topic = AvroSerializer(registry, schema.replace('"n"', '"m"'))
    good, wrong = by_record({"user": "u", "n": 1}, ctx), by_topic({"user": "u", "m": 1}, ctx)
    assert registry.get_latest_version("demo.Visit").schema_id == struct.unpack(">I", good[1:5])[0]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0})
    outcomes: dict[bytes, object] = {}
    for value in (good, wrong):
        producer.produce(topic, value=value, on_delivery=lambda err, msg: outcomes.__setitem__(msg.value(), err))
        assert producer.flush(30) == 0
    assert outcomes[good] is None
    err = outcomes[wrong]
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
