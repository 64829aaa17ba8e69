"""The high watermark (issue 19, chaos finding 2) on one embedded agent: what a reader is served
ends at the durable end (records in a committed segment), never at the leader's buffer end,
because a leader killed or paused past its lease leaves its buffer behind and the next leader
gives those offsets to other records. A reader stopped there starts the durable round at once
(PartitionManager.make_durable), so records acknowledged with acks=leader are served within a
roll, not the roll age (600 s here). Ad-hoc SQL still reads the leader's tail and says so in
its coverage. The takeover itself: tests/engine/server/test_server_high_watermark.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.sql.query.coverage import coverage
from streamhouse.storage.partition.scan import ScanBounds

ROLL_AGE_MS = 600_000  # no roll by age during a test: only reads and acks=durable start rounds


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with streamhouse.open(str(tmp_path / "data"), roll_age_ms=ROLL_AGE_MS) as opened:
        yield opened


def _transport(client: Client) -> EmbeddedTransport:
    transport = client.transport
    assert isinstance(transport, EmbeddedTransport)
    return transport


def test_fetch_serves_up_to_the_durable_end_and_starts_the_round(client: Client) -> None:
    transport = _transport(client)
    service, run = transport.service, transport._run
    client.create_topic("hw", 1)
    client.produce("hw", b"d0", partition=0, acks="durable")
    client.produce_batch("hw", [b"x1", b"x2"], partition=0)  # acks=leader: in the leader's buffer only

    # Kafka's ListOffsets latest, a consumer's "latest", a group reset: the high watermark. Asked
    # before any fetch: the fetch below starts the round that moves it.
    assert run(service.end_offset("hw", 0)) == 1
    assert client.describe("hw").durable_end_offsets == {0: 1}
    assert client.describe("hw").end_offsets == {0: 3}  # the acknowledged end, for lag and client.read
    first = run(service.fetch("hw", 0, 0, max_wait_ms=0))
    assert first.records.column("value").to_pylist() == [b"d0"]
    assert (first.next_offset, first.high_watermark, first.end_offset) == (1, 1, 3)

    # That fetch started the durable round: a long-poll at the durable end is answered by its
    # commit, far sooner than the roll age.
    started = time.monotonic()
    more = run(service.fetch("hw", 0, 1, max_wait_ms=30_000))
    assert more.records.column("value").to_pylist() == [b"x1", b"x2"]
    assert time.monotonic() - started < 20
    assert run(service.end_offset("hw", 0)) == 3

    # client.read (everything acknowledged) waits for the round the same way.
    client.produce_batch("hw", [b"x3"], partition=0)
    assert client.read("hw").column("value").to_pylist() == [b"d0", b"x1", b"x2", b"x3"]


def test_jobs_read_committed_segments_and_sql_says_it_read_the_tail(client: Client) -> None:
    transport = _transport(client)
    service, run = transport.service, transport._run
    client.create_topic("js", 1)
    client.produce_batch("js", [b"1", b"2", b"3"], partition=0)  # acks=leader
    info = run(service.topic("js"))
    topics = service.sql_topics  # the jobs' source (engine/jobs/source.py reads through it)

    table, _ = run(topics.scan(info, 0, ScanBounds(), ["offset"]))
    assert table.num_rows == 0  # nothing is committed yet: a job sees none of the buffer
    assert run(topics.acked_end("js", 0)) == 3
    # The scan started the round; once it commits, the job's next scan reads the records.
    deadline = time.monotonic() + 20
    while run(topics.end_offset("js", 0)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    table, _ = run(topics.scan(info, 0, ScanBounds(), ["offset"]))
    assert table.column("offset").to_pylist() == [0, 1, 2]

    # Ad-hoc SQL reads the leader's own tail too, and its coverage says so.
    client.produce("js", b"4", partition=0)
    result = client.sql("SELECT count(*) AS n FROM js")
    assert result.column("n").to_pylist() == [4]
    assert coverage(result)["js"] == [{"partition": 0, "start": 0, "end": 4, "unflushed_included": True}]
