"""A partition whose flushes keep failing for a reason other than a store outage (issue 10,
item 1), on a real agent process: the retries back off instead of spinning, the failure is
logged once, counted in /metrics and makes /health/ready not ready naming the partition;
acknowledged records are kept and committed once the cause is gone; deleting the topic ends
the retries.

The failure is real, not mocked: an object already sits at the key the partition's first
segment will be uploaded to, with other bytes (what a stray writer of the same epoch would
leave). Segment objects are never overwritten, so every attempt fails until it is removed."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import streamhouse
from streamhouse.agent.flush_health import FAULT_CAP_S, OUTAGE_CAP_S, FlushHealth
from streamhouse.storage.errors import StorageUnavailableError, StreamHouseError
from streamhouse.storage.object_store import open_object_store
from streamhouse.storage.partition.roll import segment_key
from tests.agent_process import AgentLauncher, AgentProcess, wait_until

EPOCHS = range(1, 4)  # a new topic's first leadership; a few more in case of a re-acquire


def ready(agent: AgentProcess) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}/health/ready", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def failures(agent: AgentProcess, topic: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf'^streamhouse_flush_failures_total{{topic="{topic}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def block_first_segment(objects: Path, topic: str) -> None:
    async def put() -> None:
        store = open_object_store(f"file://{objects}")
        try:
            for epoch in EPOCHS:
                await store.put(segment_key(topic, 0, 0, epoch), b"not this segment", if_absent=True)
        finally:
            await store.close()

    asyncio.run(put())


def unblock(objects: Path, topic: str) -> None:
    async def delete() -> None:
        store = open_object_store(f"file://{objects}")
        try:
            for epoch in EPOCHS:
                await store.delete(segment_key(topic, 0, 0, epoch))
        finally:
            await store.close()

    asyncio.run(delete())


def start(launcher: AgentLauncher, data: Path) -> AgentProcess:
    return launcher.start("--data-dir", str(data), "--roll-age-ms", "100", http_port=0)


def test_a_failing_flush_backs_off_reports_once_and_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    with AgentLauncher(tmp_path) as launcher:
        agent = start(launcher, data)
        with streamhouse.connect(agent.address) as client:
            client.create_topic("stuck")
            block_first_segment(data / "objects", "stuck")
            acked = client.produce_batch("stuck", [b"one", b"two", b"three"], partition=0)
            assert [r.base_offset for r in acked] == [0]

            _, body = wait_until(lambda: (r := ready(agent))[0] == 503 and r, what="not ready")
            assert "flush of stuck/0 failing" in body["reason"], body
            assert "exists with different content" in body["reason"], body
            first = failures(agent, "stuck")
            time.sleep(4.0)
            # Backoff 0.5, 1, 2, 4 s: a handful of attempts, not the ~60 of a 15/s spin.
            attempts = failures(agent, "stuck") - first
            assert 1 <= attempts <= 4, attempts
            assert client.describe("stuck").partitions[0].durable_end_offset == 0
            # Logged when it started failing, not per attempt.
            log = agent.log_path.read_text()
            assert log.count("flush of stuck/0 failing") == 1, log[-3000:]

            unblock(data / "objects", "stuck")
            wait_until(lambda: client.describe("stuck").partitions[0].durable_end_offset == 3, timeout_s=40)
            assert ready(agent)[0] == 200
            assert "recovered after" in agent.log_path.read_text()
            records = client.consumer("stuck", start="earliest").poll(timeout=10)
            assert records.column("value").to_pylist() == [b"one", b"two", b"three"]


def test_deleting_the_topic_ends_the_retries(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    with AgentLauncher(tmp_path) as launcher:
        agent = start(launcher, data)
        with streamhouse.connect(agent.address) as client:
            client.create_topic("doomed")
            block_first_segment(data / "objects", "doomed")
            client.produce_batch("doomed", [b"x"], partition=0)
            wait_until(lambda: ready(agent)[0] == 503, what="not ready")
            client.delete_topic("doomed")
            assert ready(agent)[0] == 200
            after = failures(agent, "doomed")
            time.sleep(2.5)
            assert failures(agent, "doomed") == after
            # The name is free again and a new topic under it flushes normally.
            unblock(data / "objects", "doomed")
            client.create_topic("doomed")
            client.produce_batch("doomed", [b"y"], partition=0, acks="durable")
            assert client.describe("doomed").partitions[0].durable_end_offset == 1


def test_backoff_doubles_to_its_cap_and_only_faults_make_the_agent_not_ready(caplog: pytest.LogCaptureFixture) -> None:
    health = FlushHealth()
    seen: list[tuple[str, bool, int]] = []
    health.on_change = lambda topic, failed, failing: seen.append((topic, failed, failing))
    key = ("t", 0)
    waits = []
    with caplog.at_level(logging.DEBUG, logger="streamhouse.agent.flush_health"):
        for _ in range(8):
            health.failed(key, StreamHouseError("segment object exists with different content"))
            waits.append(health.wait_s(key))
    assert [round(w) for w in waits[:5]] == [0, 1, 2, 4, 8] and waits[0] > 0.4
    assert max(waits) <= FAULT_CAP_S and waits[-1] > FAULT_CAP_S - 1
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "flush of t/0 failing" in errors[0].getMessage()
    assert list(health.faults()) == [key]
    # A store outage backs off less far and is left to the stores' own readiness probes.
    health.failed(("u", 1), StorageUnavailableError("S3 unreachable"))
    for _ in range(6):
        health.failed(("u", 1), StorageUnavailableError("S3 unreachable"))
    assert health.wait_s(("u", 1)) <= OUTAGE_CAP_S
    assert list(health.faults()) == [key]
    health.succeeded(key)
    assert health.wait_s(key) == 0 and health.faults() == {}
    assert seen[-1] == ("t", False, 1) and seen[0] == ("t", True, 1)
