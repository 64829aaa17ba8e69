"""Where a consumer begins, on both transports (embedded and a real agent over gRPC): a
group's committed offset always wins; `start` is only the reset policy for partitions the
group never committed (Kafka's auto.offset.reset)."""

from __future__ import annotations

import pytest

from streamhouse.client.client import Client
from streamhouse.storage.errors import InvalidInputError


def drain(client: Client, topic: str, *, group: str | None, start: str) -> list[tuple[int, int]]:
    """(partition, offset) of everything one consumer reads, committing on close."""
    seen: list[tuple[int, int]] = []
    with client.consumer(topic, group=group, start=start) as consumer:  # type: ignore[arg-type]
        while True:
            table = consumer.poll(timeout=0.3)
            if table.num_rows == 0:
                return seen
            seen += zip(table.column("partition").to_pylist(), table.column("offset").to_pylist(), strict=True)


def test_a_group_rerun_with_earliest_resumes_from_its_commit(client: Client) -> None:
    client.create_topic("jobs", 2)
    client.produce_batch("jobs", [f"a{i}" for i in range(5)], partition=0)
    client.produce_batch("jobs", [f"b{i}" for i in range(3)], partition=1)
    first = drain(client, "jobs", group="g", start="earliest")
    assert sorted(first) == [(0, i) for i in range(5)] + [(1, i) for i in range(3)]

    # The second run with the same start reads nothing old: only what arrived since.
    assert drain(client, "jobs", group="g", start="earliest") == []
    client.produce_batch("jobs", ["a5", "a6"], partition=0)
    assert drain(client, "jobs", group="g", start="earliest") == [(0, 5), (0, 6)]
    assert {o.partition: o.committed_offset for o in client.committed("g", "jobs")} == {0: 7, 1: 3}


def test_start_applies_only_to_partitions_without_a_commit(client: Client) -> None:
    client.create_topic("mixed", 3)
    for p in range(3):
        # Durable: "latest" is the high watermark, the end of the committed segments.
        client.produce_batch("mixed", [f"{p}-{i}" for i in range(4)], partition=p, acks="durable")
    client.commit("half", "mixed", {0: 2})  # partition 0 committed; 1 and 2 never

    with client.consumer("mixed", group="half", start="latest", auto_commit=False) as latest:
        assert latest.positions() == {0: 2, 1: 4, 2: 4}
    for start in ("earliest", "committed"):
        with client.consumer("mixed", group="half", start=start, auto_commit=False) as c:  # type: ignore[arg-type]
            assert c.positions() == {0: 2, 1: 0, 2: 0}
    # Without a group there is nothing committed: start alone decides.
    assert client.consumer("mixed", start="committed", auto_commit=False).positions() == {0: 0, 1: 0, 2: 0}
    assert client.consumer("mixed", start="latest", auto_commit=False).positions() == {0: 4, 1: 4, 2: 4}
    with pytest.raises(InvalidInputError, match="start must be"):
        client.consumer("mixed", group="half", start="newest")  # type: ignore[arg-type]
