"""Readers while retention removes what they read (engine/agent/retention.py, issue 14 item 1), on
PostgreSQL + SeaweedFS: a consumer group and continuous queries keep going (a position below the
log start is reset to it, Kafka-like, and counted); `earliest` means the log start everywhere;
below it the SDK raises OffsetOutOfRangeError, embedded and over gRPC, and a real Kafka client
gets OFFSET_OUT_OF_RANGE and resets to the log start that ListOffsets answers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

import streamhouse
from streamhouse.client.client import Client
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import OffsetOutOfRangeError
from tests.agent_process import kafka_agent, wait_until

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000
TOPIC = (
    "CREATE TOPIC {name} (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) "
    "WITH (partitions = 1)"
)
VIEW = (
    "CREATE MATERIALIZED VIEW {name} WITH ('checkpoint-interval' = '100ms') AS "
    "SELECT window_start, window_end, k, count(*) AS n "
    "FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, k"
)


def produce_old(sh: Client, topic: str, start: int, segments: int, per: int = 50) -> None:
    """`segments` acks=durable batches of `per` records stamped an hour ago (one segment each);
    event times T0 + 10 ms per record."""
    stamp = now_ms() - HOUR_MS
    for s in range(segments):
        first = start + s * per
        values = [{"k": i % 3, "ts": T0 + i * 10} for i in range(first, first + per)]
        sh.produce_batch(topic, values, timestamps=[stamp] * per, acks="durable")


def log_start(sh: Client, topic: str) -> int:
    return sh.describe(topic).partitions[0].log_start


def job(sh: Client, name: str) -> dict[str, object]:
    return next(j for j in sh.sql("SHOW JOBS").to_pylist() if j["job"] == name)


@pytest.fixture
def sh(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[Client]:
    url, endpoint = s3_url
    with streamhouse.open(
        tmp_path / "data", metadata_url=pg_url, object_store_url=url, s3_endpoint=endpoint,
        retention_check_interval_ms=100, renew_interval_ms=200, lease_ttl_ms=2_000,
    ) as client:  # fmt: skip
        yield client


def test_a_consumer_and_jobs_read_on_while_retention_removes(sh: Client) -> None:
    sh.sql(TOPIC.format(name="ev"))
    produce_old(sh, "ev", 0, 20)  # offsets 0-999 in 20 segments
    sh.sql(VIEW.format(name="before"))  # reads while retention removes
    consumer = sh.consumer("ev", group="g", start="earliest")
    first = consumer.poll(timeout=5, max_records=100)
    assert first.column("offset").to_pylist() == list(range(100))
    consumer.commit()

    sh.alter_topic("ev", set={"retention.ms": "60000"})  # everything but the newest segment is old
    wait_until(lambda: log_start(sh, "ev") == 950, what="retention to move the log start")
    [state] = sh.describe("ev").partitions
    assert (state.segments, state.end_offset, state.last_compacted_ms) == (1, 1000, None) and state.size_bytes > 0
    [row] = sh.sql("DESCRIBE TOPIC ev").to_pylist()
    assert row == {
        "partition": 0, "log_start": 950, "end_offset": 1000, "durable_end_offset": 1000, "segments": 1,
        "size_bytes": state.size_bytes, "last_compacted": None,
    }  # fmt: skip
    assert sh.sql("DESCRIBE ev").column("column").to_pylist()[-2:] == ["k", "ts"]  # columns, as before
    # Below the log start: a typed error naming where the log starts now.
    with pytest.raises(OffsetOutOfRangeError) as refused:
        sh.transport.fetch("ev", 0, 100, max_records=10, max_wait_ms=0)
    assert (refused.value.offset, refused.value.log_start) == (100, 950)
    # The consumer's position (100) fell below it: reset to the log start, counted, no error.
    after = consumer.poll(timeout=5, max_records=100)
    assert after.column("offset").to_pylist() == list(range(950, 1000)) and consumer.resets == 1
    consumer.close()
    # `earliest` everywhere is the log start; the SQL scan starts there.
    with sh.consumer("ev", start="earliest") as fresh:
        assert fresh.poll(timeout=5).column("offset")[0].as_py() == 950
    assert sh.read("ev").column("offset").to_pylist() == list(range(950, 1000))
    assert sh.sql("SELECT min(_offset) AS lo, count(*) AS n FROM ev").to_pylist() == [{"lo": 950, "n": 50}]
    assert {o.committed_offset for o in sh.reset_group("g", "ev", "earliest")} == {950}

    # A job created now starts below the log start: it goes on from it and counts the skip.
    # (Retention off first, so the segment it reads next is not removed under it.)
    sh.alter_topic("ev", set={"retention.ms": "-1"})
    sh.sql(VIEW.format(name="after"))
    produce_old(sh, "ev", 1000, 1)  # more records: both jobs keep running
    wait_until(lambda: job(sh, "after")["rows_in"] == 100, what="the new job to read from the log start")
    assert job(sh, "after")["retention_skipped"] == 950
    assert sh.describe_job("after").retention_skipped == 950
    wait_until(lambda: job(sh, "before")["source_lag"] == 0, what="the first job to catch up")
    for name in ("before", "after"):
        state = job(sh, name)
        assert str(state["state"]).startswith("running"), state
    before_rows = int(job(sh, "before")["rows_in"])  # type: ignore[call-overload]
    assert 100 <= before_rows <= 1050  # what it read before retention, then on from the log start


def test_agent_process_kafka_and_remote_sdk_below_the_log_start(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str]
) -> None:
    """The server defaults (--retention-ms), a remote client over gRPC and librdkafka."""
    flags = ("--retention-ms", "60000", "--retention-check-interval-ms", "200", "--http-port", "0")
    with kafka_agent(tmp_path, pg_url, s3_url, *flags) as (process, port), streamhouse.connect(process.address) as sh:
        sh.create_topic("kt", 1)
        produce_old(sh, "kt", 0, 4)  # offsets 0-199, four segments
        wait_until(lambda: log_start(sh, "kt") == 150, what="the server default retention")
        with pytest.raises(OffsetOutOfRangeError) as refused:
            sh.transport.fetch("kt", 0, 10, max_records=10, max_wait_ms=0)
        assert (refused.value.topic, refused.value.partition, refused.value.log_start) == ("kt", 0, 150)

        # REST: the log start in the topic's partitions, 416 below it, a group's old commit reset.
        rest = f"http://127.0.0.1:{process.http_port}/v1"
        [part] = get_json(f"{rest}/topics/kt")["partitions"]
        assert (part["log_start_offset"], part["segments"], part["last_compacted_ms"]) == (150, 1, None)
        with pytest.raises(urllib.error.HTTPError) as below:
            get_json(f"{rest}/topics/kt/partitions/0/records?offset=10")
        assert below.value.code == 416 and json.loads(below.value.read())["code"] == "offset_out_of_range"
        sh.commit("rg", "kt", {0: 10})
        read = get_json(f"{rest}/consumer-groups/rg/topics/kt/records?max_records=5")
        assert [r["offset"] for r in read["records"]] == list(range(150, 155))

        bootstrap = f"127.0.0.1:{port}"
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "k1", "auto.offset.reset": "earliest"})
        try:
            assert reader.get_watermark_offsets(TopicPartition("kt", 0), timeout=10) == (150, 200)
            reader.assign([TopicPartition("kt", 0, 10)])  # below: OFFSET_OUT_OF_RANGE, then earliest
            got = poll_values(reader, lambda got: len(got) == 50)
            assert [offset for offset, _ in got] == list(range(150, 200))
        finally:
            reader.close()
        strict = Consumer({"bootstrap.servers": bootstrap, "group.id": "k2", "auto.offset.reset": "error"})
        try:
            strict.assign([TopicPartition("kt", 0, 10)])
            deadline = time.monotonic() + 15
            error = None
            while error is None and time.monotonic() < deadline:
                msg = strict.poll(0.5)
                if msg is not None and msg.error() is not None:
                    error = msg.error()
            assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET, error
            assert "out of range" in str(error).lower()
        finally:
            strict.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def poll_values(consumer: Consumer, done: Callable[[list[tuple[int, bytes]]], bool]) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 20
    while not done(got) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append((msg.offset(), msg.value()))
    return got
