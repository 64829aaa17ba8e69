"""The Java Kafka client (org.apache.kafka:kafka-clients 4.x from Maven Central, its
defaults: idempotent producer, classic consumer group) against a real `streamhouse serve
--kafka-port` subprocess on PostgreSQL + SeaweedFS. tests/java/KafkaPeer.java produces with
every codec, consumes in a group and commits; our SDK reads the same records and offsets. Its
admin client lists offsets with every OffsetSpec, the tiered-storage ones (-4, -5) included.
tests/java/TxnPeer.java is its transactional producer (issue 18): commit, abort, a zombie fenced
by a new instance of its transactional id, and a read_committed consumer.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.transactions import COMPLETE_ABORT, COMPLETE_COMMIT
from tests.agent_process import AgentProcess, kafka_agent, read_log

JAVA_DIR = Path(__file__).resolve().parents[2] / "java"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 6


@pytest.fixture(scope="module")
def java_peer(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs KafkaPeer: dependencies resolved by Maven, compiled by javac."""
    build = tmp_path_factory.mktemp("java-peer")
    shutil.copy(JAVA_DIR / "pom.xml", build / "pom.xml")
    subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={build / 'lib'}"],
        cwd=build, check=True, timeout=600,
    )  # fmt: skip
    classes = build / "classes"
    sources = [str(JAVA_DIR / "KafkaPeer.java"), str(JAVA_DIR / "TxnPeer.java"),  # TxnPeer: transactions
               str(JAVA_DIR / "TxnOffsetsPeer.java")]  # fmt: skip
    subprocess.run(["javac", "-cp", f"{build / 'lib'}/*", "-d", str(classes), *sources], check=True, timeout=300)
    return ["java", "-cp", f"{classes}:{build / 'lib'}/*", "KafkaPeer"]


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, str]]:
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        yield process, f"127.0.0.1:{port}"


def test_java_client_produces_consumes_and_commits(java_peer: list[str], agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic("java", 2)
    run = subprocess.run([*java_peer, bootstrap, "java", str(PER_CODEC)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    produced = [tuple(map(int, ln.split()[1:])) for ln in lines if ln.startswith("produced")]
    consumed = [ln.split()[1:] for ln in lines if ln.startswith("consumed")]
    per_partition = len(CODECS) * PER_CODEC // 2
    assert sorted(produced) == [(p, o) for p in (0, 1) for o in range(per_partition)]  # once each, dense

    expected = {p: [f"{c}-{i}".encode() for c in CODECS for i in range(PER_CODEC) if i % 2 == p] for p in (0, 1)}
    with streamhouse.connect(process.address) as client:
        assert read_log(client, "java") == expected
        table = client.read("java").to_pylist()
        committed = {o.partition: o.committed_offset for o in client.committed("java-group", "java")}
    assert committed == {0: per_partition, 1: per_partition}
    by_position = {(r["partition"], r["offset"]): r for r in table}
    assert len(consumed) == len(table)
    for partition, offset, timestamp, key, value, header in consumed:
        row = by_position[(int(partition), int(offset))]
        i = int(value.rsplit("-", 1)[1])
        assert row["value"] == value.encode() and row["timestamp"] == int(timestamp) == 1_700_000_000_000 + i
        assert row["key"] == (None if key == "<null>" else key.encode()) == (None if i % 3 == 0 else f"k{i}".encode())
        assert row["headers"] == [{"key": "h", "value": header.encode()}] and header == f"x{i}"
    # OffsetSpec.earliestLocal() (-4, v8) is the log start as earliest() is; latestTiered() (-5,
    # v9) is unknown (-1): nothing is tiered (engine/kafka/handlers.py, SPECIAL_TIMESTAMP_VERSIONS).
    listed = {
        (s, int(p)): (int(o), int(t)) for s, p, o, t in (ln.split()[1:] for ln in lines if ln.startswith("listed"))
    }
    for p in (0, 1):
        assert listed[("earliest", p)] == listed[("earliest-local", p)] == (0, -1)
        assert listed[("latest", p)] == (per_partition, -1)
        assert listed[("latest-tiered", p)] == (-1, -1)


async def _epoch(pg_url: str, transactional_id: str) -> tuple[int, str]:
    store = await open_metadata_store(pg_url)
    try:
        state = await store.txn_get(transactional_id)
    finally:
        await store.close()
    assert state is not None
    return state.producer_epoch, state.state


def test_java_transactional_producer(java_peer: list[str], agent: tuple[AgentProcess, str], pg_url: str) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic("java-tx", 2)
    run = subprocess.run([*java_peer[:-1], "TxnPeer", bootstrap, "java-tx"], capture_output=True, text=True,
                         timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith(("fenced", "zombie"))] == ["fenced ProducerFencedException"], lines
    consumed = sorted(ln.split()[1] for ln in lines if ln.startswith("consumed"))
    assert consumed == ["committed-0", "committed-1", "committed-2", "committed-3", "second-0", "second-1"]
    # Transaction version 2 (KIP-890 part 2, engine/kafka/txn_v2.py): the client's batches added
    # their partitions themselves and its epoch moved at every end: the commit (1), the abort (2),
    # the second instance fencing the zombie (3), its commit (4). Version 1 would have left 1.
    assert asyncio.run(_epoch(pg_url, "java-app")) == (4, COMPLETE_COMMIT)
    # sendOffsetsToTransaction under version 2 (TxnOffsetCommit v5 adds the group): the committed
    # transaction's offset is the group's, the aborted one's is not; epochs 0 -> 1 (commit) -> 2 (abort).
    run = subprocess.run([*java_peer[:-1], "TxnOffsetsPeer", bootstrap, "java-tx"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and run.stdout.split() == ["done"], run.stderr[-3000:]
    assert asyncio.run(_epoch(pg_url, "java-offsets")) == (2, COMPLETE_ABORT)
    with streamhouse.connect(process.address) as client:
        offsets = {o.partition: o.committed_offset for o in client.committed("java-offsets-group", "java-tx")}
    assert offsets == {0: 3, 1: -1}  # -1: never committed
