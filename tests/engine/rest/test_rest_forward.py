"""REST produce to a partition another agent leads (issue 13): forwarded to the leader over
gRPC, so a REST client can send to any agent. Two real `streamhouse serve` processes on one
PostgreSQL and one SeaweedFS prefix; each leads one partition, and every produce through either
agent lands exactly once, in order, at the partition's leader (which keeps its lease)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.agent_process import AgentLauncher, AgentProcess
from tests.engine.rest.conftest import Rest, assert_error
from tests.services.postgres import _fresh_database
from tests.services.seaweedfs import S3Server


@dataclass(frozen=True)
class Pair:
    a: AgentProcess
    b: AgentProcess

    def rest(self, agent: AgentProcess) -> Rest:
        return Rest(f"http://127.0.0.1:{agent.http_port}")


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, s3_server: S3Server, s3_bucket: str
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("forward")
    store = f"s3://{s3_bucket}/{uuid.uuid4().hex[:16]}"
    for pg_url in _fresh_database(postgres_server):
        with AgentLauncher(tmp) as launcher:
            common = ("--metadata", pg_url, "--object-store", store, "--s3-endpoint", s3_server.endpoint)
            a = launcher.start("--data-dir", str(tmp / "a"), *common, name="a", http_port=0)
            b = launcher.start("--data-dir", str(tmp / "b"), *common, name="b", http_port=0)
            yield Pair(a, b)


def _produce(rest: Rest, topic: str, values: list[Any], acks: str = "leader", **fields: Any) -> dict[str, Any]:
    reply = rest.post(f"/v1/topics/{topic}/records?acks={acks}", {"values": values, **fields})
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[no-any-return]


def _values(rest: Rest, topic: str, partition: int) -> list[Any]:
    reply = rest.get(f"/v1/topics/{topic}/partitions/{partition}/records?offset=0&max_records=1000")
    assert reply.status == 200, reply.body
    return [r["value"] for r in reply.json()["records"]]


def test_produce_through_either_agent_lands_at_the_leader(pair: Pair) -> None:
    rest_a, rest_b = pair.rest(pair.a), pair.rest(pair.b)
    topic = f"fwd_{uuid.uuid4().hex[:8]}"
    assert rest_a.post("/v1/topics", {"topic_name": topic, "partitions_count": 2}).status == 201
    # Each agent takes the lease of the partition it is first to produce to.
    _produce(rest_a, topic, [{"p": 0, "i": 0}], partition_id=0)
    _produce(rest_b, topic, [{"p": 1, "i": 0}], partition_id=1)

    # Before forwarding these answered 421 naming the leader; now the leader stores them.
    to_a = _produce(rest_b, topic, [{"p": 0, "i": i} for i in (1, 2)], partition_id=0)
    assert to_a["partitions"] == [{"partition_id": 0, "base_offset": 1, "record_count": 2}]
    to_b = _produce(rest_a, topic, [{"p": 1, "i": 1}], acks="durable", partition_id=1)
    assert to_b["partitions"] == [{"partition_id": 1, "base_offset": 1, "record_count": 1}]

    # No partition_id: the agent's partitioner splits the batch, each share goes to its leader.
    keys = [f"k{i}" for i in range(40)]
    spread = _produce(rest_a, topic, [{"k": k} for k in keys], acks="durable", keys=keys)  # readable anywhere
    assert sorted(p["partition_id"] for p in spread["partitions"]) == [0, 1]
    assert sum(p["record_count"] for p in spread["partitions"]) == 40

    leaders = {p["partition_id"]: p["leader"] for p in rest_b.get(f"/v1/topics/{topic}").json()["partitions"]}
    assert leaders == {0: pair.a.address, 1: pair.b.address}  # forwarding moved no lease
    for rest in (rest_a, rest_b):
        p0, p1 = _values(rest, topic, 0), _values(rest, topic, 1)
        assert p0[:3] == [{"p": 0, "i": i} for i in range(3)]
        assert p1[:2] == [{"p": 1, "i": i} for i in range(2)]
        assert sorted(v["k"] for v in p0[3:] + p1[2:]) == sorted(keys)  # each once

    # A leader that cannot be reached: a typed 503 from the agent asked, quickly, not a hang.
    pair.a.kill()
    started = time.monotonic()
    gone = rest_b.post(f"/v1/topics/{topic}/records", {"values": ["x"], "partition_id": 0})
    assert_error(gone, 503, "storage_unavailable")
    assert time.monotonic() - started < 15
