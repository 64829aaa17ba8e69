"""Bad requests over raw gRPC stubs against a real agent process: each gets the status code the
proto's conventions name (proto/streamhouse.proto), a details message that says what was wrong,
and writes nothing. Plus NOT_LEADER: FAILED_PRECONDITION carrying the leader's address.

Raw stubs, not the SDK: the SDK validates some input itself and retries others, while a client
in another language sends whatever it likes and sees exactly these statuses.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.rpc.status import ERROR_KEY, LEADER_KEY
from streamhouse.storage.checksum import crc32c
from streamhouse.storage.records.codec import HEADER_SIZE, encode_batch
from streamhouse.storage.records.schema import make_batch
from streamhouse.storage.values.schema import Column, ValueSchema
from tests.agent_process import AgentLauncher

TOPIC = "good"
MAX_RECORD_BYTES = 1000
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    """Agents of one test, killed at its end."""
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.produce = pbg.ProduceStub(channel)
        self.fetch = pbg.FetchStub(channel)
        self.admin = pbg.AdminStub(channel)
        self.groups = pbg.ConsumerGroupsStub(channel)
        self.query = pbg.QueryStub(channel)

    def end_offsets(self, topic: str = TOPIC) -> dict[int, int]:
        described = self.admin.DescribeTopic(pb.DescribeTopicRequest(name=topic), timeout=10)
        return {p.partition: p.end_offset for p in described.partition_info}


def rejected(call: Callable[[], Any], code: grpc.StatusCode, *fragments: str) -> grpc.RpcError:
    """Run `call`, expect it to fail with `code` and a details message containing every
    fragment (case-insensitive); returns the error for further checks."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    assert isinstance(err, grpc.Call)
    assert err.code() == code, f"{err.code()} {err.details()!r}, wanted {code}"
    details = (err.details() or "").lower()
    for fragment in fragments:
        assert fragment.lower() in details, f"{fragment!r} not in {err.details()!r}"
    return err  # type: ignore[return-value]


def trailers(err: grpc.RpcError) -> dict[str, str]:
    assert isinstance(err, grpc.Call)
    return {m.key: m.value for m in err.trailing_metadata() or ()}  # type: ignore[attr-defined]


def produce_request(batch: bytes, partition: int = 0, topic: str = TOPIC) -> pb.ProduceRequest:
    return pb.ProduceRequest(topic=topic, partition=partition, acks=pb.ACKS_LEADER, batch=batch)


def records_request(values: list[bytes], partition: int = 0, topic: str = TOPIC, **kw: Any) -> pb.ProduceRequest:
    records = pb.RecordList(records=[pb.Record(value=v) for v in values])
    return pb.ProduceRequest(topic=topic, partition=partition, records=records, **kw)


