"""A Kafka listener on the embedded engine (engine/kafka/embedded.py): librdkafka
produces into `streamhouse.open(dir)` and consumes back, in one process, as a notebook
would; the SDK reads the same records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import streamhouse
from streamhouse.kafka.embedded import serve_kafka
from streamhouse.storage.errors import InvalidInputError


def test_kafka_clients_reach_the_embedded_engine(tmp_path: Path) -> None:
    sh = streamhouse.open(str(tmp_path / "data"))
    try:
        sh.create_topic("notes", 1)
        with serve_kafka(sh) as kafka:
            producer = Producer({"bootstrap.servers": kafka.bootstrap})
            for i in range(20):
                producer.produce("notes", value=b"n%d" % i, key=None if i % 2 else b"k")
            assert producer.flush(20) == 0
            consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "nb"})
            consumer.assign([TopicPartition("notes", 0, 0)])
            got: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(got) < 20 and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    got.append(msg.value())
            consumer.close()
        assert got == [b"n%d" % i for i in range(20)]
        assert sh.read("notes").column("value").to_pylist() == got
    finally:
        sh.close()


def test_agents_use_the_serve_flag_instead() -> None:
    with pytest.raises(InvalidInputError, match="--kafka-port"):
        serve_kafka(streamhouse.connect("127.0.0.1:1"))
