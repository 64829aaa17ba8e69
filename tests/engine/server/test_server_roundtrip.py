"""`streamhouse serve` as a real process, end to end over the network, on both storage setups
(SQLite + local objects, PostgreSQL + SeaweedFS S3):

- the SDK round trip: topics, produce (dicts, bytes, null/empty values, keys, headers,
  timestamps; acks leader and durable), a consumer group that reads, commits and reports lag,
  then a graceful restart (SIGTERM) after which every record is read back from segments;
- the any-language path: raw protobuf `records` in, FORMAT_RECORDS and FORMAT_BATCH out;
- operations: gRPC health, HTTP liveness/readiness/metrics and gRPC reflection.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import streamhouse
from streamhouse.client.client import Client
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.storage.records.codec import decode_batch
from tests.agent_process import AgentLauncher, AgentProcess, wait_until

TS0 = 1_700_000_000_000  # producer-given timestamps: far from "now", so stamping would show
# (partition, offset) -> (key, value, timestamp, headers) as the record schema holds them
Expected = dict[tuple[int, int], tuple[bytes | None, bytes | None, int, list[dict[str, Any]] | None]]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    """Agents of one test, killed at its end. Tests list it after pg_url/s3_url so it is torn
    down first: a database dropped under live agents only makes noise in their logs."""
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


@pytest.fixture(params=["sqlite+local", "postgresql+s3"])
def store_flags(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """`serve` flags for one storage setup; the data dir (WAL, agent id) is always local."""
    flags = ["--data-dir", str(tmp_path / "data")]
    if request.param == "postgresql+s3":
        url, endpoint = request.getfixturevalue("s3_url")
        flags += ["--metadata", request.getfixturevalue("pg_url"), "--object-store", url, "--s3-endpoint", endpoint]
    return flags


def records_by_position(client: Client, topic: str) -> Expected:
    """Everything a bounded read returns, keyed by (partition, offset)."""
    rows = client.read(topic).to_pylist()
    out: Expected = {}
    for r in rows:
        assert (r["partition"], r["offset"]) not in out, f"offset read twice: {r}"
        out[(r["partition"], r["offset"])] = (r["key"], r["value"], r["timestamp"], r["headers"])
    return out


def http_get(agent: AgentProcess, path: str) -> tuple[int, bytes]:
    assert agent.http_port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}{path}", timeout=10) as response:
        return response.status, response.read()


def test_sdk_round_trip_and_graceful_restart(store_flags: list[str], agents: AgentLauncher) -> None:
    # A short durable window keeps acks=durable quick; rolls happen only on durable flushes
    # and shutdown (roll age 60 s), so the restart below is what moves acks=leader records
    # into segments.
    flags = [*store_flags, "--durable-flush-ms", "50", "--roll-age-ms", "60000"]
    agent = agents.start(*flags)
    expected: Expected = {}
    with streamhouse.connect(agent.address, retries=False) as client:
        info = client.create_topic("orders", 3)
        assert (info.name, info.partitions) == ("orders", 3)
        assert [t.name for t in client.topics()] == ["orders"]

        # Dicts with keys, headers and timestamps, acks=leader, the SDK choosing partitions.
        partition_of_key: dict[str, int] = {}
        for i in range(30):
            key = f"user-{i % 7}"
            value = {"order": i, "user": key, "items": [i, i + 1], "note": "ü"}
            headers = {"source": "test", "seq": str(i), "trace": None}
            md = client.produce("orders", value, key=key, headers=headers, timestamp=TS0 + i)
            # Keyed records always land in their key's partition (murmur2), in produce order.
            assert partition_of_key.setdefault(key, md.partition) == md.partition
            expected[(md.partition, md.offset)] = (
                key.encode(),
                json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
                TS0 + i,
                [
                    {"key": "source", "value": b"test"},
                    {"key": "seq", "value": str(i).encode()},
                    {"key": "trace", "value": None},
                ],
            )

        # Raw bytes, acks=durable, one batch per partition; null and empty values differ.
        for p in range(3):
            values: list[bytes | None] = [f"blob-{p}-{i}".encode() for i in range(8)] + [None, b""]
            keys = [None if i % 2 else f"k{p}-{i}".encode() for i in range(len(values))]
            results = client.produce_batch(
                "orders",
                values,
                keys=keys,
                timestamps=[TS0 + 1000 + i for i in range(len(values))],
                partition=p,
                acks="durable",
            )
            assert [(r.partition, r.record_count) for r in results] == [(p, len(values))]
            for i, (k, v) in enumerate(zip(keys, values, strict=True)):
                expected[(p, results[0].base_offset + i)] = (k, v, TS0 + 1000 + i, None)

        # acks=durable answered only after the commit: those records are in segments now.
        described = client.describe("orders")
        ends = {p: 1 + max(o for (pp, o) in expected if pp == p) for p in range(3)}
        assert described.end_offsets == ends
        for state in described.partitions:
            assert state.durable_end_offset == ends[state.partition]  # the durable batch came last
            assert state.leader == agent.address and state.segments >= 1

        assert records_by_position(client, "orders") == expected

        # A consumer group reads everything, commits, and then reports exactly the new lag.
        seen: Expected = {}
        with client.consumer("orders", group="billing", start="earliest") as consumer:
            deadline = time.monotonic() + 15
            while len(seen) < len(expected) and time.monotonic() < deadline:
                for r in consumer.records(consumer.poll(timeout=0.5)):
                    headers = [{"key": k, "value": v} for k, v in r.headers] or None
                    seen[(r.partition, r.offset)] = (r.key, r.value, r.timestamp, headers)
            consumer.commit()
            assert consumer.positions() == ends
        assert seen == expected
        group = client.describe_group("billing")
        assert {(o.partition, o.committed_offset, o.lag) for o in group.offsets} == {(p, e, 0) for p, e in ends.items()}
        assert client.groups() == ["billing"]

        # No timestamps given: the agent stamps append time.
        late_values = [b"late-1", b"late-2", b"late-3", b"late-4"]
        before_ms = int(time.time() * 1000)
        [late] = client.produce_batch("orders", late_values, partition=1)
        after_ms = int(time.time() * 1000)
        assert client.describe_group("billing").total_lag == 4

    # Graceful restart: SIGTERM flushes every led partition into segments and releases leases.
    assert agent.stop() == 0
    agent = agents.start(*flags)
    with streamhouse.connect(agent.address, retries=False) as client:
        described = client.describe("orders")
        ends[1] += 4
        for state in described.partitions:
            # Nobody leads (the leases were released) and everything acknowledged is
            # committed, so the reads below are served from segments.
            want = ends[state.partition]
            assert (state.leader, state.durable_end_offset, state.end_offset) == ("", want, want), state
        got = records_by_position(client, "orders")
        stamped = {pos: got.pop(pos) for pos in [(1, late.base_offset + i) for i in range(4)]}
        assert got == expected
        for (_, offset), (key, value, ts, headers) in stamped.items():
            assert (key, value, headers) == (None, late_values[offset - late.base_offset], None)
            assert before_ms <= ts <= after_ms
        # The group resumes at its committed offsets: only the four late records remain.
        with client.consumer("orders", group="billing") as consumer:
            remaining = consumer.poll(timeout=5)
            assert remaining.column("value").to_pylist() == late_values
        assert client.describe_group("billing").total_lag == 0
    assert agent.stop() == 0


def test_raw_protobuf_records(store_flags: list[str], agents: AgentLauncher) -> None:
    """The any-language path: protobuf Records in, FORMAT_RECORDS (and FORMAT_BATCH) out."""
    agent = agents.start(*store_flags, "--durable-flush-ms", "50")
    with grpc.insecure_channel(agent.address) as channel:
        admin, produce, fetch = pbg.AdminStub(channel), pbg.ProduceStub(channel), pbg.FetchStub(channel)
        settings = {"json.ignore-errors": "true"}
        created = admin.CreateTopic(pb.CreateTopicRequest(name="raw", partitions=3, config=settings))
        assert (created.name, created.partitions, dict(created.config)) == ("raw", 3, settings)

        before_ms = int(time.time() * 1000)
        sent = [
            pb.Record(key=b"k0", value=b"v0", timestamp_ms=TS0, headers=[pb.Header(key="h", value=b"x")]),
            pb.Record(value=b"", timestamp_ms=TS0 + 1),  # empty value, null key
            pb.Record(key=b"", timestamp_ms=TS0 + 2, headers=[pb.Header(key="null-header")]),  # null value
            pb.Record(key=b"k3", value=b"v3"),  # no timestamp: the agent stamps append time
        ]
        response = produce.Produce(
            pb.ProduceRequest(topic="raw", partition=1, acks=pb.ACKS_LEADER, records=pb.RecordList(records=sent)),
            timeout=10,
        )
        assert (response.partition, response.base_offset, response.record_count) == (1, 0, 4)
        durable = produce.Produce(
            pb.ProduceRequest(
                topic="raw",
                partition=1,
                acks=pb.ACKS_DURABLE,
                records=pb.RecordList(records=[pb.Record(value=b"durable")]),
                request_id=77,
            ),
            timeout=10,
        )
        assert (durable.base_offset, durable.record_count, durable.request_id) == (4, 1, 77)

        got = fetch.Fetch(
            pb.FetchRequest(topic="raw", partition=1, offset=0, format=pb.FetchRequest.FORMAT_RECORDS), timeout=10
        )
        assert (got.WhichOneof("payload"), got.record_count, got.next_offset, got.end_offset) == ("records", 5, 5, 5)
        records = list(got.records.records)
        assert [r.offset for r in records] == [0, 1, 2, 3, 4]
        for i in range(3):
            want = pb.Record()
            want.CopyFrom(sent[i])
            want.offset = i
            assert records[i] == want  # field presence included: null stays null, b"" stays b""
        assert not records[1].HasField("key") and records[1].HasField("value") and records[1].value == b""
        assert records[2].HasField("key") and not records[2].HasField("value")
        assert not records[2].headers[0].HasField("value")
        assert before_ms <= records[3].timestamp_ms <= int(time.time() * 1000)
        assert records[4].value == b"durable"

        # The SDK's format carries the same rows as an Arrow batch.
        batch = fetch.Fetch(pb.FetchRequest(topic="raw", partition=1, offset=2, max_records=2), timeout=10)
        table = decode_batch(batch.batch)
        assert table.column("offset").to_pylist() == [2, 3]
        assert table.column("value").to_pylist() == [None, b"v3"]
        assert batch.next_offset == 4

        # partition -1: the agent routes by key, one append entry per partition touched.
        keyed = [pb.Record(key=f"key-{i}".encode(), value=str(i).encode(), timestamp_ms=TS0) for i in range(12)]
        routed = produce.Produce(
            pb.ProduceRequest(topic="raw", partition=-1, records=pb.RecordList(records=keyed)), timeout=10
        )
        assert routed.record_count == 12 and sum(a.record_count for a in routed.appends) == 12
        assert [a.partition for a in routed.appends] == sorted({a.partition for a in routed.appends})
        values: list[bytes] = []
        for a in routed.appends:
            # acks=leader: a fetch serves up to the durable end; waiting, it is answered when the
            # durable round it started commits (the high watermark).
            part = fetch.Fetch(
                pb.FetchRequest(
                    topic="raw", partition=a.partition, offset=a.base_offset, format=pb.FetchRequest.FORMAT_RECORDS,
                    max_wait_ms=10_000,
                ),
                timeout=20,
            )  # fmt: skip
            values += [r.value for r in part.records.records]
        assert sorted(values, key=int) == [str(i).encode() for i in range(12)]


def test_health_metrics_and_reflection(store_flags: list[str], agents: AgentLauncher) -> None:
    agent = agents.start(*store_flags, http_port=0)
    with grpc.insecure_channel(agent.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "streamhouse.v1.Produce", "streamhouse.v1.Fetch", "streamhouse.v1.Admin"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            reflection.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol="streamhouse.v1.Produce"),
                    ]
                ),
                timeout=10,
            )
        )
        services = {s.name for s in answers[0].list_services_response.service}
        assert {
            "streamhouse.v1.Produce",
            "streamhouse.v1.Fetch",
            "streamhouse.v1.Admin",
            "streamhouse.v1.ConsumerGroups",
            "streamhouse.v1.Query",
            "grpc.health.v1.Health",
        } <= services
        # Reflection also serves the descriptors, so grpcurl-style tools can build requests.
        assert answers[1].file_descriptor_response.file_descriptor_proto

        pbg.AdminStub(channel).CreateTopic(pb.CreateTopicRequest(name="metered", partitions=1), timeout=10)
        pbg.ProduceStub(channel).Produce(
            pb.ProduceRequest(topic="metered", partition=0, records=pb.RecordList(records=[pb.Record(value=b"x")] * 3)),
            timeout=10,
        )

    assert http_get(agent, "/health/live") == (200, b'{"status":"live"}')
    assert http_get(agent, "/health/ready") == (200, b'{"status":"ready"}')
    status, body = http_get(agent, "/metrics")
    assert status == 200
    lines = body.decode().splitlines()
    assert 'streamhouse_produce_records_total{topic="metered"} 3.0' in lines
    assert "streamhouse_led_partitions 1.0" in lines
    assert agent.stop() == 0


def test_ready_line_reports_real_ports(agents: AgentLauncher, tmp_path: Path) -> None:
    """Port 0 asks for any free port; the ready line (and the lease holder) carry the real one,
    and environment variables configure the agent like flags do."""
    agent = agents.start(env={"STREAMHOUSE_DATA_DIR": str(tmp_path / "env-data")}, http_port=0)
    host, _, port = agent.address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0 and agent.http_port
    wait_until(lambda: (tmp_path / "env-data" / "wal" / "agent-id").exists(), what="agent id file in the env data dir")
    assert agent.stop() == 0
