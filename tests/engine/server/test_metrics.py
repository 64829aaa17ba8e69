"""/metrics of a real agent process: no `*_created` twins, SQL series that move with queries and
errors, per-job series for a running view, and a damaged segment object that is logged once and
counted in streamhouse_corrupt_segments_total while every read of it fails."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.storage.errors import CorruptDataError, StreamHouseError
from tests.agent_process import AgentLauncher, AgentProcess, wait_until

T0 = 1_700_000_000_000  # a multiple of 10 s
BIDS = (
    "CREATE TOPIC bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), "
    "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (partitions = 1)"
)
VIEW = (
    "CREATE MATERIALIZED VIEW counts WITH ('dead-letter' = 'late_bids', 'checkpoint-interval' = '100ms') AS "
    "SELECT window_start, window_end, count(*) AS n "
    "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end"
)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def scrape(agent: AgentProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return str(reply.read().decode())


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value for every sample line of a scrape."""
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def value(agent: AgentProcess, series: str) -> float | None:
    return samples(scrape(agent)).get(series)


def start(agents: AgentLauncher, data: Path) -> AgentProcess:
    return agents.start("--data-dir", str(data), "--renew-interval-ms", "200", "--durable-flush-ms", "20", http_port=0)


def test_no_created_series_and_sql_series_move(agents: AgentLauncher, tmp_path: Path) -> None:
    agent = start(agents, tmp_path / "data")
    with streamhouse.connect(agent.address) as client:
        client.sql(BIDS)
        client.produce("bids", {"auction": 1, "price": 2, "ts": T0})
        assert client.sql("SELECT count(*) AS n FROM bids").column("n")[0].as_py() == 1
        with pytest.raises(StreamHouseError, match="no_such_topic"):
            client.sql("SELECT * FROM no_such_topic")
    text = scrape(agent)
    assert "_created" not in text, [line for line in text.splitlines() if "_created" in line][:5]
    got = samples(text)
    assert got['streamhouse_sql_queries_total{outcome="ok"}'] == 2.0  # CREATE TOPIC + SELECT
    assert got['streamhouse_sql_queries_total{outcome="error"}'] == 1.0
    errors = {k: v for k, v in got.items() if k.startswith("streamhouse_sql_errors_total{")}
    # Counted by the agent's class (the client gets it as the InvalidInputError it subclasses).
    assert errors == {'streamhouse_sql_errors_total{error="SqlError"}': 1.0}, errors
    assert got['streamhouse_sql_latency_seconds_count{outcome="ok"}'] == 2.0
    assert got['streamhouse_sql_latency_seconds_count{outcome="error"}'] == 1.0
    assert got['streamhouse_produce_records_total{topic="bids"}'] == 1.0  # the old series are still there


def test_job_series_of_a_running_view(agents: AgentLauncher, tmp_path: Path) -> None:
    agent = start(agents, tmp_path / "data")
    with streamhouse.connect(agent.address) as client:
        client.sql(BIDS)
        client.sql(VIEW)
        client.produce_batch("bids", [{"auction": 1, "price": 1, "ts": T0 + s * 1000} for s in (1, 3, 8)])
        # [0 s, 5 s) fires once the watermark (8 s - 1 s) passes 5 s; then a row inside it is late.
        wait_until(lambda: client.sql("SELECT count(*) AS n FROM counts").column("n")[0].as_py() == 1, what="fire")
        client.produce("bids", {"auction": 1, "price": 4, "ts": T0 + 4_000})
        job = 'job="counts"'
        wait_until(lambda: value(agent, f"streamhouse_job_late_rows_total{{{job}}}") == 1.0, what="late row counted")
        got = samples(scrape(agent))
        assert got[f"streamhouse_job_rows_in_total{{{job}}}"] == 4.0
        assert got[f"streamhouse_job_rows_out_total{{{job}}}"] == 1.0
        assert got[f"streamhouse_job_source_lag_records{{{job}}}"] == 0.0
        assert got[f"streamhouse_job_watermark_seconds{{{job}}}"] == (T0 + 7_000) / 1000
        assert got[f"streamhouse_job_checkpoints_total{{{job}}}"] >= 1.0
        assert 0.0 <= got[f"streamhouse_job_checkpoint_age_seconds{{{job}}}"] < 30.0
        # A dropped view's series go with it (no stale labels left behind).
        client.sql("DROP MATERIALIZED VIEW counts")
        assert not any("counts" in k for k in samples(scrape(agent)) if k.startswith("streamhouse_job_"))


def test_a_corrupt_segment_is_logged_once_and_counted(agents: AgentLauncher, tmp_path: Path) -> None:
    data = tmp_path / "data"
    agent = start(agents, data)
    with streamhouse.connect(agent.address) as client:
        client.create_topic("orders", partitions=1)
        client.produce_batch("orders", [f"order-{i}" for i in range(100)], partition=0, acks="durable")
    agent.stop()  # a restart also empties the block cache, so the next read goes to the object
    [segment] = list((data / "objects" / "topics" / "orders" / "00000").glob("*.parquet"))
    damaged = bytearray(segment.read_bytes())
    damaged[len(damaged) // 3] ^= 0x40  # inside the row group's data, not the footer
    segment.write_bytes(bytes(damaged))

    agent = start(agents, data)
    assert value(agent, "streamhouse_corrupt_segments_total") is None  # no series before the first
    with streamhouse.connect(agent.address, retries=False) as client:
        for _ in range(3):
            with pytest.raises(CorruptDataError, match="orders/00000"):
                client.read("orders")
        with pytest.raises(StreamHouseError):
            client.sql("SELECT count(*) FROM orders")
    assert value(agent, 'streamhouse_corrupt_segments_total{topic="orders"}') == 1.0
    key = f"topics/orders/00000/{segment.name}"
    lines = [line for line in agent.log_path.read_text().splitlines() if "corrupt segment" in line]
    assert len(lines) == 1, lines  # once per damaged object, not once per read
    assert "topic=orders partition=0" in lines[0] and key in lines[0], lines[0]
