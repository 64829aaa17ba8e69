"""A busy partition's acks=durable roll waits for the produces on their way
(engine/agent/durable_linger.py), on a real PartitionManager over SQLite + a local object
store: the wait is bounded (by LINGER_MAX_S and by twice the usual gap between produces),
ends at once when LINGER_TARGET_BYTES are buffered, never happens on a slow partition, and
every ack still comes only after the commit that holds its records (produce_durable)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.agent import durable_linger
from streamhouse.agent.config import AgentConfig
from streamhouse.agent.durable_linger import LINGER_MAX_S, ArrivalRate, Led
from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.model import TopicInfo
from tests.engine.agent.test_durable_group_commit import Commits, produce_durable, until


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[PartitionManager]:
    config = AgentConfig(
        data_dir=str(tmp_path / "agent"),
        agent_id="a",
        roll_age_ms=600_000,
        metadata_url=f"sqlite:///{tmp_path / 'meta.db'}",
        object_store_url=f"file://{tmp_path / 'objects'}",
    )
    manager = await PartitionManager.start(config)
    yield manager
    await manager.close()


async def _busy(agent: PartitionManager, gap_s: float) -> tuple[TopicInfo, Led]:
    """A partition whose arrival rate fills LINGER_TARGET_BYTES in LINGER_MAX_S (a busy one, at
    the module's settings), produces `gap_s` apart."""
    topic = await agent.metadata.create_topic("t", 1)
    await agent.writer(topic, 0)
    led = agent._led[("t", 0)]
    rate = durable_linger.LINGER_TARGET_BYTES / durable_linger.LINGER_MAX_S
    led.arrival.bytes_per_s, led.arrival.gap_s = rate, gap_s
    return topic, led


def test_only_a_fast_arrival_rate_makes_a_roll_wait() -> None:
    rate = ArrivalRate()
    rate.cut(0.0, 0)
    rate.cut(0.005, 6_000)  # a producer paced at 10 k rec/s: 1.2 MB/s
    assert rate.bytes_per_s == pytest.approx(1.2e6) and rate.linger_s(6_000, 0.010) == 0.0
    for i in range(1, 6):  # ~1 MB requests 10 ms apart: 100 MB/s
        rate.arrivals = 1
        rate.cut(0.005 + 0.01 * i, 1_000_000)
    assert rate.bytes_per_s > 90e6 and rate.gap_s < 0.011
    assert 0 < rate.linger_s(1_000_000, 0.065) <= LINGER_MAX_S
    assert rate.linger_s(durable_linger.LINGER_TARGET_BYTES, 0.065) == 0.0  # big enough: roll now
    assert rate.linger_s(6_000, 1.055) == 0.0  # a lone produce after a quiet second: roll now


async def test_a_busy_partitions_roll_waits_for_the_produce_on_its_way(
    agent: PartitionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A produce on a busy partition is not rolled alone: the next one, arriving while the roll
    waits, shares its segment, and reaching the target size ends the wait at once."""
    monkeypatch.setattr(durable_linger, "LINGER_MAX_S", 30.0)  # generous: the target ends it
    topic, led = await _busy(agent, gap_s=30.0)
    commits = Commits(agent)
    first = asyncio.create_task(produce_durable(agent, topic, commits, [b"first"]))
    await until(lambda: led.writer.next_offset == 1 and led.durable_task is not None, "the first append")
    await asyncio.sleep(0.2)  # without the wait its roll would be committing by now
    assert not first.done() and commits.ends == []
    started = time.monotonic()
    values = [b"x" * 1000] * 4200  # past the 4 MiB target
    second = await asyncio.wait_for(produce_durable(agent, topic, commits, values), 20)
    assert time.monotonic() - started < 15  # ended by the target, not by LINGER_MAX_S
    assert second == 1 and await asyncio.wait_for(first, 20) == 0
    assert commits.ends == [4201]  # one roll for both
    segments = await agent.metadata.list_segments("t", 0)
    assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 4201)]


async def test_a_roll_waits_no_longer_than_twice_the_usual_gap(
    agent: PartitionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing more arrives (the producer waits for this ack): the roll goes after twice the
    usual gap between produces, well before LINGER_MAX_S."""
    monkeypatch.setattr(durable_linger, "LINGER_MAX_S", 10.0)
    topic, _ = await _busy(agent, gap_s=0.1)
    commits = Commits(agent)
    started = time.monotonic()
    assert await asyncio.wait_for(produce_durable(agent, topic, commits, [b"alone"]), 30) == 0
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 5, elapsed  # waited the 2 gaps, not the 10 s
    assert commits.ends == [1]


async def test_a_roll_waits_at_most_linger_max(agent: PartitionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """Produces keep coming, each within the gap, but never reach the target: the roll goes at
    LINGER_MAX_S after it began waiting, acknowledging what it holds."""
    monkeypatch.setattr(durable_linger, "LINGER_MAX_S", 0.5)
    topic, led = await _busy(agent, gap_s=30.0)
    commits = Commits(agent)
    started = time.monotonic()
    first = asyncio.create_task(produce_durable(agent, topic, commits, [b"a"]))
    trickle = []
    while not first.done() and time.monotonic() - started < 10:
        trickle.append(asyncio.create_task(produce_durable(agent, topic, commits, [b"b"])))
        await asyncio.sleep(0.05)
    assert first.done() and await first == 0
    assert 0.5 <= time.monotonic() - started < 10
    await asyncio.wait_for(asyncio.gather(*trickle), 30)
    assert commits.ends[0] > 1  # the first roll took the produces that came while it waited
    assert commits.ends[-1] == 1 + len(trickle) == led.writer.durable_end
