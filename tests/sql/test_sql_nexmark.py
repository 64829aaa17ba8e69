"""Nexmark through the whole engine: the generator's events produced as JSON into person,
auction and bid topics (declared columns, several partitions, partly flushed into segments,
partly in the leader's buffer), then q0, q1, q2, q5, q7, q8 and q11 through `sql()`, each
compared with the pure-Python reference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.bench.sql import fill_nexmark
from streamhouse.client.client import Client
from streamhouse.datagen.nexmark import NexmarkData, generate
from streamhouse.datagen.nexmark_queries import QUERIES
from tests.engine.datagen.test_nexmark import assert_same_rows, result_rows
from tests.nexmark_reference import REFERENCE

EVENTS = {"events": 20_000, "seed": 5, "events_per_second": 200}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, NexmarkData]]:
    # Small rolls: the topics end up spread over many segments plus an unflushed tail.
    with streamhouse.open(Path(tmp_path_factory.mktemp("nexmark")) / "data", roll_bytes=200_000) as client:
        fill_nexmark(client, partitions=3, chunk=2_000, **EVENTS)
        yield client, generate(**EVENTS)


@pytest.mark.parametrize("query", sorted(QUERIES, key=lambda q: int(q[1:])))
def test_query_over_topics_matches_the_reference(query: str, engine: tuple[Client, NexmarkData]) -> None:
    client, data = engine
    assert_same_rows(query, result_rows(client.sql(QUERIES[query])), REFERENCE[query](data))


def test_the_topics_are_spread_over_segments(engine: tuple[Client, NexmarkData]) -> None:
    client, data = engine
    described = client.describe("bid")
    assert sum(p.end_offset for p in described.partitions) == data.bid.num_rows
    assert sum(p.segments for p in described.partitions) > 3


def test_bench_nexmark_fills_topics_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamhouse.cli.main import main

    data = tmp_path / "d"
    assert main(["bench", "nexmark", "--events", "5000", "--partitions", "2", "--data-dir", str(data)]) == 0
    assert "5,000 events" in capsys.readouterr().out
    with streamhouse.open(data) as client:
        counts = {
            t: client.sql(f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py() for t in ("person", "auction", "bid")
        }
    assert counts == {"person": 100, "auction": 300, "bid": 4_600}
