"""The object store goes away under a running agent (its own SeaweedFS, stopped mid-test):
readiness turns 503, produce answers RESOURCE_EXHAUSTED once the partition's buffer is full,
and every acknowledged record is still there after S3 returns and the agent shuts down."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from streamhouse.devservices.agent import start_agent
from streamhouse.devservices.seaweedfs import credentials_env, s3_client, start_seaweedfs
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.storage.records.codec import encode_batch
from streamhouse.storage.records.schema import make_batch


def _ready(http_port: int) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health/ready", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_s3_down_means_not_ready_then_backpressure_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    (tmp_path / "s3").mkdir()
    weed = start_seaweedfs(tmp_path / "s3")
    try:
        admin = s3_client(weed.server)
        admin.create_bucket(Bucket="backpressure")
        admin.close()
        env = {
            **credentials_env(weed.server),
            # A small buffer and small rolls, so a dead store fills it in a few requests.
            "STREAMHOUSE_MAX_BUFFER_BYTES": "200000",
            "STREAMHOUSE_ROLL_BYTES": "50000",
        }
        flags = ["--data-dir", str(tmp_path / "agent"), "--object-store", "s3://backpressure/agent"]
        flags += ["--s3-endpoint", weed.server.endpoint]
        agent = start_agent(flags, env=env, log_path=tmp_path / "agent.log")
        try:
            assert agent.http_port is not None
            assert _ready(agent.http_port)[0] == 200
            with grpc.insecure_channel(agent.address) as channel:
                pbg.AdminStub(channel).CreateTopic(pb.CreateTopicRequest(name="t", partitions=1), timeout=10)
                produce = pbg.ProduceStub(channel)
                weed.stop()
                status, body = _ready(agent.http_port)
                assert status == 503 and "object store" in body["reason"]
                acknowledged: list[bytes] = []
                code = None
                for i in range(200):
                    value = b"%05d" % i + b"x" * 9_995
                    request = pb.ProduceRequest(topic="t", batch=encode_batch(make_batch([value])))
                    try:
                        produce.Produce(request, timeout=10)
                    except grpc.RpcError as err:
                        code, details = err.code(), err.details() or ""
                        break
                    acknowledged.append(value)
                    time.sleep(0.01)  # let the flush loop try (and fail) to roll
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, "the buffer bound never pushed back"
                assert "buffered" in details
                assert 10 <= len(acknowledged) < 200
        finally:
            agent.stop()  # the final flush fails too: the records stay in the WAL
        # S3 is back (a new server on new ports, so a new agent on the same WAL directory).
        weed = start_seaweedfs(tmp_path / "s3")
        admin = s3_client(weed.server)
        admin.create_bucket(Bucket="backpressure")
        admin.close()
        agent = start_agent([*flags[:-1], weed.server.endpoint], env=credentials_env(weed.server))
        try:
            with grpc.insecure_channel(agent.address) as channel:
                fetched: list[bytes] = []
                offset = 0
                while offset < len(acknowledged):
                    # The recovered records are served once committed: the waiting fetch starts that round.
                    request = pb.FetchRequest(
                        topic="t", offset=offset, format=pb.FetchRequest.FORMAT_RECORDS, max_wait_ms=10_000
                    )
                    response = pbg.FetchStub(channel).Fetch(request, timeout=20)
                    fetched += [r.value for r in response.records.records]
                    offset = response.next_offset
                    if response.record_count == 0:
                        break
            assert fetched == acknowledged
        finally:
            agent.stop()
    finally:
        weed.stop()


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_bad_settings_fail_at_startup(tmp_path: Path, limit: str) -> None:
    """A config error is reported once, at start, not as a mystery later."""
    from streamhouse.storage.errors import StreamHouseError

    with pytest.raises(StreamHouseError):
        start_agent(["--data-dir", str(tmp_path), "--lease-ttl-ms", limit], timeout_s=30)
