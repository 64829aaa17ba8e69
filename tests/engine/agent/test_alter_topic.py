"""ALTER TOPIC and the topic setting registry (storage/topic_settings.py; the checks in
storage/topic_config.py) on every surface: SQL, the SDK on both transports (embedded, and a real
agent over gRPC), and the CLI. Unknown keys are refused with a suggestion, unenforced Kafka keys
as not supported, a refused change changes nothing, and added partitions take produce, consume
and SQL at once."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import streamhouse
from streamhouse.api.partitioner import partition_for_keys
from streamhouse.cli.main import main
from streamhouse.client import routing as client_routing
from streamhouse.client.client import Client
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.devservices.agent import AgentProcess, start_agent
from streamhouse.sql.errors import SqlError
from streamhouse.sql.statements.ddl import AlterTopic, parse_statement
from streamhouse.storage import topic_config
from streamhouse.storage.errors import (
    InvalidValueError,
    PartitionCountError,
    TopicNotFoundError,
    TopicSettingError,
    UnknownTopicSettingError,
    UnsupportedTopicSettingError,
)
from streamhouse.storage.metadata import open_metadata_store
from tests.agent_process import AgentLauncher

LENIENT = "json.ignore-errors"


@pytest.fixture
def sh(client: Client) -> Client:
    """The SDK on both transports (tests/services/sdk.py)."""
    return client


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with start_agent(["--data-dir", str(tmp_path / "data")], log_path=tmp_path / "agent.log") as process:
        yield process


# -- the statement ------------------------------------------------------------------------------
def test_alter_topic_parses() -> None:
    assert parse_statement("ALTER TOPIC t SET ('json.ignore-errors' = 'true')") == AlterTopic(
        "t", set_config={LENIENT: "true"}
    )
    assert parse_statement("alter topic \"T\" reset ('json.ignore-errors', x);") == AlterTopic(
        "T", reset=(LENIENT, "x")
    )
    assert parse_statement("ALTER TOPIC t ADD PARTITIONS 3") == AlterTopic("t", add_partitions=3)
    assert parse_statement("ALTER TOPIC t ADD PARTITIONS -2") == AlterTopic("t", add_partitions=-2)
    for bad, message in [
        ("ALTER TOPIC t", "expected SET"),
        ("ALTER TOPIC t ADD 3", "expected PARTITIONS"),
        ("ALTER TOPIC t ADD PARTITIONS many", "whole number"),
        ("ALTER TOPIC t SET ('a' = 'b') RESET ('a')", "unexpected 'RESET'"),
        ("ALTER TOPIC t RESET 'a'", "expected \\("),
    ]:
        with pytest.raises(SqlError, match=message):
            parse_statement(bad)


def test_create_topic_with_refuses_unknown_and_unsupported_settings() -> None:
    with pytest.raises(
        UnknownTopicSettingError, match="unknown topic setting 'partitons'; did you mean 'partitions'"
    ) as e:
        parse_statement("CREATE TOPIC t (a BIGINT) WITH (partitons = 3)")
    assert (e.value.key, e.value.suggestion) == ("partitons", "partitions")
    with pytest.raises(UnknownTopicSettingError, match=re.escape("did you mean 'json.ignore-errors'")):
        parse_statement("CREATE TOPIC t (a BIGINT) WITH ('json.ignore_errors' = 'true')")
    with pytest.raises(
        UnknownTopicSettingError, match=re.escape("known settings: partitions, format, json.ignore-errors")
    ):
        parse_statement("CREATE TOPIC t WITH (colour = 'red')")
    with pytest.raises(UnsupportedTopicSettingError, match=re.escape("'segment.ms' is not supported yet")):
        parse_statement("CREATE TOPIC t WITH ('segment.ms' = '1000')")
    with pytest.raises(TopicSettingError, match="'partitions' = '0': must be a positive integer"):
        parse_statement("CREATE TOPIC t (a BIGINT) WITH (partitions = 0)")
    with pytest.raises(TopicSettingError, match="must be 'true' or 'false'"):
        parse_statement("CREATE TOPIC t (a BIGINT) WITH ('json.ignore-errors' = 'yes')")
    with pytest.raises(TopicSettingError, match="'job' cannot be set"):
        parse_statement("CREATE TOPIC t WITH ('job' = 'x')")
    with pytest.raises(SqlError, match="did you mean 'dead-letter'"):
        parse_statement("CREATE MATERIALIZED VIEW v WITH ('dead_letter' = 'late') AS SELECT 1")


def test_a_key_stored_before_it_was_refused_can_still_be_reset() -> None:
    legacy = {"segment.ms": "1000", "colour": "red", "job": "v"}
    change = topic_config.alter_change("t", None, ["segment.ms", "COLOUR"], None, legacy)
    assert change.reset == ("segment.ms", "colour")
    with pytest.raises(UnsupportedTopicSettingError):
        topic_config.alter_change("t", None, ["segment.ms"], None, {})
    with pytest.raises(TopicSettingError, match="'job' cannot be altered"):
        topic_config.alter_change("t", None, ["job"], None, legacy)  # registered: never by hand


# -- SQL end to end -----------------------------------------------------------------------------
def test_sql_alter_set_reset_and_add_partitions(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "data") as sh:
        with pytest.raises(UnknownTopicSettingError):
            sh.sql("CREATE TOPIC t (id BIGINT) WITH (partitons = 3)")
        assert sh.topics() == []  # nothing was created
        sh.sql("CREATE TOPIC t (id BIGINT) WITH (partitions = 2)")
        sh.produce_batch("t", [{"id": i} for i in range(4)], partition=0)

        row = sh.sql("ALTER TOPIC t SET ('json.ignore-errors' = 'TRUE')").to_pylist()
        assert row == [{"topic": "t", "partitions": 2, "config": json.dumps({LENIENT: "true"})}]
        # Takes effect at once: a value that does not fit is now stored and reads as null.
        sh.produce("t", {"id": "not a number"}, partition=1)
        assert sh.sql("SELECT id FROM t WHERE _partition = 1").to_pylist() == [{"id": None}]

        assert sh.sql("ALTER TOPIC t RESET ('json.ignore-errors')").to_pylist()[0]["config"] == "{}"
        with pytest.raises(InvalidValueError):
            sh.produce("t", {"id": "not a number"}, partition=1)

        assert sh.sql("ALTER TOPIC t ADD PARTITIONS 3").to_pylist()[0]["partitions"] == 5
        sh.produce_batch("t", [{"id": 100 + i} for i in range(3)], partition=4)
        counts = sh.sql("SELECT _partition AS p, count(*) AS n FROM t GROUP BY _partition ORDER BY p").to_pylist()
        assert counts == [{"p": 0, "n": 4}, {"p": 1, "n": 1}, {"p": 4, "n": 3}]
        shown = sh.sql("SHOW TOPICS").to_pylist()
        assert [(r["topic"], r["partitions"]) for r in shown] == [("t", 5)]

        for statement, error, message in [
            ("ALTER TOPIC t ADD PARTITIONS 0", PartitionCountError, "only grows"),
            ("ALTER TOPIC t ADD PARTITIONS -1", PartitionCountError, "only grows"),
            ("ALTER TOPIC t SET ('partitions' = '9')", TopicSettingError, "ADD PARTITIONS"),
            ("ALTER TOPIC t SET ('format' = 'raw')", TopicSettingError, "cannot be altered"),
            ("ALTER TOPIC t SET ('json.ignore-erors' = 'true')", UnknownTopicSettingError, "did you mean"),
            ("ALTER TOPIC t SET ('max.compaction.lag.ms' = '5')", UnsupportedTopicSettingError, "not supported yet"),
            ("ALTER TOPIC t RESET ('segment.bytes')", UnsupportedTopicSettingError, "not supported yet"),
            ("ALTER TOPIC missing SET ('json.ignore-errors' = 'true')", TopicNotFoundError, "missing"),
        ]:
            with pytest.raises(error, match=message):
                sh.sql(statement)
        after = sh.describe("t").info
        assert (after.partitions, dict(after.config)) == (5, {})


def test_add_partitions_is_refused_while_a_continuous_query_reads_the_topic(tmp_path: Path) -> None:
    with streamhouse.open(tmp_path / "data") as sh:
        sh.sql("CREATE TOPIC src (a BIGINT) WITH (partitions = 2)")
        sh.sql("CREATE MATERIALIZED VIEW copy AS SELECT a FROM src")
        with pytest.raises(PartitionCountError, match="continuous queries copy read this topic"):
            sh.alter_topic("src", add_partitions=1)
        assert sh.describe("src").info.partitions == 2
        sh.alter_topic("src", set={LENIENT: "true"})  # settings may still change
        with pytest.raises(TopicSettingError, match="'job' cannot be altered"):
            sh.alter_topic("copy", reset=["job"])
        sh.drop_job("copy")
        assert sh.alter_topic("src", add_partitions=1).partitions == 3


# -- SDK, both transports ---------------------------------------------------------------------
def test_sdk_alter_topic_and_typed_errors(sh: Client) -> None:
    with pytest.raises(UnknownTopicSettingError, match="did you mean 'partitions'"):
        sh.create_topic("t", 2, config={"partitons": "3"})
    with pytest.raises(UnsupportedTopicSettingError, match=re.escape("'segment.ms' is not supported yet")):
        sh.create_topic("t", 2, config={"segment.ms": "1000"})
    with pytest.raises(TopicSettingError, match="pass partitions="):
        sh.create_topic("t", 2, config={"partitions": "3"})
    assert sh.topics() == []
    info = sh.create_topic("t", 2, config={LENIENT: "True"})
    assert dict(info.config) == {LENIENT: "true"}

    assert dict(sh.alter_topic("t", reset=[LENIENT]).config) == {}
    assert dict(sh.alter_topic("t", set={LENIENT: "true"}).config) == {LENIENT: "true"}
    grown = sh.alter_topic("t", add_partitions=2)
    assert (grown.partitions, grown.topic_id, dict(grown.config)) == (4, info.topic_id, {LENIENT: "true"})
    assert sh.describe("t").end_offsets == {0: 0, 1: 0, 2: 0, 3: 0}

    # Every refusal is its own class on both transports, and changes nothing: the valid part
    # of a refused request (the reset, the added partitions) is not applied either.
    refused: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"set": {"json.ignore-erors": "false"}, "add_partitions": 1}, UnknownTopicSettingError, "did you mean"),
        ({"set": {"segment.ms": "1"}, "reset": [LENIENT]}, UnsupportedTopicSettingError, "not supported yet"),
        ({"set": {LENIENT: "maybe"}, "add_partitions": 1}, TopicSettingError, "must be 'true' or 'false'"),
        ({"set": {LENIENT: "false"}, "reset": [LENIENT]}, TopicSettingError, "both SET and RESET"),
        ({"reset": LENIENT}, TopicSettingError, "list of setting names"),
        ({"add_partitions": 0}, PartitionCountError, "only grows"),
        ({"add_partitions": -3}, PartitionCountError, "only grows"),
        ({"add_partitions": 20_000}, PartitionCountError, "limit"),
        ({}, TopicSettingError, "nothing to change"),
    ]
    for kwargs, error, message in refused:
        with pytest.raises(error, match=message):
            sh.alter_topic("t", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TopicNotFoundError):
        sh.alter_topic("missing", set={LENIENT: "true"})
    after = sh.describe("t").info
    assert (after.partitions, dict(after.config)) == (4, {LENIENT: "true"})


def test_added_partitions_take_keyed_records_and_are_read_everywhere(sh: Client) -> None:
    sh.create_topic("keyed", 2)
    keys = [f"user-{i}" for i in range(60)]
    binary_keys = pa.array([k.encode() for k in keys], pa.binary())
    sh.produce_batch("keyed", [{"i": i, "round": 1} for i in range(60)], keys=keys)
    before = sh.read("keyed")
    old_ends = sh.describe("keyed").end_offsets

    sh.sql("ALTER TOPIC keyed ADD PARTITIONS 3")  # through SQL: the client re-reads the count
    sh.produce_batch("keyed", [{"i": i, "round": 2} for i in range(60)], keys=keys)
    table = sh.read("keyed")
    assert table.num_rows == 120
    # Existing records stay where they were; new keyed records hash over five partitions.
    expected = dict(zip(keys, partition_for_keys(binary_keys, 5).tolist(), strict=True))
    second = [r for r in table.to_pylist() if json.loads(r["value"])["round"] == 2]
    assert {r["key"].decode(): r["partition"] for r in second} == expected
    assert set(expected.values()) > {0, 1}  # some keys moved to the new partitions
    first = [r for r in table.to_pylist() if json.loads(r["value"])["round"] == 1]
    assert sorted((r["partition"], r["offset"]) for r in first) == sorted(
        zip(before.column("partition").to_pylist(), before.column("offset").to_pylist(), strict=True)
    )
    ends = sh.describe("keyed").end_offsets
    assert all(ends[p] >= old_ends[p] for p in old_ends) and set(ends) == {0, 1, 2, 3, 4}

    # A consumer group sees and commits the new partitions; SQL scans them.
    with sh.consumer("keyed", group="g", start="earliest") as consumer:
        polled = 0
        for _ in range(50):
            polled += consumer.poll(timeout=0.5).num_rows
            if polled >= 120:
                break
    assert polled == 120
    committed = {o.partition: o.committed_offset for o in sh.committed("g", "keyed")}
    assert committed == ends
    by_partition = sh.sql("SELECT _partition AS p, count(*) AS n FROM keyed GROUP BY _partition ORDER BY p")
    assert dict(zip(by_partition.column("p").to_pylist(), by_partition.column("n").to_pylist(), strict=True)) == {
        p: n for p, n in ends.items() if n
    }


def test_a_running_consumer_takes_added_partitions_from_their_start(sh: Client) -> None:
    sh.create_topic("t", 1)
    sh.produce_batch("t", [b"old"] * 5, acks="durable")  # "latest" is the high watermark: committed
    with sh.consumer("t", start="latest") as consumer:
        assert consumer.poll(timeout=0.1).num_rows == 0 and consumer.partitions == [0]
        sh.alter_topic("t", add_partitions=2)
        sh.produce_batch("t", [b"new"] * 30, keys=[f"k{i}" for i in range(30)])
        got: list[pa.Table] = []
        for _ in range(50):
            got.append(consumer.poll(timeout=0.2))
            if sum(t.num_rows for t in got) >= 30:
                break
        table = pa.concat_tables(got)
        assert consumer.partitions == [0, 1, 2]
        assert table.num_rows == 30 and set(table.column("value").to_pylist()) == {b"new"}
        assert set(table.column("partition").to_pylist()) > {0}


def test_a_deleted_grown_topic_leaves_no_wal_behind(tmp_path: Path) -> None:
    """A writer led before ADD PARTITIONS knows the old count; when the agent learns the topic
    was deleted through a writer like that, the new partitions' WAL entries are released too."""
    with streamhouse.open(tmp_path / "data") as sh:
        sh.create_topic("t", 1)
        sh.produce("t", b"before", partition=0)
        before = sh.describe("t").info
        sh.alter_topic("t", add_partitions=1)
        sh.produce("t", b"after", partition=1)
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        manager = transport.service.manager
        assert manager.wal.disk_bytes > 0
        transport._run(manager.forget_topic(before))
        assert manager.wal.disk_bytes == 0


