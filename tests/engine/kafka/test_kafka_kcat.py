"""kcat (the Debian package: librdkafka's command-line client) against a real `streamhouse
serve --kafka-port` subprocess on PostgreSQL + SeaweedFS, as an operator would use it with
no change: -L lists the agent as the broker, -P produces with every codec (keys, headers,
null vs empty), -C reads back what our SDK wrote with the same offsets, keys, headers and
timestamps, -G consumes as a group whose commits are the SDK's committed offsets, and -Q
finds offsets by timestamp.

kcat is a system tool, not a Python package: .ci/run installs it with apt-get before pytest.
This test fails (never skips) where it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import streamhouse
from streamhouse.devservices.ports import free_port
from tests.agent_process import AgentLauncher, kafka_agent

TOPIC = "kcat"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture
def kafka(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[str, streamhouse.Client]]:
    """(bootstrap, SDK client) of one agent with a 2-partition topic."""
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port), streamhouse.connect(process.address) as client:
        client.create_topic(TOPIC, 2)
        yield f"127.0.0.1:{port}", client


def kcat(bootstrap: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    path = shutil.which("kcat")
    assert path, "kcat is not installed: apt-get install -y kcat (.ci/run does it before pytest)"
    done = subprocess.run(
        [path, "-b", bootstrap, *argv], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kcat {' '.join(argv)} exited {done.returncode}:\n{done.stderr}"
    return done


def consume_json(bootstrap: str, *argv: str) -> list[dict[str, Any]]:
    """Every message kcat prints with -J (one JSON object a line) until the end of the topic."""
    done = kcat(bootstrap, *argv, "-J", "-e", "-q")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_kcat_lists_the_agent_as_the_broker(kafka: tuple[str, streamhouse.Client]) -> None:
    bootstrap, _ = kafka
    listing = json.loads(kcat(bootstrap, "-L", "-J").stdout)
    [broker] = listing["brokers"]
    assert broker["name"] == bootstrap
    [topic] = [t for t in listing["topics"] if t["topic"] == TOPIC]
    assert [(p["partition"], p["leader"]) for p in topic["partitions"]] == [(0, broker["id"]), (1, broker["id"])]


def test_kcat_produces_with_every_codec(kafka: tuple[str, streamhouse.Client]) -> None:
    """Each codec's batch lands whole on its partition: keys, values, headers, null (-Z turns
    an empty field into NULL) and CreateTime stamps as kcat sent them."""
    bootstrap, client = kafka
    started = int(time.time() * 1000)
    expected: dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {0: [], 1: []}
    for i, codec in enumerate(CODECS):
        partition = i % 2
        headers = [("codec", codec.encode()), ("empty", b"")]
        lines = [f"k{codec}\t{codec}-value", f"\t{codec}-null-key", f"k{codec}-null-value\t"]
        kcat(
            bootstrap,
            *("-P", "-t", TOPIC, "-p", str(partition), "-K", "\t", "-Z", "-z", codec),
            *(arg for name, value in headers for arg in ("-H", f"{name}={value.decode()}")),
            stdin="".join(f"{line}\n" for line in lines),
        )
        expected[partition] += [
            (f"k{codec}".encode(), f"{codec}-value".encode(), headers),
            (None, f"{codec}-null-key".encode(), headers),
            (f"k{codec}-null-value".encode(), None, headers),
        ]
    finished = int(time.time() * 1000)
    table = client.read(TOPIC).to_pylist()
    for partition, records in expected.items():
        rows = [r for r in table if r["partition"] == partition]
        assert [r["offset"] for r in rows] == list(range(len(records)))
        got = [(r["key"], r["value"], [(h["key"], h["value"]) for h in r["headers"] or []]) for r in rows]
        assert got == records
        assert all(started - 1000 <= r["timestamp"] <= finished + 1000 for r in rows)


def test_kcat_consumes_what_the_sdk_wrote(kafka: tuple[str, streamhouse.Client]) -> None:
    bootstrap, client = kafka
    stamps = [1_700_000_000_000 + 11 * i for i in range(12)]
    for partition in (0, 1):
        client.produce_batch(
            TOPIC,
            [f"v{partition}-{i}".encode() if i % 4 else b"" for i in range(6)],
            keys=[None if i % 3 == 0 else f"k{i}".encode() for i in range(6)],
            headers=[[("i", str(i).encode()), ("p", str(partition).encode())] for i in range(6)],
            timestamps=stamps[partition * 6 : partition * 6 + 6],
            partition=partition,
            acks="durable",
        )
    messages = consume_json(bootstrap, "-C", "-t", TOPIC, "-o", "beginning")
    got = sorted((m["partition"], m["offset"], m["key"], m["payload"], m["ts"], m["headers"]) for m in messages)
    table = client.read(TOPIC).to_pylist()
    want = sorted(
        (
            r["partition"],
            r["offset"],
            None if r["key"] is None else r["key"].decode(),
            r["value"].decode(),
            r["timestamp"],
            [x for h in r["headers"] for x in (h["key"], h["value"].decode())],
        )
        for r in table
    )
    assert got == want and len(got) == 12
    assert [m["payload"] for m in messages if m["partition"] == 0 and m["offset"] == 0] == [""]  # empty, not null
    assert all(m["tstype"] == "create" for m in messages)


def test_kcat_group_commits_are_the_sdk_committed_offsets(kafka: tuple[str, streamhouse.Client]) -> None:
    """kcat -G consumes as a classic consumer group; on exit it commits, and the SDK shows
    those offsets with no lag. A second run resumes after them and sees only new records."""
    bootstrap, client = kafka
    # kcat -e ends at the high watermark (the durable end), as at a Kafka broker: acks="durable"
    # puts the records below it before kcat reads.
    client.produce_batch(
        TOPIC, [f"first-{i}".encode() for i in range(10)], keys=[b"%d" % i for i in range(10)], acks="durable"
    )
    group = ("-G", "kcat-group", "-X", "auto.offset.reset=earliest", TOPIC)
    first = consume_json(bootstrap, *group)
    assert sorted(m["payload"] for m in first) == sorted(f"first-{i}" for i in range(10))
    offsets = client.committed("kcat-group", TOPIC)
    assert [(o.committed_offset, o.lag) for o in offsets] == [(o.end_offset, 0) for o in offsets]
    assert sum(o.end_offset for o in offsets) == 10
    client.produce_batch(
        TOPIC, [f"second-{i}".encode() for i in range(4)], keys=[b"%d" % i for i in range(4)], acks="durable"
    )
    second = consume_json(bootstrap, *group)
    assert sorted(m["payload"] for m in second) == sorted(f"second-{i}" for i in range(4))
    assert "kcat-group" in client.groups()


def test_kcat_finds_offsets_by_timestamp(kafka: tuple[str, streamhouse.Client]) -> None:
    bootstrap, client = kafka
    client.produce_batch(
        TOPIC, [b"a", b"b", b"c"], timestamps=[1_000_000, 2_000_000, 3_000_000], partition=0, acks="durable"
    )
    assert _query(bootstrap, f"{TOPIC}:0:2000000") == {0: 1}
    assert _query(bootstrap, f"{TOPIC}:0:2000001") == {0: 2}
    assert _query(bootstrap, f"{TOPIC}:0:-2", f"{TOPIC}:1:-1") == {0: 0, 1: 0}  # earliest, latest
    assert _query(bootstrap, f"{TOPIC}:0:-1") == {0: 3}


def _query(bootstrap: str, *specs: str) -> dict[int, int]:
    done = kcat(bootstrap, "-Q", *(arg for spec in specs for arg in ("-t", spec)))
    return _parse_query(done.stdout.splitlines())


def _parse_query(lines: Sequence[str]) -> dict[int, int]:
    # "kcat [0] offset 1": one line a partition
    out = {}
    for line in lines:
        words = line.split()
        if len(words) == 4 and words[2] == "offset":
            out[int(words[1].strip("[]"))] = int(words[3])
    return out


def test_kafka_clients_are_sent_to_the_advertised_host(tmp_path: Path) -> None:
    """--advertised-address (where gRPC clients are sent) names the host Kafka clients are
    sent to as well, on the Kafka port, unless --kafka-advertised says otherwise."""
    grpc_port, kafka_port = free_port(), free_port()
    with AgentLauncher(tmp_path) as launcher:
        process = launcher.start(
            *("--data-dir", str(tmp_path / "a"), "--advertised-address", f"localhost:{grpc_port}"),
            port=grpc_port,
            kafka_port=kafka_port,
        )
        bootstrap = f"127.0.0.1:{kafka_port}"
        listing = json.loads(kcat(bootstrap, "-L", "-J").stdout)
        assert [b["name"] for b in listing["brokers"]] == [f"localhost:{kafka_port}"]
        # The client follows it: records go to the leader through the advertised name.
        with streamhouse.connect(process.address) as client:
            client.create_topic(TOPIC, 1)
            kcat(bootstrap, "-P", "-t", TOPIC, stdin="via-localhost\n")
            assert client.read(TOPIC).column("value").to_pylist() == [b"via-localhost"]
