"""The SDK's contract, run against both transports: `streamhouse.open` (embedded, in-process)
and `streamhouse.connect` (a real agent subprocess over gRPC). Same calls, same answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import streamhouse
from streamhouse.api.partitioner import partition_for_keys
from streamhouse.client.client import Client
from streamhouse.devservices.agent import start_agent
from streamhouse.storage.errors import PartitionNotFoundError


def test_topics_are_created_listed_described_and_deleted(client: Client) -> None:
    info = client.create_topic("orders", 3, config={"json.ignore-errors": "true"})
    assert (info.name, info.partitions, dict(info.config)) == ("orders", 3, {"json.ignore-errors": "true"})
    assert client.create_topic("orders", 3, exist_ok=True).topic_id == info.topic_id
    with pytest.raises(streamhouse.TopicExistsError):
        client.create_topic("orders", 3)
    assert [t.name for t in client.topics()] == ["orders"]
    described = client.describe("orders")
    assert [p.partition for p in described.partitions] == [0, 1, 2]
    assert described.end_offsets == {0: 0, 1: 0, 2: 0}
    client.delete_topic("orders")
    assert client.topics() == []
    with pytest.raises(streamhouse.TopicNotFoundError):
        client.describe("orders")


def test_values_of_every_kind_round_trip(client: Client) -> None:
    client.create_topic("mixed", 1)
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    first = client.produce("mixed", b"\x00raw", key="k", headers={"h": "v", "n": None}, timestamp=when)
    assert (first.partition, first.offset) == (0, 0)
    client.produce("mixed", "text")
    client.produce("mixed", {"a": 1, "b": [1.5, None]})
    client.produce("mixed", None, key=b"tombstone")
    table = client.read("mixed")
    assert table.column("offset").to_pylist() == [0, 1, 2, 3]
    assert table.column("value").to_pylist() == [b"\x00raw", b"text", b'{"a":1,"b":[1.5,null]}', None]
    assert table.column("key").to_pylist() == [b"k", None, None, b"tombstone"]
    assert table.column("timestamp")[0].as_py() == int(when.timestamp() * 1000)
    assert table.column("timestamp")[1].as_py() > 1_700_000_000_000  # stamped at produce time
    assert table.column("headers")[0].as_py() == [{"key": "h", "value": b"v"}, {"key": "n", "value": None}]


def test_keys_choose_partitions_with_kafkas_murmur2(client: Client) -> None:
    client.create_topic("keyed", 4)
    keys = [f"user-{i % 10}" for i in range(200)]
    client.produce_batch("keyed", [{"i": i} for i in range(200)], keys=keys)
    table = client.read("keyed")
    assert table.num_rows == 200
    expected = partition_for_keys(pa.array([k.encode() for k in keys], pa.binary()), 4)
    by_key = dict(zip(keys, expected.tolist(), strict=True))
    for p, key in zip(table.column("partition").to_pylist(), table.column("key").to_pylist(), strict=True):
        assert by_key[key.decode()] == p
    # Order per key is production order.
    for key in set(keys):
        rows = [
            json.loads(v)["i"]
            for v, k in zip(table["value"].to_pylist(), table["key"].to_pylist(), strict=True)
            if k == key.encode()
        ]
        assert rows == sorted(rows)


def test_records_without_keys_go_round_robin(client: Client) -> None:
    client.create_topic("spread", 3)
    client.produce_batch("spread", [b"x"] * 9)
    assert client.describe("spread").end_offsets == {0: 3, 1: 3, 2: 3}


def test_tables_and_dataframes_produce_as_json_rows(client: Client) -> None:
    client.create_topic("bids", 2)
    frame = pd.DataFrame({"auction": [1, 2, 1], "price": [10.5, 3.25, 7.0], "bidder": ["a", "b", "c"]})
    results = client.produce_table("bids", frame, key_column="auction")
    assert sum(r.record_count for r in results) == 3
    arrow = pa.table({"auction": [3], "price": [1.0], "bidder": ["d"]})
    client.produce_table("bids", arrow, key_column="auction", partition=0)
    rows = [json.loads(v) for v in client.read("bids").column("value").to_pylist()]
    assert sorted(r["bidder"] for r in rows) == ["a", "b", "c", "d"]
    assert {r["bidder"]: r["price"] for r in rows} == {"a": 10.5, "b": 3.25, "c": 7.0, "d": 1.0}


def test_acks_modes(client: Client) -> None:
    client.create_topic("acks", 1)
    assert client.produce("acks", b"a", acks="leader").offset == 0
    durable = client.produce("acks", b"b", acks="durable")
    assert durable.offset == 1
    assert client.describe("acks").partitions[0].durable_end_offset == 2  # committed before the ack
    assert client.produce("acks", b"c", acks="none").offset == -1
    with client.consumer("acks", start="earliest") as consumer:
        got: list[bytes] = []
        while len(got) < 3:
            got += consumer.poll(timeout=5).column("value").to_pylist()
    assert got == [b"a", b"b", b"c"]


def test_consumer_groups_commit_resume_seek_and_reset(client: Client) -> None:
    client.create_topic("events", 2)
    client.produce_batch("events", [f"e{i}".encode() for i in range(10)], partition=0)
    client.produce_batch("events", [f"f{i}".encode() for i in range(4)], partition=1)
    with client.consumer("events", group="g") as consumer:
        seen = 0
        while seen < 14:
            seen += consumer.poll(timeout=5).num_rows
        assert consumer.positions() == {0: 10, 1: 4}
    # Closing committed the positions: a new consumer of the group starts at the end.
    with client.consumer("events", group="g") as consumer:
        assert consumer.poll(timeout=0.2).num_rows == 0
        consumer.seek(0, 8)
        assert consumer.poll(timeout=5).column("value").to_pylist() == [b"e8", b"e9"]
    assert "g" in client.groups()
    lag = {o.partition: o.lag for o in client.describe_group("g").offsets}
    assert lag == {0: 0, 1: 0}
    client.produce("events", b"late", partition=1)
    assert client.describe_group("g").total_lag == 1
    offsets = client.reset_group("g", "events", "earliest")
    assert {o.partition: o.committed_offset for o in offsets} == {0: 0, 1: 0}
    with client.consumer("events", group="g", partitions=[1]) as consumer:
        # A poll returns what is committed; "late" follows once the durable round it started commits.
        polled = consumer.poll(timeout=5).column("value").to_pylist()
        if len(polled) < 5:
            polled += consumer.poll(timeout=5).column("value").to_pylist()
        assert polled == [b"f0", b"f1", b"f2", b"f3", b"late"]


def test_a_consumer_long_polls_for_new_records(client: Client) -> None:
    client.create_topic("live", 1)
    with client.consumer("live", start="latest") as consumer:
        assert consumer.poll(timeout=0.1).num_rows == 0
        client.produce("live", b"now")
        polled = consumer.poll(timeout=5)
    assert polled.column("value").to_pylist() == [b"now"]
    assert polled.column("partition").to_pylist() == [0]


def test_bad_input_raises_typed_errors_and_writes_nothing(client: Client) -> None:
    client.create_topic("strict", 2)
    with pytest.raises(streamhouse.TopicNotFoundError):
        client.produce("missing", b"x")
    with pytest.raises(PartitionNotFoundError, match="partition 5"):
        client.produce("strict", b"x", partition=5)
    with pytest.raises(streamhouse.InvalidInputError, match="over the limit"):
        client.produce("strict", b"x" * (2 << 20))
    with pytest.raises(streamhouse.InvalidInputError):
        client.create_topic("bad/name", 1)
    with pytest.raises(streamhouse.InvalidInputError):
        client.produce_batch("strict", [object()])
    assert client.describe("strict").end_offsets == {0: 0, 1: 0}


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "d") as c:
        c.create_topic("keep", 1)
        c.produce_batch("keep", [b"1", b"2"])
    with streamhouse.open(tmp_path / "d") as c:
        assert c.read("keep").column("value").to_pylist() == [b"1", b"2"]
        assert c.produce("keep", b"3").offset == 2  # the same agent id takes its lease back at once
        assert c.describe("keep").partitions[0].segments == 1


def test_sql_runs_the_same_through_both_transports(client: Client) -> None:
    client.sql(
        "CREATE TOPIC clicks (page STRING, ms BIGINT, ts TIMESTAMP(3), "
        "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (partitions = 2)"
    )
    client.produce_batch(
        "clicks",
        [{"page": p, "ms": i, "ts": 1_700_000_000_000 + i * 1_000} for i, p in enumerate("aabab")],
    )
    windows = client.sql(
        "SELECT window_start, page, count(*) AS n FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), "
        "INTERVAL '2' SECOND)) GROUP BY window_start, page ORDER BY window_start, page"
    )
    start = datetime(2023, 11, 14, 22, 13, 20)  # 1_700_000_000_000 ms, a multiple of 2 s
    assert [(r["window_start"], r["page"], r["n"]) for r in windows.to_pylist()] == [
        (start, "a", 2),
        (start + timedelta(seconds=2), "a", 1),
        (start + timedelta(seconds=2), "b", 1),
        (start + timedelta(seconds=4), "b", 1),
    ]
    assert client.sql("SELECT count(*) AS n FROM clicks").to_pylist() == [{"n": 5}]
    assert client.sql("SHOW TOPICS").column("topic").to_pylist() == ["clicks"]
    with pytest.raises(streamhouse.InvalidInputError, match="nowhere"):
        client.sql("SELECT * FROM nowhere")


def test_remote_sql_skips_an_agent_that_cannot_be_reached(tmp_path: Path) -> None:
    # A refused connection means the statement never ran: the next address answers it. A
    # statement an agent did run (a failing one here) is not repeated on another.
    from streamhouse.devservices.seaweedfs import free_ports

    dead = f"127.0.0.1:{free_ports(1)[0]}"
    with (
        start_agent(["--data-dir", str(tmp_path / "data")], log_path=tmp_path / "agent.log") as agent,
        streamhouse.connect(f"{dead},{agent.address}", retries=False) as c,
    ):
        for _ in range(3):  # whichever address the round robin starts with
            c.sql("CREATE TOPIC IF NOT EXISTS t (a BIGINT) WITH (partitions = 1)")
        assert c.sql("SHOW TOPICS").column("topic").to_pylist() == ["t"]
        with pytest.raises(streamhouse.InvalidInputError):
            c.sql("SELEC 1")
