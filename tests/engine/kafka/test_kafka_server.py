"""The Kafka listener (engine/kafka/server.py) of a real `streamhouse serve --kafka-port`
subprocess on PostgreSQL + SeaweedFS, driven by a real Kafka client: confluent-kafka
(librdkafka) produces with every compression codec and consumes back; the records are the
same ones our SDK reads (offsets, keys, values, headers, CreateTime timestamps; null vs
empty). Raw sockets then send garbage, oversize frames, unknown versions, a corrupt
batch and a produce to a missing topic: each is refused without writing anything, and the
listener keeps serving the real client.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import streamhouse
from streamhouse.kafka.protocol.api import APIS, decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import API_VERSIONS, FETCH, PRODUCE
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.records.schema import make_batch
from tests.agent_process import AgentProcess, kafka_agent

TOPIC = "kafka-in"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, int]]:
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        with streamhouse.connect(process.address) as client:
            client.create_topic(TOPIC, 2)
        yield process, port


def _records(codec: str) -> list[dict[str, Any]]:
    out = []
    for i in range(24):
        out.append(
            {
                "partition": i % 2,
                "key": [None, b"", f"k{i}".encode()][i % 3],
                "value": [f"{codec}-{i}".encode(), b"", None, b"x" * 300][i % 4],
                "headers": [None, [("h", b"1"), ("empty", b""), ("null", None)], [("ключ", b"\x00\xff")]][i % 3],
                "timestamp": 1_700_000_000_000 + 7 * i,
            }
        )
    return out


def _produce(port: int, codec: str, records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    delivered: list[tuple[int, int]] = []
    errors: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))

    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all", "compression.type": codec, "linger.ms": 20,
         "message.timeout.ms": 20000}
    )  # fmt: skip
    for r in records:
        producer.produce(
            TOPIC, value=r["value"], key=r["key"], partition=r["partition"], headers=r["headers"],
            timestamp=r["timestamp"], on_delivery=report,
        )  # fmt: skip
    assert producer.flush(30) == 0
    assert errors == []
    return delivered


def _consume(port: int, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, 0), TopicPartition(TOPIC, 1, 0)])
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(
                {"partition": msg.partition(), "offset": msg.offset(), "key": msg.key(), "value": msg.value(),
                 "headers": msg.headers(), "timestamp": msg.timestamp()[1]}
            )  # fmt: skip
    finally:
        consumer.close()
    return got


def _plain_headers(headers: Any) -> list[tuple[str, bytes | None]] | None:
    return None if not headers else [(k, v) for k, v in headers]


def test_librdkafka_produces_every_codec_and_reads_back_what_the_sdk_reads(agent: tuple[AgentProcess, int]) -> None:
    process, port = agent
    sent: dict[tuple[int, int], dict[str, Any]] = {}
    for codec in CODECS:
        records = _records(codec)
        delivered = _produce(port, codec, records)
        # Delivery reports come per partition in order; pair them with what was sent there.
        for p in (0, 1):
            offsets = sorted(o for q, o in delivered if q == p)
            mine = [r for r in records if r["partition"] == p]
            assert len(offsets) == len(mine)
            sent.update({(p, o): r for o, r in zip(offsets, mine, strict=True)})
    assert sorted(o for p, o in sent if p == 0) == list(range(60))  # dense, nothing twice

    with streamhouse.connect(process.address) as client:
        table = client.read(TOPIC)
    assert table.num_rows == len(sent)
    for row in table.to_pylist():
        r = sent[(row["partition"], row["offset"])]
        assert (row["key"], row["value"], row["timestamp"]) == (r["key"], r["value"], r["timestamp"])
        headers = None if not row["headers"] else [(h["key"], h["value"]) for h in row["headers"]]
        assert headers == r["headers"]

    consumed = _consume(port, len(sent))
    assert len(consumed) == len(sent)
    for m in consumed:
        r = sent[(m["partition"], m["offset"])]
        assert (m["key"], m["value"], m["timestamp"]) == (r["key"], r["value"], r["timestamp"])
        assert _plain_headers(m["headers"]) == r["headers"]


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Sends bytes, returns everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if len(b"".join(chunks)) >= 4 and len(b"".join(chunks)) - 4 >= struct.unpack(">i", chunks[0][:4])[0]:
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _closed_without_answer(port: int, data: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return s.recv(65536) == b""


def test_hostile_bytes_are_refused_and_the_listener_keeps_serving(agent: tuple[AgentProcess, int]) -> None:
    process, port = agent
    assert _closed_without_answer(port, b"\x00\x00\x00\x10" + b"garbage bytes!!!")
    assert _closed_without_answer(port, struct.pack(">i", 2**31 - 1) + b"x" * 100)  # oversize: not read
    assert _closed_without_answer(port, struct.pack(">i", -1))
    assert _closed_without_answer(port, struct.pack(">ihhih", 10, 999, 0, 1, -1))  # unknown API key

    # ApiVersions of a version from the future: answered in v0 format with what we serve.
    frame = struct.pack(">hhih", API_VERSIONS.key, 99, 42, -1)
    answer = _exchange(port, struct.pack(">i", len(frame)) + frame)
    correlation_id, body = decode_response(API_VERSIONS, 0, answer[4:])
    assert (correlation_id, body["error_code"]) == (42, 35)
    served = {e["api_key"] for e in body["api_keys"]}
    # Exactly the APIs the listener answers (every one the codec has but the SASL ones, served
    # only with --auth: engine/kafka/sasl/); not KIP-848's (68, 69).
    assert served == set(APIS) - {17, 36}

    # A batch with a broken CRC32C: CORRUPT_MESSAGE, and nothing is stored.
    batch = bytearray(encode_batch(make_batch([b"never stored"], timestamps=[1])))
    batch[-1] ^= 0xFF
    for topic, expected in ((TOPIC, 2), ("no-such-topic", 3)):
        request = {"acks": -1, "timeout_ms": 5000, "topic_data": [
            {"name": topic, "partition_data": [{"index": 0, "records": bytes(batch) if topic == TOPIC else
                                                encode_batch(make_batch([b"x"], timestamps=[1]))}]}]}  # fmt: skip
        answer = _exchange(port, encode_request(PRODUCE, 9, 7, "raw", request))
        _, body = decode_response(PRODUCE, 9, answer[4:])
        assert body["responses"][0]["partition_responses"][0]["error_code"] == expected

    # Record batches of zero records (a valid header, count 0), one or two of them: refused for
    # their partition (INVALID_REQUEST), nothing stored, the connection and listener still serve.
    body = struct.pack(">hiqqqhii", 0, -1, 1, 1, -1, -1, -1, 0)
    empty = struct.pack(">qiibI", 0, len(body) + 9, -1, 2, crc32c.crc32c(body)) + body
    for records in (empty, empty + empty):
        request = {"acks": -1, "timeout_ms": 5000, "topic_data": [
            {"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}]}  # fmt: skip
        answer = _exchange(port, encode_request(PRODUCE, 9, 8, "raw", request))
        _, body_ = decode_response(PRODUCE, 9, answer[4:])
        assert body_["responses"][0]["partition_responses"][0]["error_code"] == 42

    # The real client is unaffected, and only its records are there.
    delivered = _produce(port, "lz4", _records("after")[:4])
    assert sorted(delivered) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with streamhouse.connect(process.address) as client:
        assert client.read(TOPIC).num_rows == 4


def test_list_offsets_earliest_latest_and_by_timestamp(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    records = _records("ts")  # partition 0 gets timestamps base + 14 * k, k = 0..11
    _produce(port, "none", records)
    base = records[0]["timestamp"]
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "unused"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=20) == (0, 12)
        asked = [TopicPartition(TOPIC, 0, base), TopicPartition(TOPIC, 0, base + 15),
                 TopicPartition(TOPIC, 0, base + 10**9)]  # fmt: skip
        found = [consumer.offsets_for_times([tp], timeout=20)[0].offset for tp in asked]
        assert found == [0, 2, -1]  # first at or after the time; none after the last
    finally:
        consumer.close()


def test_fetch_max_bytes_bounds_the_response_but_the_first_batch_goes_whole(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    big = [{"partition": p, "key": None, "value": b"v" * 5000, "headers": None, "timestamp": 1} for p in (0, 1)]
    _produce(port, "none", big)
    request = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 100, "isolation_level": 0,
               "topics": [{"topic": TOPIC, "partitions": [
                   {"partition": p, "fetch_offset": 0, "partition_max_bytes": 100} for p in (0, 1)]}]}  # fmt: skip
    answer = _exchange(port, encode_request(FETCH, 11, 3, "raw", request))
    _, body = decode_response(FETCH, 11, answer[4:])
    first, second = body["responses"][0]["partitions"]
    assert first["error_code"] == second["error_code"] == 0
    assert len(first["records"]) > 5000  # over both limits, yet whole: one record must always get through
    assert len(second["records"]) == 0 and second["high_watermark"] == 1  # the budget is spent


def test_fetch_waits_for_min_bytes_or_max_wait(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    _produce(port, "none", [{"partition": 0, "key": None, "value": b"small", "headers": None, "timestamp": 1}])

    def fetch(min_bytes: int, max_wait_ms: int) -> tuple[float, int]:
        request = {"replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": min_bytes, "max_bytes": 10**7,
                   "isolation_level": 0, "topics": [{"topic": TOPIC, "partitions": [
                       {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 10**7}]}]}  # fmt: skip
        started = time.monotonic()
        answer = _exchange(port, encode_request(FETCH, 11, 3, "raw", request))
        _, body = decode_response(FETCH, 11, answer[4:])
        return time.monotonic() - started, len(body["responses"][0]["partitions"][0]["records"])

    took, size = fetch(1, 5000)
    assert took < 2 and size > 0  # MinBytes already there: at once
    took, size = fetch(50_000, 1500)
    assert 1.2 < took < 5 and size > 0  # never reached: MaxWaitMs, then what there is
    more = threading.Timer(0.5, _produce, args=(port, "none", [
        {"partition": 0, "key": None, "value": b"v" * 40_000, "headers": None, "timestamp": 2}]))  # fmt: skip
    more.start()
    took, size = fetch(20_000, 10_000)
    more.join()
    assert took < 8 and size > 40_000  # reached by a produce during the wait: answered then
