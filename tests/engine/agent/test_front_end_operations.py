"""The front-end contract's operations that no adapter exercised before the contract existed
(engine/api/contract.py; AgentService implements them): offsets by position and by time,
partition leaders, the raw committed offsets and group deletion, the job operations and
readiness. On a real agent service (the embedded engine) on PostgreSQL + SeaweedFS, called
as a front end calls them, on its event loop."""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import streamhouse
from streamhouse.api.contract import FrontEnd, Leadership, TimestampOffset
from streamhouse.client.client import Client
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.storage.errors import InvalidInputError, JobNotFoundError, PartitionNotFoundError, TopicNotFoundError

T = TypeVar("T")
T0 = 1_700_000_000_000
# Partition 0's timestamps, in offset order: the largest (T0 + 9) twice, first at offset 2.
STAMPS = [T0 + 5, T0 + 1, T0 + 9, T0 + 9, T0 + 3]


class Agent:
    def __init__(self, client: Client) -> None:
        transport = client.transport
        assert isinstance(transport, EmbeddedTransport)
        self.client, self.transport = client, transport
        self.front: FrontEnd = transport.front

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.transport._run(work)


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[Agent]:
    url, endpoint = s3_url
    # Segments roll within a fraction of a second, so the by-time searches meet segments too.
    with streamhouse.open(
        str(tmp_path / "data"), metadata_url=pg_url, object_store_url=url, s3_endpoint=endpoint, roll_age_ms=200
    ) as client:
        yield Agent(client)


def _offsets(agent: Agent, topic: str) -> tuple[int, int, TimestampOffset, TimestampOffset, TimestampOffset]:
    front = agent.front
    return (
        agent.run(front.earliest_offset(topic, 0)),
        agent.run(front.end_offset(topic, 0)),
        agent.run(front.offset_for_time(topic, 0, T0 + 6)),
        agent.run(front.offset_for_time(topic, 0, T0 + 100)),
        agent.run(front.max_timestamp_offset(topic, 0)),
    )


def _committed(agent: Agent, topic: str, end: int) -> None:
    """Wait until partition 0's records below `end` are in committed segments (roll_age_ms=200)."""
    deadline = time.monotonic() + 30
    while agent.run(agent.front.end_offset(topic, 0)) < end:
        assert time.monotonic() < deadline, "no segment was committed"
        time.sleep(0.05)


def test_offsets_by_position_and_time_in_segments(agent: Agent) -> None:
    client, front = agent.client, agent.front
    client.create_topic("clicks", 2)
    empty = (0, 0, TimestampOffset(-1, -1), TimestampOffset(-1, -1), TimestampOffset(-1, -1))
    assert _offsets(agent, "clicks") == empty
    client.produce_batch("clicks", [f"c{i}" for i in range(5)], timestamps=STAMPS, partition=0)
    expected = (0, 5, TimestampOffset(2, T0 + 9), TimestampOffset(-1, -1), TimestampOffset(2, T0 + 9))
    # Offsets answer up to the high watermark (the durable end): once the roll commits them.
    _committed(agent, "clicks", 5)
    assert _offsets(agent, "clicks") == expected
    client.produce_batch("clicks", ["late"], timestamps=[T0 + 50], partition=0)
    _committed(agent, "clicks", 6)
    assert agent.run(front.max_timestamp_offset("clicks", 0)) == TimestampOffset(5, T0 + 50)  # the newest wins
    assert agent.run(front.offset_for_time("clicks", 0, T0 + 10)) == TimestampOffset(5, T0 + 50)
    with pytest.raises(PartitionNotFoundError):
        agent.run(front.end_offset("clicks", 2))
    with pytest.raises(PartitionNotFoundError):
        agent.run(front.offset_for_time("clicks", -1, T0))
    with pytest.raises(TopicNotFoundError):
        agent.run(front.earliest_offset("nowhere", 0))


def test_partition_leaders_name_the_lease_holder(agent: Agent) -> None:
    agent.client.create_topic("led", 2)
    assert agent.run(agent.front.partition_leaders("led")) == (Leadership(0, "", "", 0), Leadership(1, "", "", 0))
    agent.client.produce("led", "x", partition=1)
    config = agent.transport.config
    leaders = agent.run(agent.front.partition_leaders("led"))
    assert leaders[0] == Leadership(0, "", "", 0)
    assert (leaders[1].agent_id, leaders[1].address) == (config.agent_id, config.address)
    assert leaders[1].epoch >= 1
    with pytest.raises(TopicNotFoundError):
        agent.run(agent.front.partition_leaders("nowhere"))


def test_committed_offsets_as_stored_and_group_deletion(agent: Agent) -> None:
    client, front = agent.client, agent.front
    client.create_topic("orders", 2)
    client.commit("billing", "orders", {0: 3})
    assert agent.run(front.committed_offsets("billing")) == {("orders", 0): 3}
    assert agent.run(front.committed_offsets("billing", "orders")) == {("orders", 0): 3}
    assert agent.run(front.committed_offsets("billing", "no-such-topic")) == {}  # not an error: Kafka answers -1
    agent.run(front.delete_group("billing"))
    assert "billing" not in client.groups()
    assert agent.run(front.committed_offsets("billing")) == {}
    agent.run(front.delete_group("never-was"))  # nothing stored: nothing happens


def test_job_operations_are_the_sql_statements(agent: Agent) -> None:
    client, front = agent.client, agent.front
    client.sql("CREATE TOPIC bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3)) WITH (partitions = 1)")
    client.sql("CREATE TOPIC archive (auction BIGINT, price BIGINT) WITH (partitions = 1)")
    select = "SELECT auction, price FROM bids WHERE price >= 30"
    view = agent.run(front.create_job("big-bids", select, options={"checkpoint_interval": "100ms"}))
    assert (view.name, view.output_topic, dict(view.options)) == (
        "big-bids",
        "big-bids",
        {"checkpoint-interval": "100ms"},
    )
    into = agent.run(front.create_job("ignored", select, into="archive"))
    assert (into.name, into.output_topic) == ("archive", "archive")
    assert [j.name for j in agent.run(front.list_jobs())] == ["archive", "big-bids"]
    assert agent.run(front.describe_job("big-bids")).sql == select

    with pytest.raises(InvalidInputError, match="idle-timeout"):
        agent.run(front.create_job("refused", select, options={"idle_timeout": "soon"}))
    assert [j.name for j in agent.run(front.list_jobs())] == ["archive", "big-bids"]  # nothing was created
    assert "refused" not in [t.name for t in client.topics()]

    agent.run(front.drop_job("archive", drop_topic=False))
    agent.run(front.drop_job("big-bids"))
    assert agent.run(front.list_jobs()) == []
    topics = [t.name for t in client.topics()]
    assert "archive" in topics and "big-bids" not in topics  # a view's own topic goes with it
    with pytest.raises(JobNotFoundError):
        agent.run(front.describe_job("big-bids"))
    with pytest.raises(InvalidInputError):
        agent.run(front.drop_job(""))


def test_ready_when_both_stores_answer(agent: Agent) -> None:
    assert agent.run(agent.front.ready()) == (True, "ok")
