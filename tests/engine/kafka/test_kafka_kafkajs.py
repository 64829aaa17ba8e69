"""kafkajs (npm, pure JavaScript) against a real `streamhouse serve --kafka-port`
subprocess on PostgreSQL + SeaweedFS: tests/js/kafka_peer.js produces (idempotent; the
codecs kafkajs ships: none, gzip), consumes in a group and commits; our SDK reads the same
records and committed offsets.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from tests.agent_process import AgentProcess, kafka_agent, read_log

JS_DIR = Path(__file__).resolve().parents[2] / "js"
PER_CODEC = 6


@pytest.fixture(scope="module")
def kafkajs_peer(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    build = tmp_path_factory.mktemp("kafkajs-peer")
    for name in ("package.json", "kafka_peer.js"):
        shutil.copy(JS_DIR / name, build / name)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=build, check=True, timeout=600)
    return ["node", str(build / "kafka_peer.js")]


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, str]]:
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        yield process, f"127.0.0.1:{port}"


def test_kafkajs_produces_consumes_and_commits(kafkajs_peer: list[str], agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic("js", 2)
    run = subprocess.run([*kafkajs_peer, bootstrap, "js", str(PER_CODEC)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    produced = sorted(tuple(map(int, ln.split()[1:])) for ln in lines if ln.startswith("produced"))
    assert produced == [(p, o) for p in (0, 1) for o in range(PER_CODEC)]
    expected = {p: [f"{c}-{i}".encode() for c in ("none", "gzip") for i in range(PER_CODEC) if i % 2 == p]
                for p in (0, 1)}  # fmt: skip
    with streamhouse.connect(process.address) as client:
        assert read_log(client, "js") == expected
        rows = {(r["partition"], r["offset"]): r for r in client.read("js").to_pylist()}
        committed = {o.partition: o.committed_offset for o in client.committed("kafkajs-group", "js")}
    assert committed == {0: PER_CODEC, 1: PER_CODEC}
    consumed = [ln.split()[1:] for ln in lines if ln.startswith("consumed")]
    assert len(consumed) == 2 * PER_CODEC
    for partition, offset, timestamp, key, value, header in consumed:
        row = rows[(int(partition), int(offset))]
        i = int(value.rsplit("-", 1)[1])
        assert row["value"] == value.encode()
        assert row["timestamp"] == int(timestamp) == 1_700_000_000_000 + i
        assert row["key"] == (None if key == "<null>" else key.encode())
        assert row["headers"] == [{"key": "h", "value": header.encode()}]
