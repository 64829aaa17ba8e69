"""Pipelined requests on one Kafka connection (engine/kafka/server.py), against a real
`streamhouse serve --kafka-port` subprocess on PostgreSQL + SeaweedFS, driven by a raw socket
with the project's own protocol encoders.

Five acks=all produces sent back to back share segment commits instead of waiting for one
each: all five answers arrive, in request order, with offsets in send order, in well under
five durable-flush windows. A Fetch sent right behind a produce on the same connection sees
its records (each request is applied before the next is read); acks=0 produces are applied
in order without an answer; a bad frame behind good produces gets those answered, then the
connection closes. An idempotent producer's pipelined batches are sequence-checked in order
and share commits too; a retry sent right behind its original gets the original's offsets.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamhouse
from streamhouse.kafka.protocol.api import Api, decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import FETCH, PRODUCE
from streamhouse.kafka.record.batch import iter_batches
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.storage.records.schema import make_batch
from tests.agent_process import AgentProcess, kafka_agent

TOPIC = "pipelined"
FLUSH_MS = 1000  # a wide durable window: serial handling would need about one per request


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, int]]:
    with kafka_agent(tmp_path, pg_url, s3_url, "--durable-flush-ms", str(FLUSH_MS)) as (process, port):
        with streamhouse.connect(process.address) as client:
            client.create_topic(TOPIC, 1)
        yield process, port


def _produce(correlation_id: int, values: list[bytes], acks: int = -1, sequence: int = -1) -> bytes:
    """A Produce of `values` to partition 0; with a `sequence`, as idempotent producer 4242."""
    idempotent = {"producer_id": 4242, "producer_epoch": 0, "base_sequence": sequence} if sequence >= 0 else {}
    batch = encode_batch(make_batch(values, timestamps=[1_700_000_000_000] * len(values)), **idempotent)
    request = {"acks": acks, "timeout_ms": 30_000, "topic_data": [
        {"name": TOPIC, "partition_data": [{"index": 0, "records": batch}]}]}  # fmt: skip
    return encode_request(PRODUCE, 9, correlation_id, "raw", request)


def _fetch(correlation_id: int, offset: int, max_wait_ms: int = 0) -> bytes:
    request = {"replica_id": -1, "max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": 10**7, "isolation_level": 0,
               "topics": [{"topic": TOPIC, "partitions": [
                   {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 10**7}]}]}  # fmt: skip
    return encode_request(FETCH, 11, correlation_id, "raw", request)


def _read_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _answer(s: socket.socket, api: Api, version: int) -> tuple[int, dict[str, Any]]:
    (size,) = struct.unpack(">i", _read_exactly(s, 4))
    correlation_id, body = decode_response(api, version, _read_exactly(s, size))
    return correlation_id, body


def _partition(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body["responses"][0]["partition_responses"][0])


def _fetched_values(body: dict[str, Any]) -> list[bytes]:
    part = body["responses"][0]["partitions"][0]
    assert part["error_code"] == 0
    return [v for b in iter_batches(part["records"]) for v in b.records.column("value").to_pylist()]


def test_durable_produces_in_flight_share_commits_and_answer_in_order(agent: tuple[AgentProcess, int]) -> None:
    _, port = agent
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(_produce(1, [b"warm-up"]))  # starts the partition's durable window
        assert _partition(_answer(s, PRODUCE, 9)[1])["base_offset"] == 0

        started = time.monotonic()
        s.sendall(b"".join(_produce(10 + i, [f"r{i}-{j}".encode() for j in range(3)]) for i in range(5)))
        answers = [_answer(s, PRODUCE, 9) for _ in range(5)]
        took = time.monotonic() - started

        assert [cid for cid, _ in answers] == [10, 11, 12, 13, 14]  # request order
        parts = [_partition(body) for _, body in answers]
        assert [p["error_code"] for p in parts] == [0] * 5
        assert [p["base_offset"] for p in parts] == [1, 4, 7, 10, 13]  # send order
        # One request at a time would wait for a window each: about 5 s. In flight together,
        # they need one or two windows plus the uploads.
        assert took < 2.5 * FLUSH_MS / 1000, f"5 durable produces took {took:.2f} s"

        # A Fetch right behind a produce on the same connection sees it: as on a Kafka broker,
        # which handles a connection's requests one at a time, the Fetch is handled only after the
        # acks=all produce before it is answered (committed), so the high watermark holds it.
        s.sendall(_produce(20, [b"just-sent"]) + _fetch(21, 16))
        cid, body = _answer(s, PRODUCE, 9)
        assert (cid, _partition(body)["base_offset"]) == (20, 16)
        cid, body = _answer(s, FETCH, 11)
        assert cid == 21 and _fetched_values(body) == [b"just-sent"]

        # acks=0 answers nothing, yet is applied in order before the Fetch behind it; reads end
        # at the high watermark, so the long-poll is answered once the round it starts commits.
        s.sendall(_produce(30, [b"no-ack-1"], acks=0) + _produce(31, [b"no-ack-2"], acks=0) + _fetch(32, 17, 10_000))
        cid, body = _answer(s, FETCH, 11)
        assert cid == 32 and _fetched_values(body) == [b"no-ack-1", b"no-ack-2"]


def test_a_bad_frame_behind_produces_answers_them_then_closes(agent: tuple[AgentProcess, int]) -> None:
    process, port = agent
    garbage = struct.pack(">ihhih", 10, 999, 0, 77, -1)  # an API key nobody serves
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(_produce(1, [b"a"]) + _produce(2, [b"b"]) + garbage + _produce(3, [b"never"]))
        first, second = _answer(s, PRODUCE, 9), _answer(s, PRODUCE, 9)
        assert [first[0], second[0]] == [1, 2]
        assert [_partition(first[1])["base_offset"], _partition(second[1])["base_offset"]] == [0, 1]
        assert s.recv(65536) == b""  # closed: nothing behind the bad frame was answered
    with streamhouse.connect(process.address) as client:
        assert client.read(TOPIC).column("value").to_pylist() == [b"a", b"b"]  # nor applied


def test_idempotent_batches_in_flight_are_checked_in_order_and_share_commits(agent: tuple[AgentProcess, int]) -> None:
    process, port = agent
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(_produce(1, [b"warm-up"]))
        assert _partition(_answer(s, PRODUCE, 9)[1])["base_offset"] == 0

        started = time.monotonic()
        s.sendall(b"".join(_produce(10 + i, [b"i"] * 3, sequence=3 * i) for i in range(5)))
        answers = [_answer(s, PRODUCE, 9) for _ in range(5)]
        took = time.monotonic() - started
        assert [cid for cid, _ in answers] == [10, 11, 12, 13, 14]
        parts = [_partition(body) for _, body in answers]
        assert [(p["error_code"], p["base_offset"]) for p in parts] == [(0, 1), (0, 4), (0, 7), (0, 10), (0, 13)]
        # The producer's lock is held until a batch has its offsets, not until its commit.
        assert took < 2.5 * FLUSH_MS / 1000, f"5 idempotent durable produces took {took:.2f} s"

        # A retry right behind its original (still waiting for its commit) is not written
        # again: it gets the original's offset once the original is acknowledged. A gap is refused.
        s.sendall(_produce(20, [b"j"] * 2, sequence=15) + _produce(21, [b"j"] * 2, sequence=15)
                  + _produce(22, [b"gap"], sequence=40))  # fmt: skip
        answers = [_answer(s, PRODUCE, 9) for _ in range(3)]
        assert [cid for cid, _ in answers] == [20, 21, 22]
        parts = [_partition(body) for _, body in answers]
        assert [(p["error_code"], p["base_offset"]) for p in parts[:2]] == [(0, 16), (0, 16)]
        assert parts[2]["error_code"] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    with streamhouse.connect(process.address) as client:
        assert client.read(TOPIC).num_rows == 1 + 15 + 2
