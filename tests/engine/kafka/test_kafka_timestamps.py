"""Kafka timestamps (engine/kafka/timestamps.py) on a real `streamhouse serve --kafka-port`
subprocess on PostgreSQL + SeaweedFS, driven by confluent-kafka:

- `message.timestamp.type` = LogAppendTime (storage/topic_settings.py): the agent stamps the
  append time over the producer's, the produce answer and the consumer both say
  LogAppendTime with that time, and the SDK stores the very same timestamps (and gets the
  append time for what it produces itself); CreateTime keeps the producer's. The setting is
  created, described (its default too) and altered through Kafka's admin API.
- Fetch: one LogAppendTime batch per append, exact timestamps either way (IO-free).
- ListOffsets MAX_TIMESTAMP (-3): the first record holding the largest timestamp, found
  across committed segments and the unsegmented tail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
)

import streamhouse
from streamhouse.kafka.record.batch import iter_batches
from streamhouse.kafka.timestamps import MAX_RUNS, encode_log_append_time
from streamhouse.storage.errors import TopicSettingError
from streamhouse.storage.records.schema import make_batch
from tests.agent_process import kafka_agent

OLD = 1_000_000  # a producer timestamp far in the past: LogAppendTime must replace it


@pytest.fixture
def kafka(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[str, streamhouse.Client]]:
    """(bootstrap, SDK client) of one agent rolling segments every 200 ms (MAX_TIMESTAMP reads them)."""
    with (
        kafka_agent(tmp_path, pg_url, s3_url, "--roll-age-ms", "200") as (process, port),
        streamhouse.connect(process.address) as client,
    ):
        yield f"127.0.0.1:{port}", client


def _produce(bootstrap: str, topic: str, count: int) -> list[tuple[int, int]]:
    """(timestamp type, timestamp) of each delivery report, all produced with timestamp OLD."""
    reports: list[tuple[int, int]] = []
    errors: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            reports.append(msg.timestamp())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, value=b"v%d" % i, timestamp=OLD + i, on_delivery=report)
    assert producer.flush(30) == 0 and errors == []
    return reports


def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[int, tuple[int, int]]]:
    """(offset, (timestamp type, timestamp)) of each record of partition 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, tuple[int, int]]] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append((msg.offset(), msg.timestamp()))
    consumer.close()
    return got


def test_log_append_time_replaces_the_producer_timestamp(kafka: tuple[str, streamhouse.Client]) -> None:
    bootstrap, client = kafka
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic("appended", 1, 1, config=config), NewTopic("created", 1, 1)])["appended"].result(20)
    assert client.describe("appended").info.config == config

    before = int(time.time() * 1000)
    reports = _produce(bootstrap, "appended", 30)
    after = int(time.time() * 1000)
    assert {kind for kind, _ in reports} == {TIMESTAMP_LOG_APPEND_TIME}
    assert all(before <= ts <= after for _, ts in reports)
    consumed = _consume(bootstrap, "appended", 30)
    assert [offset for offset, _ in consumed] == list(range(30))
    assert {kind for _, (kind, _) in consumed} == {TIMESTAMP_LOG_APPEND_TIME}
    # What Kafka consumers see is what is stored: SQL, jobs and the SDK read the same times.
    stored = client.read("appended").column("timestamp").to_pylist()
    assert [ts for _, (_, ts) in consumed] == stored
    assert all(before <= ts <= after for ts in stored)
    # The setting holds on every path: a timestamp given through the SDK (gRPC) is replaced too.
    client.produce("appended", b"sdk", timestamp=OLD, partition=0, acks="durable")
    assert client.read("appended", start=30).column("timestamp").to_pylist()[0] >= after

    # CreateTime (the default): the producer's timestamps are kept and reported as such.
    assert [ts for _, ts in _produce(bootstrap, "created", 5)] == [OLD + i for i in range(5)]
    consumed = _consume(bootstrap, "created", 5)
    assert [stamp for _, stamp in consumed] == [(TIMESTAMP_CREATE_TIME, OLD + i) for i in range(5)]
    assert client.read("created").column("timestamp").to_pylist() == [OLD + i for i in range(5)]