def test_another_clients_added_partitions_reach_this_producer(
    agent: AgentProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_routing, "PARTITIONS_TTL_S", 0.2)
    with streamhouse.connect(agent.address) as producer, streamhouse.connect(agent.address) as admin:
        producer.create_topic("t", 1)
        producer.produce("t", b"x", key="k")  # caches one partition
        admin.alter_topic("t", add_partitions=3)
        time.sleep(0.3)
        keys = [f"k{i}" for i in range(40)]
        results = producer.produce_batch("t", [b"v"] * 40, keys=keys)
        assert {r.partition for r in results} == set(
            partition_for_keys(pa.array([k.encode() for k in keys], pa.binary()), 4).tolist()
        )

        # Behind the agent's back (as another agent would): the agent's topic cache must not
        # call a new partition out of range.
        async def grow() -> None:
            store = await open_metadata_store(f"sqlite:///{tmp_path / 'data' / 'metadata.db'}")
            try:
                await store.alter_topic("t", add_partitions=1)
            finally:
                await store.close()

        producer.produce("t", b"warm", partition=0)
        asyncio.run(grow())
        assert producer.produce("t", b"new", partition=4).partition == 4
        assert producer.read("t", partitions=[4]).column("value").to_pylist() == [b"new"]


def test_two_agents_on_postgresql_and_s3_see_added_partitions(
    pg_url: str, s3_url: tuple[str, str], tmp_path: Path
) -> None:
    """The change made through one agent reaches the other's cached topic: an explicit new
    partition is not called out of range, and SQL on either agent reads every partition."""
    url, endpoint = s3_url
    with AgentLauncher(tmp_path) as launcher:
        flags = ["--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint, "--durable-flush-ms", "50"]
        first = launcher.start("--data-dir", str(tmp_path / "a"), *flags, name="a")
        second = launcher.start("--data-dir", str(tmp_path / "b"), *flags, name="b")
        with streamhouse.connect(first.address) as a, streamhouse.connect(second.address) as b:
            a.create_topic("t", 1)
            a.produce("t", b"old", partition=0, acks="durable")  # the first agent caches 1 partition
            grown = b.alter_topic("t", add_partitions=2, set={LENIENT: "true"})
            assert (grown.partitions, dict(grown.config)) == (3, {LENIENT: "true"})
            assert a.produce("t", b"new", partition=2, acks="durable").partition == 2
            for client in (a, b):
                rows = client.sql("SELECT _partition AS p, count(*) AS n FROM t GROUP BY _partition ORDER BY p")
                assert rows.to_pylist() == [{"p": 0, "n": 1}, {"p": 2, "n": 1}]
                assert client.describe("t").info.partitions == 3


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_topic_alter(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMHOUSE_BOOTSTRAP", raising=False)
    data = ["--data-dir", str(tmp_path / "data")]

    def cli(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, *data])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = cli("topic", "create", "t", "--config", "partitons=3")
    assert code == 1 and err == "error: create_topic t: unknown topic setting 'partitons'; did you mean 'partitions'?\n"
    code, _, err = cli("topic", "create", "t", "--config", "segment.ms=1000")
    assert code == 1 and "'segment.ms' is not supported yet" in err
    assert cli("topic", "create", "t", "--partitions", "2")[0] == 0

    code, out, _ = cli("topic", "alter", "t", "--set", "json.ignore-errors=true", "--add-partitions", "2")
    assert code == 0 and out == "altered topic t: 4 partitions, config json.ignore-errors=true\n"
    code, out, _ = cli("topic", "alter", "t", "--reset", "json.ignore-errors")
    assert code == 0 and out == "altered topic t: 4 partitions, config -\n"

    code, _, err = cli("topic", "alter", "t", "--set", "json.ignore-erors=true")
    assert code == 1 and err == (
        "error: ALTER TOPIC t: unknown topic setting 'json.ignore-erors'; did you mean 'json.ignore-errors'?\n"
    )
    code, _, err = cli("topic", "alter", "t", "--set", "max.compaction.lag.ms=5", "--add-partitions", "1")
    assert code == 1 and "not supported yet" in err
    code, _, err = cli("topic", "alter", "t")
    assert code == 1 and "nothing to change" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["topic", "alter", "t", "--add-partitions", "0", *data])
    assert exit_info.value.code == 2  # argparse: must be > 0

    code, out, _ = cli("topic", "describe", "t", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["partitions"], doc["config"]) == (4, {})
