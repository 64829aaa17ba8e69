"""A Kafka listener on the embedded engine (engine/client/kafka_listener.py): librdkafka
produces into `streamhouse.open(dir)` and consumes back, in one process, as a notebook
would; the SDK reads the same records."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import streamhouse
from streamhouse.client.kafka_listener import serve_kafka
from streamhouse.storage.errors import AddressInUseError, InvalidInputError


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


def test_librdkafka_lists_every_topic(tmp_path: Path) -> None:
    """An all-topics Metadata v12 (AdminClient.list_topics() with no topic) carries three bytes
    after its body from librdkafka; Kafka ignores them, and so must the listener."""
    with streamhouse.open(str(tmp_path / "data"), kafka_port=0) as sh:
        sh.create_topic("a", 2)
        sh.create_topic("b", 1)
        assert sh.kafka_bootstrap is not None
        admin = AdminClient({"bootstrap.servers": sh.kafka_bootstrap})
        listed = admin.list_topics(timeout=20).topics
        assert {"a", "b"} <= set(listed) and len(listed["a"].partitions) == 2
        producer = Producer({"bootstrap.servers": sh.kafka_bootstrap})
        assert {"a", "b"} <= set(producer.list_topics(timeout=20).topics)


def test_agents_use_the_serve_flag_instead() -> None:
    with pytest.raises(InvalidInputError, match="--kafka-port"):
        serve_kafka(streamhouse.connect("127.0.0.1:1"))


def test_open_with_kafka_port_serves_until_close(tmp_path: Path) -> None:
    """`streamhouse.open(dir, kafka_port=0)`: a consumer group commits through Kafka, the SDK
    sees the same records and offsets, and close() stops the listener with the engine."""
    sh = streamhouse.open(str(tmp_path / "data"), kafka_port=0)
    bootstrap = sh.kafka_bootstrap
    assert bootstrap is not None and bootstrap.startswith("127.0.0.1:")
    try:
        sh.create_topic("events", 2)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(40):
            producer.produce("events", value=b"e%d" % i, key=b"k%d" % i, headers=[("n", b"%d" % i)])
        assert producer.flush(20) == 0
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "nb", "auto.offset.reset": "earliest",
             "enable.auto.commit": False}
        )  # fmt: skip
        consumer.subscribe(["events"])
        got: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 60
        while len(got) < 40 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got[msg.value()] = dict(msg.headers() or [])["n"]
        consumer.commit(asynchronous=False)
        consumer.close()
        assert got == {b"e%d" % i: b"%d" % i for i in range(40)}
        table = sh.read("events")
        rows = sorted(zip(table.column("value").to_pylist(), table.column("key").to_pylist(), strict=True))
        assert rows == sorted((b"e%d" % i, b"k%d" % i) for i in range(40))
        # The group's Kafka commits are the SDK's committed offsets: one store, one meaning.
        offsets = sh.committed("nb", "events")
        assert [(o.committed_offset, o.lag) for o in offsets] == [(o.end_offset, 0) for o in offsets]
        assert sum(o.end_offset for o in offsets) == 40 and all(o.end_offset > 0 for o in offsets)
    finally:
        sh.close()
    host, port = bootstrap.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=5):
        pass
    # The directory is free again, and a second engine can listen on the very same port.
    with streamhouse.open(str(tmp_path / "data"), kafka_port=int(port)) as again:
        assert again.kafka_bootstrap == bootstrap
        assert len(again.read("events")) == 40


def test_a_taken_kafka_port_is_one_error_and_leaves_nothing_open(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AddressInUseError, match=f"127.0.0.1:{port} \\(Kafka\\)"):
            streamhouse.open(str(tmp_path / "data"), kafka_port=port)
    with pytest.raises(InvalidInputError, match="kafka_port"):
        streamhouse.open(str(tmp_path / "data"), kafka_port=-1)
    # Neither attempt kept the data directory's lock.
    with streamhouse.open(str(tmp_path / "data")) as sh:
        assert sh.kafka_bootstrap is None
    assert streamhouse.connect("127.0.0.1:1").kafka_bootstrap is None
