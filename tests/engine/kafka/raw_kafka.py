"""Test clients of the Kafka listener built on the project's own IO-free codec: one raw request
and its answer (so a test controls every field, e.g. an idempotent batch's producer id, epoch
and sequence), and what a real librdkafka read_committed consumer reads of a partition."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamhouse.kafka.protocol.api import Api, decode_response, encode_request

CORRELATION_ID = 7


def ask(port: int, api: Api, version: int, body: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
    """The answer's body to one request on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(encode_request(api, version, CORRELATION_ID, "raw", body))
        correlation, answer = read_answer(s, api, version)
    assert correlation == CORRELATION_ID
    return answer


def read_answer(s: socket.socket, api: Api, version: int) -> tuple[int, dict[str, Any]]:
    """The next answer on `s`: its correlation id and body."""
    size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
    correlation, answer = decode_response(api, version, s.recv(size, socket.MSG_WAITALL))
    return correlation, dict(answer)


def read_committed_values(bootstrap: str, topic: str, expect: int, partition: int = 0) -> list[bytes]:
    """What a read_committed librdkafka consumer gets of the partition, once it has `expect`
    values and nothing more comes within a second (a value it must not see would come with them)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{time.monotonic_ns()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, partition, 0)])
    got: list[bytes] = []
    deadline, quiet_until = time.monotonic() + 30, None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got.append(message.value())
            if len(got) >= expect:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return got
