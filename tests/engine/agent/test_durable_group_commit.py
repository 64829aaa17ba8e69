"""acks=durable group commit (engine/agent/durable_rounds.py, `DurableRounds._rounds`),
on a real PartitionManager over SQLite + a local object store and over PostgreSQL + SeaweedFS.

With the default `durable_flush_ms` = 0 there is no timer: a durable ack rolls at once when no
roll is in flight, and the acks that arrive while a roll uploads and commits share the next
roll, which starts the moment that one ends. So a burst is acknowledged in far fewer rolls than
requests, an ack never comes before the commit of the segment holding its records, and a roll
that fails acknowledges nothing.

The metadata store is the real one; `Commits` only wraps its `commit_segment` to note which
commits have returned (and, in one test, to hold them back until the test opens a gate)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.partitions import PartitionManager
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.partition.roll import segment_key
from streamhouse.storage.records.schema import make_batch
from tests.engine.agent.conftest import BOTH_STORES, store_urls


@pytest.fixture(params=BOTH_STORES)
async def agent(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PartitionManager]:
    stores = store_urls(request, tmp_path)
    # The default durable_flush_ms (0: natural group commit); size/age rolls far away, so every
    # roll in these tests is a durable one.
    config = AgentConfig(
        data_dir=str(tmp_path / "agent"), agent_id="a", fsync="interval", roll_age_ms=600_000, **stores
    )
    assert config.durable_flush_ms == 0
    manager = await PartitionManager.start(config)
    yield manager
    await manager.close()


class Commits:
    """The real commit_segment of `manager`'s metadata store, noting the end offset of every
    commit that has returned, in order. Commits wait while `gate` is clear."""

    def __init__(self, manager: PartitionManager) -> None:
        self.ends: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        real = manager.metadata.commit_segment

        async def commit(segment: SegmentInfo, *args: Any, **kwargs: Any) -> None:
            self.entered.set()
            await self.gate.wait()
            await real(segment, *args, **kwargs)
            self.ends.append(segment.end_offset)

        manager.metadata.commit_segment = commit  # type: ignore[method-assign]

    @property
    def covered(self) -> int:
        """One past the last offset a returned commit holds."""
        return max(self.ends, default=0)


async def produce_durable(
    manager: PartitionManager, topic: TopicInfo, commits: Commits, values: Sequence[bytes]
) -> int:
    base = await manager.produce(topic, 0, make_batch(list(values)), "durable")
    # Nothing is awaited between the ack and this check: the commit holding the records must
    # have returned before the ack.
    assert commits.covered >= base + len(values), f"offsets {base}+{len(values)} acknowledged before their commit"
    return base


async def until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_acks_arriving_during_a_roll_share_the_next_one(agent: PartitionManager) -> None:
    """One roll in flight (its commit held back), 100 produces arrive: none is acknowledged
    until a commit holds it, and all 100 share the one roll that follows."""
    topic = await agent.metadata.create_topic("t", 1)
    commits = Commits(agent)
    commits.gate.clear()
    first = asyncio.create_task(produce_durable(agent, topic, commits, [b"first"]))
    await asyncio.wait_for(commits.entered.wait(), 30)  # the first roll is committing, held
    burst = [asyncio.create_task(produce_durable(agent, topic, commits, [b"v%d" % i, b"w"])) for i in range(100)]
    writer = agent.leading("t", 0)
    assert writer is not None
    await until(lambda: writer.next_offset == 201, "the burst to be appended")
    await asyncio.sleep(0.2)  # time enough for a wrong early ack or a second roll to show
    assert not first.done() and not any(task.done() for task in burst)
    assert commits.ends == [] and writer.durable_end == 0
    commits.gate.set()
    bases = await asyncio.wait_for(asyncio.gather(first, *burst), 60)
    assert sorted(bases) == [0, *range(1, 201, 2)]
    assert commits.ends == [1, 201]  # 101 requests, two rolls: the held one, then the whole burst
    segments = await agent.metadata.list_segments("t", 0)
    assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 1), (1, 201)]
    table = await agent.read("t", 0, 0, 1000)
    assert table.column("value").to_pylist()[:3] == [b"first", b"v0", b"w"]


async def test_a_burst_is_acknowledged_in_far_fewer_rolls_than_requests(agent: PartitionManager) -> None:
    """300 concurrent durable produces with nothing held: every ack after its commit, and the
    rolls number a small fraction of the requests (no timer paced them)."""
    topic = await agent.metadata.create_topic("t", 1)
    commits = Commits(agent)
    requests = 300
    bases = await asyncio.wait_for(
        asyncio.gather(*(produce_durable(agent, topic, commits, [b"x"] * 10) for _ in range(requests))), 120
    )
    assert sorted(bases) == list(range(0, requests * 10, 10))
    assert commits.ends == sorted(commits.ends) and commits.ends[-1] == requests * 10
    assert len(commits.ends) <= requests // 10, f"{len(commits.ends)} rolls for {requests} requests"
    segments = await agent.metadata.list_segments("t", 0)
    assert [s.end_offset for s in segments] == commits.ends  # one segment per roll, in offset order
    # And later, sequential durable produces each roll at once: no window to wait out.
    for i in range(3):
        assert await produce_durable(agent, topic, commits, [b"late"]) == requests * 10 + i
    assert len(commits.ends) == len(segments) + 3


async def test_a_failed_roll_acknowledges_nothing_until_a_commit_holds_the_records(
    agent: PartitionManager, tmp_path: Path
) -> None:
    """The first segment's upload fails (another object sits at its key: segments are never
    overwritten), so the waiting produces stay unacknowledged through the retries; once the
    key is free the next attempt commits and acknowledges them all."""
    topic = await agent.metadata.create_topic("t", 1)
    commits = Commits(agent)
    writer = await agent.writer(topic, 0)
    key = segment_key("t", 0, 0, writer.epoch)
    await agent.store.put(key, b"not this segment", if_absent=True)
    produces = [asyncio.create_task(produce_durable(agent, topic, commits, [b"a", b"b"])) for _ in range(20)]
    await until(lambda: agent.flush_health.failing_count == 1, "the first roll to fail")
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in produces)
    assert commits.ends == [] and await agent.metadata.get_end_offset("t", 0) == 0
    await agent.store.delete(key)
    bases = await asyncio.wait_for(asyncio.gather(*produces), 60)
    assert sorted(bases) == list(range(0, 40, 2))
    assert agent.flush_health.failing_count == 0 and commits.ends[-1] == 40


def test_a_negative_durable_flush_gap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="durable_flush_ms"):
        AgentConfig(data_dir=str(tmp_path), durable_flush_ms=-1)
