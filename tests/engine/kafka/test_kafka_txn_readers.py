"""Our own readers and Kafka transactions (issue 18): SQL, continuous jobs, the SDK and REST read
committed data by default, and everything with their uncommitted option.

A confluent-kafka transactional producer commits one transaction and aborts another; a second
one leaves its transaction open, and a plain record lands behind it. Read committed, every reader
sees the committed transaction only (the open one holds the reads at its first offset, the last
stable offset, so the plain record waits too); read uncommitted, every reader sees all of it.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

import streamhouse
from streamhouse.devservices.ports import free_port
from streamhouse.sql.query.coverage import coverage
from tests.agent_process import AgentLauncher, AgentProcess, wait_until

COMMITTED = [1, 2, 3]
ABORTED = [10, 11]
OPEN = [20]
BEHIND = [30]  # a plain record after the open transaction's
EVERYTHING = sorted(COMMITTED + ABORTED + OPEN + BEHIND)


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, str]]:
    url, endpoint = s3_url
    kafka = free_port()
    with AgentLauncher(tmp_path) as launcher:
        process = launcher.start(
            *(
                "--data-dir",
                str(tmp_path / "a"),
                "--metadata",
                pg_url,
                "--object-store",
                url,
                "--s3-endpoint",
                endpoint,
            ),
            http_port=free_port(),
            kafka_port=kafka,
        )
        yield process, f"127.0.0.1:{kafka}"


def _producer(bootstrap: str, tid: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 5})
    producer.init_transactions(20)
    return producer


def _send(producer: Producer, values: list[int]) -> None:
    for v in values:
        producer.produce("src", json.dumps({"v": v}).encode(), partition=0)
    assert producer.flush(20) == 0


def _values(rows: list[bytes | None]) -> list[int]:
    return sorted(json.loads(r)["v"] for r in rows if r is not None)


def _rest(agent: AgentProcess, query: str) -> list[int]:
    url = f"http://127.0.0.1:{agent.http_port}/v1/topics/src/partitions/0/records?value_type=BINARY{query}"
    with urllib.request.urlopen(url, timeout=20) as answer:
        records = json.loads(answer.read())["records"]
    return _values([base64.b64decode(r["value"]) for r in records])


def test_readers_see_committed_by_default_and_all_when_asked(agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    client = streamhouse.connect(process.address)
    client.sql("CREATE TOPIC src (v BIGINT)")
    client.sql("CREATE TOPIC everything (v BIGINT)")
    client.sql("CREATE MATERIALIZED VIEW committed_v AS SELECT v FROM src")
    client.sql("INSERT INTO everything WITH ('isolation.level' = 'read_uncommitted') SELECT v FROM src")

    app = _producer(bootstrap, "readers-app")
    app.begin_transaction()
    _send(app, COMMITTED)
    app.commit_transaction(20)
    app.begin_transaction()
    _send(app, ABORTED)
    app.abort_transaction(20)
    held = _producer(bootstrap, "readers-open")
    held.begin_transaction()
    _send(held, OPEN)  # left open for the rest of the test
    plain = Producer({"bootstrap.servers": bootstrap})
    _send(plain, BEHIND)

    # The SDK (gRPC): committed by default; isolation="read_uncommitted" shows all.
    assert _values(client.read("src").column("value").to_pylist()) == COMMITTED
    assert _values(client.read("src", isolation="read_uncommitted").column("value").to_pylist()) == EVERYTHING
    # The SDK's consumer, both levels.
    for isolation, want in (("read_committed", COMMITTED), ("read_uncommitted", EVERYTHING)):
        consumer = client.consumer("src", start="earliest", isolation=isolation)
        polled: list[bytes | None] = []
        for _ in range(20):
            polled += consumer.poll(timeout=0.5).column("value").to_pylist()
            if len(polled) >= len(want):
                break
        consumer.close()
        assert _values(polled) == want, isolation
    # REST.
    assert _rest(process, "") == COMMITTED
    assert _rest(process, "&isolation=read_uncommitted") == EVERYTHING
    # SQL: the session setting (a Kafka user's spelling works too).
    committed_rows = client.sql("SELECT v FROM src")
    assert sorted(committed_rows.column("v").to_pylist()) == COMMITTED
    # The coverage ends at the last stable offset: the open transaction's first record.
    assert [(c["start"], c["end"]) for c in coverage(committed_rows)["src"]] == [(0, len(COMMITTED + ABORTED) + 2)]
    assert client.sql("SELECT count(*) AS n FROM src").column("n").to_pylist() == [len(COMMITTED)]
    client.sql("SET isolation.level = 'read_uncommitted'")
    assert sorted(client.sql("SELECT v FROM src").column("v").to_pylist()) == EVERYTHING
    assert client.sql("SELECT count(*) AS n FROM src").column("n").to_pylist() == [len(EVERYTHING)]
    client.sql("RESET isolation_level")
    assert sorted(client.sql("SELECT v FROM src").column("v").to_pylist()) == COMMITTED

    # Jobs: committed input only, unless the job asked for all of it.
    def rows(topic: str, want: list[int]) -> list[int] | None:
        got = sorted(client.sql(f"SELECT v FROM {topic}").column("v").to_pylist())
        return got if got == want else None

    assert wait_until(lambda: rows("everything", EVERYTHING), timeout_s=30, what="the uncommitted job's output")
    assert wait_until(lambda: rows("committed_v", COMMITTED), timeout_s=30, what="the committed job's output")

    # The open transaction commits: every reader sees it and what waited behind it.
    held.commit_transaction(20)
    released = sorted(COMMITTED + OPEN + BEHIND)
    assert _values(client.read("src").column("value").to_pylist()) == released
    assert _rest(process, "") == released
    assert sorted(client.sql("SELECT v FROM src").column("v").to_pylist()) == released
    assert wait_until(lambda: rows("committed_v", released), timeout_s=30, what="the job's output after the commit")
    client.close()
