"""acks=all past the request's timeout_ms (engine/kafka/handlers_produce.py).

An acks=all answer waits for a segment commit, which an object-store outage holds back. As a
Kafka broker does, the agent answers REQUEST_TIMED_OUT once the request's timeout_ms is
(nearly) spent instead of holding the answer for the whole outage; a real idempotent client
(librdkafka) then retries the same sequences, which get the original offsets: every
record is in the log once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

import streamhouse
from tests.agent_process import AgentLauncher, free_port, read_log

TOPIC = "slow-commits"


def test_a_commit_held_past_the_timeout_is_answered_in_time_and_retried_once(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    with AgentLauncher(tmp_path) as launcher:
        port = free_port()
        agent = launcher.start(
            *("--data-dir", str(tmp_path / "a"), "--object-store", f"file://{objects}"),
            *("--kafka-advertised", f"127.0.0.1:{port}"),
            kafka_port=port,
        )
        with streamhouse.connect(agent.address) as client:
            client.create_topic(TOPIC, 1)
        # The object store fails every roll of the topic while a file sits where its
        # partition directory goes: the records wait in the WAL, unacknowledged.
        blocker = objects / "topics" / TOPIC / "00000"
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_bytes(b"in the way")
        stats: list[dict[str, Any]] = []
        errors: list[object] = []
        producer = Producer(
            {"bootstrap.servers": f"127.0.0.1:{port}", "enable.idempotence": True, "acks": "all",
             "request.timeout.ms": 2500, "message.timeout.ms": 60000, "retry.backoff.ms": 100,
             "linger.ms": 5, "statistics.interval.ms": 500, "stats_cb": lambda s: stats.append(json.loads(s))}
        )  # fmt: skip
        sent = [f"record-{i}".encode() for i in range(300)]
        for value in sent:
            producer.produce(TOPIC, value=value, partition=0, on_delivery=lambda err, _m: err and errors.append(err))
        down_until = time.monotonic() + 6.0  # over two request timeouts with the store down
        while time.monotonic() < down_until:
            producer.poll(0.2)
        assert producer.flush(0.1) > 0, "records were acknowledged before any segment could commit"
        blocker.unlink()
        assert producer.flush(60) == 0
        producer.poll(1.0)
        assert errors == []
        assert stats, "no librdkafka statistics"
        brokers = stats[-1]["brokers"].values()
        # Answered REQUEST_TIMED_OUT while the store was down, the batch was sent again
        # (with its sequence): more Produce requests than batches, none timed out by the client.
        assert sum(b["req"].get("Produce", 0) for b in brokers) >= 2, "the held produce was never answered early"
        assert sum(b["req_timeouts"] for b in brokers) == 0, "the client timed a request out: it was answered late"
        with streamhouse.connect(agent.address) as client:
            assert read_log(client, TOPIC)[0] == sent  # each record once, in order, dense offsets