def test_the_setting_is_described_with_its_default_and_altered(kafka: tuple[str, streamhouse.Client]) -> None:
    bootstrap, client = kafka
    client.create_topic("t", 1)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def describe() -> dict[str, Any]:
        result: dict[str, Any] = next(iter(admin.describe_configs([ConfigResource("topic", "t")]).values())).result(20)
        return result

    described = describe()
    entry = described["message.timestamp.type"]
    assert (entry.value, entry.is_default, entry.source) == ("CreateTime", True, ConfigSource.DEFAULT_CONFIG.value)
    assert described["json.ignore-errors"].value == "false" and described["json.ignore-errors"].is_default

    entry = ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET)
    change = ConfigResource("topic", "t", incremental_configs=[entry])
    next(iter(admin.incremental_alter_configs([change]).values())).result(20)
    entry = describe()["message.timestamp.type"]
    assert (entry.value, entry.is_default) == ("LogAppendTime", False)
    assert client.describe("t").info.config == {"message.timestamp.type": "LogAppendTime"}
    # An agent caches topic settings for a moment; the stamp follows the altered setting after it.
    deadline = time.monotonic() + 30
    while _produce(bootstrap, "t", 1)[0][0] != TIMESTAMP_LOG_APPEND_TIME:
        assert time.monotonic() < deadline, "the altered setting never reached the produce path"
        time.sleep(0.5)

    # Kafka's spelling is stored whatever the case given; other values are refused naming the key.
    client.create_topic("u", 1, config={"message.timestamp.type": "logappendtime"})
    assert client.describe("u").info.config == {"message.timestamp.type": "LogAppendTime"}
    with pytest.raises(TopicSettingError, match=r"message\.timestamp\.type.*BrokerTime"):
        client.create_topic("v", 1, config={"message.timestamp.type": "BrokerTime"})
    assert "v" not in {t.name for t in client.topics()}


def test_list_offsets_max_timestamp(kafka: tuple[str, streamhouse.Client]) -> None:
    bootstrap, client = kafka
    client.create_topic("m", 1)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def max_timestamp() -> tuple[int, int]:
        partition = TopicPartition("m", 0)
        info = admin.list_offsets({partition: OffsetSpec.max_timestamp()})[partition].result(20)
        return info.offset, info.timestamp

    def produce_and_roll(stamps: list[int]) -> None:
        client.produce_batch("m", [b"x"] * len(stamps), timestamps=stamps, partition=0, acks="durable")
        end = client.describe("m").end_offsets[0]
        deadline = time.monotonic() + 30
        while client.describe("m").partitions[0].durable_end_offset < end:  # in a segment (--roll-age-ms 200)
            assert time.monotonic() < deadline, "no segment was written"
            time.sleep(0.1)

    assert max_timestamp() == (-1, -1)  # empty
    produce_and_roll([10, 90, 30])
    produce_and_roll([90, 40])  # a tie in a later segment: the first record keeps it
    assert client.describe("m").partitions[0].segments >= 2
    assert max_timestamp() == (1, 90)
    client.produce_batch("m", [b"y", b"y", b"y"], timestamps=[95, 20, 95], partition=0, acks="leader")
    # Lookups end at the high watermark, as Kafka's do: the acks=leader records count once rolled.
    deadline = time.monotonic() + 30
    while max_timestamp() != (5, 95):
        assert time.monotonic() < deadline, f"max timestamp stays {max_timestamp()}"
        time.sleep(0.1)


def test_fetch_batches_follow_appends_and_stay_exact() -> None:
    """IO-free: each run of one append time is one LogAppendTime batch; records with a
    timestamp each (stored while the topic was CreateTime) go out as one CreateTime batch."""
    appended = make_batch([b"a", b"b", b"c", b"d", b"e"], timestamps=[5, 5, 5, 7, 7], base_offset=10)
    batches = list(iter_batches(encode_log_append_time([appended])))
    assert [(b.base_offset, b.records.num_rows, b.log_append_time) for b in batches] == [(10, 3, True), (13, 2, True)]
    assert [t for b in batches for t in b.records.column("timestamp").to_pylist()] == [5, 5, 5, 7, 7]

    stamps = list(range(1000, 1000 + 2 * MAX_RUNS))
    created = make_batch([b"x"] * len(stamps), timestamps=stamps)
    [batch] = iter_batches(encode_log_append_time([created]))
    assert not batch.log_append_time and batch.records.column("timestamp").to_pylist() == stamps
