"""ListOffsets' special timestamps on a real `streamhouse serve --kafka-port` subprocess on
PostgreSQL + SeaweedFS (engine/kafka/handlers.py, SPECIAL_TIMESTAMP_VERSIONS):

- -4 EARLIEST_LOCAL (KIP-405, v8+) answers the log start offset, as -2 does; -5 LATEST_TIERED
  (KIP-1005, v9+) answers "unknown" (offset, timestamp and leader epoch -1): what a Kafka broker
  without tiered storage answers, since a StreamHouse partition is one log.
- A special timestamp at a version older than the one that allows it (-3 below v7, -4 below
  v8, -5 below v9; -6 and values below it always) is refused UNSUPPORTED_VERSION for that
  partition alone, before anything is looked up; the request's other partitions are answered.
- Driven with the repo's IO-free codec (raw frames) and with kafka-python's admin client
  (`OffsetSpec.EARLIEST_LOCAL` / `LATEST_TIERED`, which needs the listener to offer v8/v9).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.protocol.consumer.offsets import OffsetSpec

import streamhouse
from streamhouse.kafka.protocol.messages_data import API_VERSIONS, LIST_OFFSETS
from tests.agent_process import kafka_agent
from tests.engine.kafka.raw_kafka import ask

TOPIC = "offsets"
UNSUPPORTED_VERSION = 35
STAMPS = [500, 100, 900, 300, 900, 200]  # the largest (900) first at offset 2


@pytest.fixture
def kafka(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[int]:
    """The Kafka port of one agent whose topic has 6 records on partition 0, none on 1."""
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        with streamhouse.connect(process.address) as client:
            client.create_topic(TOPIC, 2)
            client.produce_batch(TOPIC, [b"x"] * len(STAMPS), timestamps=STAMPS, partition=0, acks="durable")
        yield port


def _list(port: int, version: int, asked: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """(error code, offset, timestamp, leader epoch) per (partition, timestamp) asked, in order."""
    body = {"replica_id": -1, "isolation_level": 0, "topics": [{"name": TOPIC, "partitions": [
        {"partition_index": p, "current_leader_epoch": -1, "timestamp": ts} for p, ts in asked]}]}  # fmt: skip
    [topic] = ask(port, LIST_OFFSETS, version, body, timeout_s=20)["topics"]
    got = topic["partitions"]
    assert [p["partition_index"] for p in got] == [p for p, _ in asked]
    # leader_epoch exists from v4 on; older versions decode without it.
    return [(p["error_code"], p["offset"], p["timestamp"], p.get("leader_epoch", -1)) for p in got]


def test_the_listener_offers_list_offsets_up_to_v9(kafka: int) -> None:
    versions = ask(kafka, API_VERSIONS, 3, {"client_software_name": "t", "client_software_version": "1"}, timeout_s=20)
    ranges = versions["api_keys"]
    [entry] = [r for r in ranges if r["api_key"] == LIST_OFFSETS.key]
    assert (entry["min_version"], entry["max_version"]) == (1, 9)


@pytest.mark.parametrize("version", [8, 9])
def test_earliest_local_is_the_log_start_and_latest_tiered_is_unknown(kafka: int, version: int) -> None:
    asked = [(0, -2), (0, -4), (1, -4), (0, -1), (0, -3)]
    answers = _list(kafka, version, asked)
    assert answers[:4] == [(0, 0, -1, 0), (0, 0, -1, 0), (0, 0, -1, 0), (0, len(STAMPS), -1, 0)]
    assert answers[4] == (0, 2, 900, 0)  # MAX_TIMESTAMP: the first record holding the largest
    tiered = _list(kafka, version, [(0, -5), (1, -5)])
    if version >= 9:
        assert tiered == [(0, -1, -1, -1), (0, -1, -1, -1)]  # nothing is tiered: unknown
    else:
        assert tiered == [(UNSUPPORTED_VERSION, -1, -1, -1)] * 2


@pytest.mark.parametrize(
    ("version", "timestamp"),
    [(6, -3), (1, -3), (7, -4), (1, -4), (8, -5), (7, -5), (9, -6), (9, -7), (9, -1000)],
)
def test_a_timestamp_the_version_does_not_allow_is_refused_for_its_partition(
    kafka: int, version: int, timestamp: int
) -> None:
    """Kafka's refusal (ReplicaManager.timestampMinSupportedVersion): that partition gets
    UNSUPPORTED_VERSION, the request's other partitions their answers, and the connection
    stays usable."""
    asked = [(0, -1), (0, timestamp), (1, timestamp), (0, 100)]
    answers = _list(kafka, version, asked)
    assert answers[0][:3] == (0, len(STAMPS), -1)
    assert [a[:3] for a in answers[1:3]] == [(UNSUPPORTED_VERSION, -1, -1)] * 2
    assert answers[3][:3] == (0, 0, 500)  # by time: the first record at or after 100


def test_an_unknown_partition_is_still_refused_as_unknown(kafka: int) -> None:
    assert _list(kafka, 9, [(5, -4), (5, -5)])[0][0] == 3  # UNKNOWN_TOPIC_OR_PARTITION
    assert _list(kafka, 9, [(5, -5)]) == [(3, -1, -1, 0)]


def test_kafka_python_admin_lists_earliest_local_and_latest_tiered(kafka: int) -> None:
    """kafka-python asks -4 at v8+ and -5 at v9+ (ListOffsetsRequest.min_version_for_timestamp),
    so it can only send them because the listener offers those versions."""
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{kafka}", request_timeout_ms=20000)
    try:
        p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)

        def offsets(spec: OffsetSpec) -> dict[TopicPartition, tuple[int, int]]:
            found = admin.list_partition_offsets({p0: spec, p1: spec})
            return {tp: (o.offset, o.timestamp) for tp, o in found.items()}

        assert offsets(OffsetSpec.EARLIEST_LOCAL) == offsets(OffsetSpec.EARLIEST) == {p0: (0, -1), p1: (0, -1)}
        assert offsets(OffsetSpec.LATEST_TIERED) == {p0: (-1, -1), p1: (-1, -1)}
        assert offsets(OffsetSpec.LATEST) == {p0: (len(STAMPS), -1), p1: (0, -1)}
        assert offsets(OffsetSpec.MAX_TIMESTAMP)[p0] == (2, 900)
    finally:
        admin.close()
