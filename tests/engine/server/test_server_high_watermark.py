"""No reader is served an offset a takeover changes (issue 19, chaos finding 2), with two agent
processes on one PostgreSQL + SeaweedFS.

Agent A leads the partition and holds acks=leader records in its buffer (no roll by age); a
reader fetches from A; A is killed -9; B takes the partition over from the durable end and
gives the next offsets to new records. Before the high watermark A served its buffer, and B
then wrote other values at the offsets the reader had seen. Now a fetch serves only what a
committed segment holds (it starts the durable round for the rest, which may or may not commit
before the kill): every offset the reader was served holds the same value afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import streamhouse
from tests.agent_process import AgentLauncher, wait_until

TOPIC = "hw-takeover"


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    """Listed after pg_url/s3_url, so the agents go first at teardown."""
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def test_no_reader_sees_an_offset_that_a_takeover_changes(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], agents: AgentLauncher
) -> None:
    url, endpoint = s3_url
    common = [
        *("--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint),
        *("--lease-ttl-ms", "2000", "--renew-interval-ms", "500", "--roll-age-ms", "600000"),
    ]
    with ThreadPoolExecutor(2) as pool:  # both start at once: a cold start is most of this test
        starting = [pool.submit(agents.start, "--data-dir", str(tmp_path / n), *common, name=n) for n in "ab"]
        a, b = (future.result() for future in starting)
    served: dict[int, bytes | None] = {}
    with streamhouse.connect(a.address) as client:
        client.create_topic(TOPIC, 1)
        client.produce(TOPIC, b"d0", partition=0, acks="durable")  # A leads; offset 0 committed
        client.produce_batch(TOPIC, [b"x1", b"x2", b"x3"], partition=0)  # acks=leader: A's buffer
        result = client.transport.fetch(TOPIC, 0, 0, max_records=100, max_wait_ms=0)
        records = result.records
        served.update(zip(records.column("offset").to_pylist(), records.column("value").to_pylist(), strict=True))
    a.kill()  # A's WAL goes nowhere: this test never restarts it

    with streamhouse.connect(b.address) as client:
        # B leads once A's lease has expired; its offsets follow the durable end.
        wait_until(lambda: client.produce(TOPIC, b"y", partition=0, acks="durable"), timeout_s=30, what="B takes over")
        table = client.read(TOPIC)
    now = dict(zip(table.column("offset").to_pylist(), table.column("value").to_pylist(), strict=True))
    assert b"y" in now.values()
    assert {offset: now.get(offset) for offset in served} == served
    assert served == {0: b"d0"}  # the high watermark: nothing past the durable end was served
