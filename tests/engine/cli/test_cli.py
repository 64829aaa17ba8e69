"""The `streamhouse` command line: topics, produce, consume and groups in-process on the
embedded engine (`--data-dir`), and once end to end as real processes over gRPC."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from streamhouse.api.partitioner import partition_for_keys
from streamhouse.api.types import GroupOffset
from streamhouse.cli.main import build_parser, main
from streamhouse.client.client import open_embedded

Run = tuple[int, str, str]


@pytest.fixture(autouse=True)
def _no_engine_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's exported STREAMHOUSE_BOOTSTRAP must not send these tests to a cluster.
    monkeypatch.delenv("STREAMHOUSE_BOOTSTRAP", raising=False)
    monkeypatch.delenv("STREAMHOUSE_DATA_DIR", raising=False)


class Cli:
    """cli("topic", "list") -> (exit code, stdout, stderr), on an embedded engine in data_dir."""

    def __init__(self, data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.data_dir = data_dir
        self.capsys = capsys

    def __call__(self, *argv: str) -> Run:
        self.capsys.readouterr()
        code = main([*argv, "--data-dir", self.data_dir])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(str(tmp_path / "data"), capsys)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def end_offsets(data_dir: str, topic: str) -> dict[int, int]:
    with open_embedded(data_dir) as client:
        return client.describe(topic).end_offsets


# -- topics ---------------------------------------------------------------------------------------


def test_topic_create_list_describe_delete(cli: Cli) -> None:
    code, out, _ = cli("topic", "create", "orders", "--partitions", "3", "--config", "json.ignore-errors=true")
    assert code == 0 and "created topic orders with 3 partitions" in out
    assert cli("topic", "create", "audit")[0] == 0

    code, out, _ = cli("topic", "list")
    assert code == 0 and "orders" in out and "audit" in out and "json.ignore-errors=true" in out
    code, out, _ = cli("topic", "list", "--json")
    assert json.loads(out) == [
        {"name": "audit", "topic_id": 2, "partitions": 1, "config": {}},
        {"name": "orders", "topic_id": 1, "partitions": 3, "config": {"json.ignore-errors": "true"}},
    ]

    code, out, _ = cli("topic", "describe", "orders")
    assert code == 0 and "durable end offset" in out and "json.ignore-errors=true" in out
    code, out, _ = cli("topic", "describe", "orders", "--json")
    doc = json.loads(out)
    assert doc["name"] == "orders" and doc["partitions"] == 3
    assert [s["partition"] for s in doc["partition_states"]] == [0, 1, 2]
    assert set(doc["partition_states"][0]) == {
        "partition",
        "end_offset",
        "durable_end_offset",
        "segments",
        "leader",
        "leader_epoch",
        "log_start",
        "size_bytes",
        "last_compacted_ms",
    }

    code, out, _ = cli("topic", "delete", "orders")
    assert code == 0 and "deleted topic orders" in out
    assert [t["name"] for t in json.loads(cli("topic", "list", "--json")[1])] == ["audit"]


def test_user_errors_are_one_line_without_traceback(cli: Cli) -> None:
    assert cli("topic", "create", "t")[0] == 0
    code, out, err = cli("topic", "create", "t")
    assert code == 1 and out == ""
    assert err == "error: topic 't' already exists\n"
    code, out, _ = cli("topic", "create", "t", "--if-not-exists")
    assert code == 0 and "already exists" in out

    code, _, err = cli("topic", "describe", "missing")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_bootstrap_and_data_dir_together_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["topic", "list", "--bootstrap", "localhost:1", "--data-dir", str(tmp_path)])
    assert code == 1 and "not both" in capsys.readouterr().err


# -- produce --------------------------------------------------------------------------------------


def test_produce_file_with_key_field_partitions_by_murmur2(cli: Cli, tmp_path: Path) -> None:
    cli("topic", "create", "events", "--partitions", "4")
    users = ["alice", "bob", "carol", "dave", "erin", "frank"]
    lines = [json.dumps({"user": users[i % len(users)], "n": i}) for i in range(60)]
    lines.insert(10, "")  # empty lines are skipped
    lines.append(json.dumps({"user": 7, "n": 60}))  # a non-string key is JSON-encoded
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n")

    code, _, err = cli("produce", "events", "--file", str(source), "--key-field", "user", "--batch-size", "7")
    assert code == 0, err
    assert "produced 61 records to events" in err

    with open_embedded(cli.data_dir) as client:
        table = client.read("events")
    assert table.num_rows == 61
    where: dict[bytes, set[int]] = defaultdict(set)
    for row in table.to_pylist():
        assert json.loads(row["value"])["user"] in [*users, 7]
        where[row["key"]].add(row["partition"])
    assert all(len(parts) == 1 for parts in where.values())  # one key, one partition
    keys = sorted(where)
    expected = partition_for_keys(pa.array(keys, pa.binary()), 4)
    assert [next(iter(where[k])) for k in keys] == expected.tolist()
    assert b"7" in where


def test_produce_from_stdin(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("topic", "create", "lines")
    monkeypatch.setattr(sys, "stdin", io.StringIO("k1:one\r\nk2:two:with:colons\n\nk1:three"))
    code, _, err = cli("produce", "lines", "--key-separator", ":")
    assert code == 0 and "produced 3 records to lines" in err
    with open_embedded(cli.data_dir) as client:
        rows = client.read("lines").to_pylist()
    assert [(r["key"], r["value"]) for r in rows] == [(b"k1", b"one"), (b"k2", b"two:with:colons"), (b"k1", b"three")]

    monkeypatch.setattr(sys, "stdin", io.StringIO("plain\nno separator\n"))
    code, _, err = cli("produce", "lines", "--key-separator", "|")
    assert code == 1 and "line 1" in err


def test_bad_json_line_fails_and_sends_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("topic", "create", "t", "--partitions", "2")
    source = tmp_path / "bad.jsonl"
    source.write_text('{"id": "a"}\n{"id": "b"}\n\n{"id": broken\n{"id": "c"}\n')
    code, out, err = cli("produce", "t", "--file", str(source), "--key-field", "id")
    assert code == 1 and out == ""
    assert "error: line 4: not JSON" in err and "Traceback" not in err
    assert end_offsets(cli.data_dir, "t") == {0: 0, 1: 0}

    source.write_text('{"id": "a"}\n["id"]\n')
    code, _, err = cli("produce", "t", "--file", str(source), "--key-field", "id")
    assert code == 1 and "line 2: no field 'id'" in err
    assert end_offsets(cli.data_dir, "t") == {0: 0, 1: 0}


# -- consume --------------------------------------------------------------------------------------


def test_consume_from_beginning_prints_json_lines(cli: Cli) -> None:
    with open_embedded(cli.data_dir) as client:
        client.create_topic("mixed")
        client.produce_batch(
            "mixed",
            [b"hello", "h\u00e9llo", b"\xff\x00binary", None],
            keys=["k", b"\xfe", None, "k"],
            headers=[{"trace": "abc"}, None, [("raw", b"\x80")], None],
        )
    code, out, err = cli("consume", "mixed", "--from-beginning", "--max", "3")
    assert code == 0 and "3 records printed from mixed" in err
    records = json_lines(out)
    assert [r["offset"] for r in records] == [0, 1, 2]
    first, second, third = records
    assert list(first) == ["partition", "offset", "timestamp", "key", "value", "headers"]
    assert (first["key"], first["value"], first["headers"]) == ("k", "hello", [{"key": "trace", "value": "abc"}])
    assert second["value"] == "h\u00e9llo" and "value_encoding" not in second
    assert base64.b64decode(second["key"]) == b"\xfe" and second["key_encoding"] == "base64"
    assert third["key"] is None and third["value_encoding"] == "base64"
    assert base64.b64decode(third["value"]) == b"\xff\x00binary"
    assert third["headers"] == [{"key": "raw", "value": base64.b64encode(b"\x80").decode(), "value_encoding": "base64"}]

    # Without --from-beginning (and no group) a consumer starts at the end: nothing old.
    code, out, err = cli("consume", "mixed", "--timeout", "0.3")
    assert code == 0 and out == "" and "0 records printed" in err


def test_consume_format_value_writes_the_bytes(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with open_embedded(str(tmp_path)) as client:
        client.create_topic("raw")
        client.produce_batch("raw", [b"text", b"\xff\x00binary", None])
    code = main(["consume", "raw", "--from-beginning", "--max", "3", "--format", "value", "--data-dir", str(tmp_path)])
    assert code == 0
    assert capsysbinary.readouterr().out == b"text\n\xff\x00binary\nnull\n"


def test_consume_with_group_continues_where_it_committed(cli: Cli) -> None:
    with open_embedded(cli.data_dir) as client:
        client.create_topic("jobs", partitions=2)
        client.produce_batch("jobs", [f"job-{i}" for i in range(10)], partition=0)
        client.produce_batch("jobs", [f"late-{i}" for i in range(4)], partition=1)

    # A group without commits and without --from-beginning starts at the end.
    code, out, _ = cli("consume", "jobs", "--group", "tail", "--timeout", "0.3")
    assert code == 0 and out == ""
    assert {o.partition: o.committed_offset for o in _committed(cli.data_dir, "tail", "jobs")} == {0: 10, 1: 4}

    code, out, _ = cli("consume", "jobs", "--group", "g", "--from-beginning", "--partition", "0", "--max", "4")
    assert [r["value"] for r in json_lines(out)] == ["job-0", "job-1", "job-2", "job-3"]
    # Committed offsets win over --from-beginning; the rest of partition 0 and all of 1 follow.
    code, out, _ = cli("consume", "jobs", "--group", "g", "--from-beginning", "--timeout", "0.5")
    got = {(r["partition"], r["offset"]) for r in json_lines(out)}
    assert got == {(0, i) for i in range(4, 10)} | {(1, i) for i in range(4)}
    code, out, _ = cli("consume", "jobs", "--group", "g", "--from-beginning", "--timeout", "0.3")
    assert out == ""


def _committed(data_dir: str, group: str, topic: str) -> list[GroupOffset]:
    with open_embedded(data_dir) as client:
        return client.committed(group, topic)


# -- groups ---------------------------------------------------------------------------------------


def test_group_list_describe_reset(cli: Cli) -> None:
    with open_embedded(cli.data_dir) as client:
        client.create_topic("t", partitions=2)
        client.produce_batch("t", [str(i) for i in range(6)], partition=0)
        client.produce_batch("t", [str(i) for i in range(3)], partition=1)
    cli("consume", "t", "--group", "readers", "--from-beginning", "--partition", "0", "--max", "2")
    cli("consume", "t", "--group", "others", "--from-beginning", "--timeout", "0.3")

    code, out, _ = cli("group", "list")
    assert code == 0 and out.split() == ["others", "readers"]
    assert json.loads(cli("group", "list", "--json")[1]) == ["others", "readers"]

    code, out, _ = cli("group", "describe", "readers")
    assert code == 0 and "total lag: 4" in out
    doc = json.loads(cli("group", "describe", "readers", "--json")[1])
    assert doc["total_lag"] == 4
    assert doc["offsets"] == [{"topic": "t", "partition": 0, "committed_offset": 2, "end_offset": 6, "lag": 4}]

    doc = json.loads(cli("group", "reset", "others", "--topic", "t", "--to", "earliest", "--json")[1])
    assert [(o["partition"], o["committed_offset"]) for o in doc["offsets"]] == [(0, 0), (1, 0)]
    assert doc["total_lag"] == 9
    code, out, _ = cli("group", "reset", "others", "--topic", "t", "--to", "2")
    assert code == 0 and "total lag: 5" in out
    code, out, _ = cli("group", "reset", "others", "--topic", "t", "--to", "latest")
    assert code == 0 and "total lag: 0" in out
    code, _, err = cli("group", "describe", "nobody")
    assert code == 1 and err.startswith("error: ")


def test_bench_client_commands_are_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamhouse.bench.client as bench_client

    seen: list[str] = []

    def fake(code: int) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            seen.append(args.bench)
            return code

        return run

    monkeypatch.setattr(bench_client, "run_produce", fake(0))
    monkeypatch.setattr(bench_client, "run_consume", fake(3))
    assert main(["bench", "produce", "--records", "10"]) == 0
    assert main(["bench", "consume", "--records", "10"]) == 3
    assert seen == ["produce", "consume"]
    assert build_parser().parse_args(["bench", "storage"]).records == 1_000_000


# -- real processes -------------------------------------------------------------------------------

READY = re.compile(r"streamhouse agent listening grpc=(\S+) http=\S+")


def test_console_script_against_a_running_agent(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("streamhouse")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMHOUSE_")}
    data = tmp_path / "agent"
    with open(tmp_path / "agent.log", "w") as log:
        agent = subprocess.Popen(
            [str(script), "serve", "--port", "0", "--http-port", "0", "--kafka-port", "0", "--data-dir", str(data)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    try:
        address = _wait_ready(agent)
        remote = ["--bootstrap", address]

        def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            done = subprocess.run([str(script), *argv, *remote], capture_output=True, text=True, env=env, timeout=60)
            assert not check or done.returncode == 0, done.stderr
            return done

        run("topic", "create", "remote", "--partitions", "3")
        source = tmp_path / "in.txt"
        source.write_text("".join(f'user{i % 5}\t{{"n": {i}}}\n' for i in range(100)))
        done = run("produce", "remote", "--file", str(source), "--key-separator", "\t", "--acks", "durable")
        assert "produced 100 records to remote" in done.stderr
        done = run("consume", "remote", "--from-beginning", "--max", "100")
        records = json_lines(done.stdout)
        assert sorted(json.loads(r["value"])["n"] for r in records) == list(range(100))
        assert {r["key"] for r in records} == {f"user{i}" for i in range(5)}
        done = run("topic", "create", "remote", check=False)
        assert done.returncode == 1 and done.stderr == "error: topic 'remote' already exists\n"
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def _wait_ready(agent: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """The agent's gRPC address from its ready line (read on a thread: readline cannot time out)."""
    lines: queue.Queue[str] = queue.Queue()
    assert agent.stdout is not None
    stdout = agent.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"the agent printed no ready line within {timeout_s}s")
        match = READY.search(line)
        if match:
            return match.group(1)