def test_bad_requests_are_refused_and_write_nothing(tmp_path: Path, agents: AgentLauncher) -> None:
    agent = agents.start("--data-dir", str(tmp_path / "data"), "--max-record-bytes", str(MAX_RECORD_BYTES))
    with grpc.insecure_channel(agent.address) as channel:
        s = Stubs(channel)
        s.admin.CreateTopic(pb.CreateTopicRequest(name=TOPIC, partitions=2), timeout=10)
        s.produce.Produce(records_request([b"a", b"b", b"c"], partition=0), timeout=10)
        s.produce.Produce(records_request([b"d", b"e"], partition=1), timeout=10)
        before = s.end_offsets()
        assert before == {0: 3, 1: 2}
        valid = encode_batch(make_batch([b"ok-1", b"ok-2"], keys=[b"k", None]))

        # -- unknown topic: NOT_FOUND, naming the topic ------------------------------------------
        err = rejected(
            lambda: s.produce.Produce(produce_request(valid, topic="nope"), timeout=10),
            grpc.StatusCode.NOT_FOUND,
            "'nope' does not exist",
        )
        assert trailers(err)[ERROR_KEY] == "TopicNotFoundError"  # the SDK raises the same class
        rejected(
            lambda: s.fetch.Fetch(pb.FetchRequest(topic="nope", partition=0), timeout=10),
            grpc.StatusCode.NOT_FOUND,
            "'nope' does not exist",
        )
        for call in (s.admin.DescribeTopic, s.admin.DeleteTopic):
            rejected(
                lambda call=call: call(pb.DescribeTopicRequest(name="nope"), timeout=10),  # type: ignore[misc]
                grpc.StatusCode.NOT_FOUND,
                "'nope' does not exist",
            )
        rejected(
            lambda: s.groups.DescribeGroup(pb.DescribeGroupRequest(group="nobody"), timeout=10),
            grpc.StatusCode.NOT_FOUND,
            "consumer group 'nobody' does not exist",
        )

        # -- partition out of range: INVALID_ARGUMENT with the valid range -------------------------
        rejected(
            lambda: s.produce.Produce(produce_request(valid, partition=2), timeout=10),
            INVALID,
            "partition 2 out of range",
            "(0..1)",
        )
        rejected(
            lambda: s.produce.Produce(produce_request(valid, partition=-2), timeout=10),
            INVALID,
            "partition must be >= 0",
        )
        rejected(
            lambda: s.fetch.Fetch(pb.FetchRequest(topic=TOPIC, partition=7), timeout=10),
            INVALID,
            "partition 7 out of range",
        )
        rejected(
            lambda: s.groups.CommitOffsets(pb.CommitOffsetsRequest(group="g", topic=TOPIC, offsets={5: 0}), timeout=10),
            INVALID,
            "partition 5 out of range",
        )

        # -- records over --max-record-bytes (key + value): the whole batch is refused --------------
        big = b"x" * (MAX_RECORD_BYTES + 1)
        rejected(
            lambda: s.produce.Produce(records_request([b"fine", big]), timeout=10),
            INVALID,
            "record 1 of the batch is 1001 bytes",
            f"limit of {MAX_RECORD_BYTES}",
        )
        split = encode_batch(make_batch([b"v" * 600], keys=[b"k" * 401]))
        rejected(lambda: s.produce.Produce(produce_request(split), timeout=10), INVALID, "1001 bytes")
        # Exactly at the limit is fine (the size check is not off by one).
        at_limit = encode_batch(make_batch([b"v" * 600], keys=[b"k" * 400]))
        s.produce.Produce(produce_request(at_limit, partition=1), timeout=10)
        before[1] += 1

        # -- malformed batch bytes: INVALID_ARGUMENT naming the damage -------------------------------
        rng_bytes = os.urandom(200)
        rejected(lambda: s.produce.Produce(produce_request(rng_bytes), timeout=10), INVALID, "bad batch magic")
        rejected(lambda: s.produce.Produce(produce_request(b"SHB"), timeout=10), INVALID, "truncated")
        truncated = valid[: len(valid) - 10]
        rejected(
            lambda: s.produce.Produce(produce_request(truncated), timeout=10), INVALID, "length field", "frame holds"
        )
        flipped = bytearray(valid)
        flipped[4] ^= 0xFF  # a byte of the CRC32C field
        rejected(lambda: s.produce.Produce(produce_request(bytes(flipped)), timeout=10), INVALID, "CRC32C mismatch")
        body_flip = bytearray(valid)
        body_flip[-5] ^= 0x01  # a byte of the IPC body: the CRC catches that too
        rejected(lambda: s.produce.Produce(produce_request(bytes(body_flip)), timeout=10), INVALID, "CRC32C mismatch")
        # A well-framed body that is not Arrow IPC at all.
        junk = os.urandom(64)
        framed_junk = struct.pack("<4sII", b"SHB1", crc32c(junk), len(junk)) + junk
        assert len(framed_junk) == HEADER_SIZE + 64
        rejected(lambda: s.produce.Produce(produce_request(framed_junk), timeout=10), INVALID, "undecodable Arrow IPC")
        rejected(
            lambda: s.produce.Produce(pb.ProduceRequest(topic=TOPIC, partition=0), timeout=10),
            INVALID,
            "carries no records",
        )
        rejected(
            lambda: s.produce.Produce(records_request([b"x"], acks=7), timeout=10),  # type: ignore[arg-type]
            INVALID,
            "unknown acks value 7",
        )

        # -- topic names and counts: INVALID_ARGUMENT; a taken name: ALREADY_EXISTS ------------------
        for name in ("", "a/b", "x" * 250, "..", "spaces are bad"):
            rejected(
                lambda name=name: s.admin.CreateTopic(  # type: ignore[misc]
                    pb.CreateTopicRequest(name=name, partitions=1), timeout=10
                ),
                INVALID,
                "invalid topic name",
            )
        rejected(
            lambda: s.admin.CreateTopic(pb.CreateTopicRequest(name="zero", partitions=0), timeout=10),
            INVALID,
            "partitions must be in 1..",
        )
        err = rejected(
            lambda: s.admin.CreateTopic(pb.CreateTopicRequest(name=TOPIC, partitions=5), timeout=10),
            grpc.StatusCode.ALREADY_EXISTS,
            f"topic '{TOPIC}' already exists",
        )
        assert trailers(err)[ERROR_KEY] == "TopicExistsError"

        # -- reads and commits outside the log ---------------------------------------------------
        rejected(
            lambda: s.fetch.Fetch(pb.FetchRequest(topic=TOPIC, partition=0, offset=99), timeout=10),
            INVALID,
            "offset 99 is past the end offset 3",
        )
        rejected(
            lambda: s.fetch.Fetch(pb.FetchRequest(topic=TOPIC, partition=0, offset=-1), timeout=10),
            INVALID,
            "offset must be >= 0",
        )
        rejected(
            lambda: s.groups.CommitOffsets(
                pb.CommitOffsetsRequest(group="g", topic=TOPIC, offsets={0: -5}), timeout=10
            ),
            INVALID,
            "must be >= 0",
        )
        rejected(
            lambda: list(s.query.ExecuteSql(pb.ExecuteSqlRequest(sql="SELEC nonsense FROM"), timeout=30)),
            INVALID,
            "SELEC",
        )
        rejected(
            lambda: list(s.query.ExecuteSql(pb.ExecuteSqlRequest(sql="SELECT * FROM no_such_topic"), timeout=30)),
            INVALID,
            "no_such_topic",
        )

        # Nothing above wrote a record, created a topic or committed an offset.
        assert s.end_offsets() == before
        topics = s.admin.ListTopics(pb.ListTopicsRequest(), timeout=10).topics
        assert [t.name for t in topics] == [TOPIC]
        assert list(s.groups.ListGroups(pb.ListGroupsRequest(), timeout=10).groups) == []
        # And the agent is still perfectly able to take a good request.
        ok = s.produce.Produce(produce_request(valid, partition=0), timeout=10)
        assert (ok.base_offset, ok.record_count) == (before[0], 2)
    assert agent.stop() == 0


