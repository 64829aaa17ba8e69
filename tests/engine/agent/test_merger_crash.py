"""kill -9 of a real agent subprocess in the middle of a merge (engine/agent/merger.py), on
PostgreSQL + SeaweedFS, while acks=durable producers write: no acknowledged record lost or
repeated, the log unchanged by the half-done merge, its uploaded object referenced by nothing,
and the restarted agent finishes the merging.

The crash is placed on purpose: the test holds the partition's segment rows locked (FOR UPDATE)
in its own transaction, so the agent's merger downloads, merges and uploads, then waits in its
swap; the test sees the merged object in the store and kills the agent right there."""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

import streamhouse
from streamhouse.agent.merger import MergeSettings, plan_runs
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.object_store import open_object_store
from tests.agent_process import AgentLauncher, Ledger, Producer, check_ledger, read_log

TOPIC = "merged"
MERGING = {
    "STREAMHOUSE_MERGE_INTERVAL_MS": "200",
    "STREAMHOUSE_MERGE_MIN_SEGMENTS": "4",
    "STREAMHOUSE_MERGE_GRACE_MS": "0",  # raised to query_timeout_s + 5 s by the agent
}


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def flags(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> list[str]:
    url, endpoint = s3_url
    return [
        *("--data-dir", str(tmp_path / "a"), "--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint),
        *("--roll-age-ms", "600000", "--lease-ttl-ms", "3000", "--renew-interval-ms", "1000"),
    ]


def produce_for(address: str, ledger: Ledger, seconds: float, name: str) -> Producer:
    producer = Producer(name, address, ledger, topic=TOPIC, partitions=1, acks="durable", retries=False)
    producer.start()
    threading.Timer(seconds, producer.stopping.set).start()
    return producer


async def test_kill_9_mid_merge_loses_nothing_and_leaves_only_an_unreferenced_object(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    metadata = await open_metadata_store(pg_url)
    store = open_object_store(s3_url[0], s3_endpoint=s3_url[1])
    ledger = Ledger()
    # 1. Many small durable segments, written with merging off.
    first = agents.start(*flags(tmp_path, pg_url, s3_url), name="a", env={"STREAMHOUSE_MERGE_INTERVAL_MS": "0"})
    with streamhouse.connect(first.address) as client:
        client.create_topic(TOPIC, 1)
    producer = produce_for(first.address, ledger, 2.0, "p1")
    await asyncio.to_thread(producer.join, 30)
    assert producer.failure is None
    first.stop()
    before = await metadata.list_segments(TOPIC, 0)
    assert len(before) >= 20

    # 2. The rows held: the restarted agent (merging on) uploads its merge and waits in the swap.
    conn = await asyncpg.connect(pg_url)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT base_offset FROM segments WHERE topic = $1 FOR UPDATE", TOPIC)
    second = agents.start(*flags(tmp_path, pg_url, s3_url), name="a", env=MERGING)
    producer = produce_for(second.address, ledger, 60.0, "p2")  # writes on while the merge waits

    async def merged_objects() -> set[str]:
        return {o.key for o in await store.list(f"topics/{TOPIC}/") if "-merged-" in o.key}

    for _ in range(300):
        leftover = await merged_objects()
        if leftover:
            break
        await asyncio.sleep(0.05)
    assert leftover, "the merger never uploaded a merged segment"
    second.kill()
    producer.stopping.set()
    await asyncio.to_thread(producer.join, 30)
    await tx.rollback()
    await conn.close()

    # 3. Nothing swapped: the rows read before are all still there, the upload referenced by none.
    rows = await metadata.list_segments(TOPIC, 0)
    keys = {s.object_key for s in rows}
    assert {s.object_key for s in before} <= keys
    assert not leftover & keys
    assert await metadata.list_deletions() == []

    # 4. Restarted: its merger finishes the job while producers write; every ack is in place once.
    third = agents.start(*flags(tmp_path, pg_url, s3_url), name="a", env=MERGING, http_port=0)
    producer = produce_for(third.address, ledger, 2.0, "p3")
    await asyncio.to_thread(producer.join, 30)
    assert producer.failure is None

    # Runs never span leaderships (epochs 1, 2 and 3 here) and need 4 segments: done when no
    # run is left to merge, a handful of segments in all.
    settings = MergeSettings(0, 8 << 20, 64 << 20, 4, 0)

    async def runs_left() -> list[list[SegmentInfo]]:
        return plan_runs(await metadata.list_segments(TOPIC, 0), settings)

    for _ in range(200):
        if not await runs_left():
            break
        await asyncio.sleep(0.1)
    assert await runs_left() == []
    assert len(await metadata.list_segments(TOPIC, 0)) <= 10 < len(before)
    with streamhouse.connect(third.address) as client:
        log = read_log(client, TOPIC)
        # SQL reads the merged segments too: the same values at the same offsets.
        rows = client.sql(f'SELECT _offset, _value FROM "{TOPIC}" ORDER BY _offset')
        assert rows.column("_offset").to_pylist() == list(range(len(log[0])))
        assert rows.column("_value").to_pylist() == log[0]
    in_flight = frozenset(p for p in ledger.attempted if p not in ledger.acked)
    check_ledger(log, ledger, may_repeat=in_flight)
    assert len(log[0]) >= len(ledger.acked)
    rows = await metadata.list_segments(TOPIC, 0)
    assert not leftover & {s.object_key for s in rows}  # the crashed upload is still no one's
    for seg in rows:
        assert (await store.head(seg.object_key)).size == seg.size_bytes
    with urllib.request.urlopen(f"http://127.0.0.1:{third.http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    merges = re.search(rf'^streamhouse_merges_total{{topic="{TOPIC}"}} (\S+)$', text, re.MULTILINE)
    assert merges is not None and float(merges[1]) >= 1
    assert "streamhouse_merge_failing_partitions 0.0" in text
    await store.close()
    await metadata.close()
