"""The streaming RPCs over a real agent subprocess: pipelined ProduceStream, long-polling
Fetch and the Subscribe server stream, as any gRPC client (not the SDK) would use them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from streamhouse.devservices.agent import AgentProcess, start_agent
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.storage.records.codec import decode_batch, encode_batch
from streamhouse.storage.records.schema import make_batch


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    root = tmp_path_factory.mktemp("streams")
    with start_agent(["--data-dir", str(root / "data")], log_path=root / "agent.log") as process:
        yield process


@pytest.fixture
def channel(agent: AgentProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(agent.address) as ch:
        yield ch


def _create(channel: grpc.Channel, name: str, partitions: int = 1) -> None:
    pbg.AdminStub(channel).CreateTopic(pb.CreateTopicRequest(name=name, partitions=partitions), timeout=10)


def test_produce_stream_answers_every_request_by_id(channel: grpc.Channel) -> None:
    _create(channel, "piped", 2)
    requests = [
        pb.ProduceRequest(
            topic="piped", partition=i % 2, request_id=100 + i, batch=encode_batch(make_batch([b"r%d" % i] * 3))
        )
        for i in range(20)
    ]
    responses = list(pbg.ProduceStub(channel).ProduceStream(iter(requests), timeout=30))
    assert sorted(r.request_id for r in responses) == [100 + i for i in range(20)]
    by_partition: dict[int, list[int]] = {0: [], 1: []}
    for r in sorted(responses, key=lambda r: r.request_id):
        assert r.record_count == 3
        by_partition[r.partition].append(r.base_offset)
    # Appends to one partition keep the order the requests were sent in.
    assert by_partition == {0: list(range(0, 30, 3)), 1: list(range(0, 30, 3))}


def test_produce_stream_ends_with_the_status_of_a_bad_request(channel: grpc.Channel) -> None:
    _create(channel, "piped-bad")
    good = pb.ProduceRequest(topic="piped-bad", request_id=1, records=pb.RecordList(records=[pb.Record(value=b"v")]))
    bad = pb.ProduceRequest(topic="no-such-topic", request_id=2, records=pb.RecordList(records=[pb.Record()]))
    with pytest.raises(grpc.RpcError) as info:
        list(pbg.ProduceStub(channel).ProduceStream(iter([good, bad]), timeout=30))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-topic" in (info.value.details() or "")


def test_fetch_long_polls_until_records_arrive(channel: grpc.Channel) -> None:
    _create(channel, "waiting")
    fetch = pbg.FetchStub(channel)
    request = pb.FetchRequest(topic="waiting", offset=0, max_wait_ms=5_000, format=pb.FetchRequest.FORMAT_RECORDS)
    timer = threading.Timer(
        0.3,
        lambda: pbg.ProduceStub(channel).Produce(
            pb.ProduceRequest(topic="waiting", records=pb.RecordList(records=[pb.Record(value=b"late")])), timeout=10
        ),
    )
    started = time.monotonic()
    timer.start()
    response = fetch.Fetch(request, timeout=10)
    took = time.monotonic() - started
    timer.join()
    assert [r.value for r in response.records.records] == [b"late"]
    assert 0.25 <= took < 4.5  # woken by the append, not by the 5 s deadline
    empty = fetch.Fetch(pb.FetchRequest(topic="waiting", offset=1, max_wait_ms=200), timeout=10)
    assert (empty.record_count, empty.next_offset, empty.end_offset) == (0, 1, 1)


def test_subscribe_streams_records_as_they_are_acknowledged(channel: grpc.Channel) -> None:
    _create(channel, "live")
    produce = pbg.ProduceStub(channel)
    produce.Produce(pb.ProduceRequest(topic="live", batch=encode_batch(make_batch([b"a", b"b"]))), timeout=10)
    stream = pbg.FetchStub(channel).Subscribe(pb.FetchRequest(topic="live", offset=1, max_wait_ms=200), timeout=30)
    first = next(stream)
    assert decode_batch(first.batch).column("value").to_pylist() == [b"b"]
    produce.Produce(pb.ProduceRequest(topic="live", batch=encode_batch(make_batch([b"c"]))), timeout=10)
    second = next(stream)
    table = decode_batch(second.batch)
    assert (table.column("offset").to_pylist(), table.column("value").to_pylist()) == ([2], [b"c"])
    stream.cancel()