def test_not_leader_names_the_leader(tmp_path: Path, agents: AgentLauncher) -> None:
    # Two agents on one SQLite metadata file and one local object store (two processes).
    shared = ["--metadata", f"sqlite:///{tmp_path / 'shared' / 'meta.db'}"]
    shared += ["--object-store", f"file://{tmp_path / 'shared' / 'objects'}"]
    a = agents.start("--data-dir", str(tmp_path / "a"), *shared, name="a")
    b = agents.start("--data-dir", str(tmp_path / "b"), *shared, name="b")
    with grpc.insecure_channel(a.address) as ca, grpc.insecure_channel(b.address) as cb:
        sa, sb = Stubs(ca), Stubs(cb)
        sa.admin.CreateTopic(pb.CreateTopicRequest(name=TOPIC, partitions=2), timeout=10)
        sa.produce.Produce(records_request([b"led-by-a"], partition=0), timeout=10)
        assert sa.end_offsets()[0] == 1

        err = rejected(
            lambda: sb.produce.Produce(records_request([b"to-b"], partition=0), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            "not the leader",
            a.address,
        )
        meta = trailers(err)
        assert meta[LEADER_KEY] == a.address
        assert meta[ERROR_KEY] == "NotLeaderError"
        described = sb.admin.DescribeTopic(pb.DescribeTopicRequest(name=TOPIC), timeout=10)
        assert [p.leader for p in described.partition_info] == [a.address, ""]
        # B leads whatever nobody else does, and A then redirects to B.
        sb.produce.Produce(records_request([b"led-by-b"], partition=1), timeout=10)
        err = rejected(
            lambda: sa.produce.Produce(records_request([b"to-a"], partition=1), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            b.address,
        )
        assert trailers(err)[LEADER_KEY] == b.address
        # Only the two accepted records, each in the view of its partition's leader (a
        # non-leader only knows the committed end offset, and nothing is committed yet).
        assert (sa.end_offsets()[0], sb.end_offsets()[1]) == (1, 1)
    assert a.stop() == 0 and b.stop() == 0


def test_a_value_that_does_not_fit_the_declared_columns_is_invalid_argument(
    tmp_path: Path, agents: AgentLauncher
) -> None:
    agent = agents.start("--data-dir", str(tmp_path / "data"))
    schema = ValueSchema((Column("id", "BIGINT"), Column("amt", "DECIMAL(10, 2)")))
    with grpc.insecure_channel(agent.address) as channel:
        s = Stubs(channel)
        s.admin.CreateTopic(
            pb.CreateTopicRequest(name="money", partitions=1, value_schema=schema.to_json()), timeout=10
        )
        err = rejected(
            lambda: s.produce.Produce(
                records_request([b'{"id": 1, "amt": 1.5}', b'{"id": 2, "amt": 12.345}'], topic="money"), timeout=10
            ),
            INVALID,
            "record 1 of the batch, column 'amt'",
            "scale",
        )
        assert trailers(err)[ERROR_KEY] == "InvalidValueError"  # the SDK raises the same class
        rejected(
            lambda: s.produce.Produce(records_request([b"not json"], topic="money"), timeout=10),
            INVALID,
            "record 0 of the batch, the value: not JSON",
        )
        assert s.end_offsets("money") == {0: 0}  # nothing stored, no offset taken
