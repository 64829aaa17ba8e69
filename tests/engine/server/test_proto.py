"""The gRPC API (proto/streamhouse.proto): generated code is fresh, messages keep null ≠ empty,
and every service has the methods and streaming shapes the agent and SDK rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool

from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        "generated gRPC code is stale or cannot be checked: run `python tools/gen_proto.py`\n"
        + result.stdout
        + result.stderr
    )


def test_grpc_module_imports_the_package_qualified_messages() -> None:
    source = (ROOT / "proto" / "streamhouse_pb2_grpc.py").read_text()
    assert "from streamhouse.proto import streamhouse_pb2" in source
    assert "\nimport streamhouse_pb2" not in source
    assert pb_grpc.streamhouse_dot_proto_dot_streamhouse__pb2 is pb


def test_package_and_file() -> None:
    assert pb.DESCRIPTOR.package == "streamhouse.v1"
    assert pb.DESCRIPTOR.name == "streamhouse/proto/streamhouse.proto"
    assert descriptor_pool.Default().FindMessageTypeByName("streamhouse.v1.Record") is pb.Record.DESCRIPTOR


def test_record_null_and_empty_are_distinct() -> None:
    null = pb.Record(timestamp_ms=5)
    empty = pb.Record(key=b"", value=b"", timestamp_ms=5)
    full = pb.Record(
        key=b"k",
        value=b"v",
        timestamp_ms=7,
        offset=42,
        headers=[pb.Header(key="a", value=b""), pb.Header(key="b"), pb.Header(key="c", value=b"x")],
    )
    for message in (null, empty, full):
        decoded = pb.Record.FromString(message.SerializeToString())
        assert decoded == message
    null2 = pb.Record.FromString(null.SerializeToString())
    empty2 = pb.Record.FromString(empty.SerializeToString())
    assert not null2.HasField("key") and not null2.HasField("value")
    assert empty2.HasField("key") and empty2.HasField("value")
    assert empty2.key == b"" and empty2.value == b""
    assert null.SerializeToString() != empty.SerializeToString()
    full2 = pb.Record.FromString(full.SerializeToString())
    assert (full2.key, full2.value, full2.timestamp_ms, full2.offset) == (b"k", b"v", 7, 42)
    assert [(h.key, h.value if h.HasField("value") else None) for h in full2.headers] == [
        ("a", b""),
        ("b", None),
        ("c", b"x"),
    ]


def test_produce_request_payload_oneof_round_trips() -> None:
    records = pb.ProduceRequest(
        topic="t",
        partition=-1,
        acks=pb.ACKS_DURABLE,
        records=pb.RecordList(records=[pb.Record(value=b"v")]),
        request_id=2**64 - 1,
    )
    batch = pb.ProduceRequest(topic="t", partition=3, acks=pb.ACKS_NONE, batch=b"\x00ipc", request_id=1)
    for message, which in ((records, "records"), (batch, "batch")):
        decoded = pb.ProduceRequest.FromString(message.SerializeToString())
        assert decoded == message
        assert decoded.WhichOneof("payload") == which
    assert pb.ProduceRequest.FromString(records.SerializeToString()).partition == -1
    assert pb.ProduceRequest().acks == pb.ACKS_LEADER  # the default
    assert pb.ProduceRequest().WhichOneof("payload") is None
    # setting one member clears the other
    both = pb.ProduceRequest(batch=b"x")
    both.records.CopyFrom(pb.RecordList())
    assert both.WhichOneof("payload") == "records" and both.batch == b""


def test_fetch_and_admin_messages_round_trip() -> None:
    request = pb.FetchRequest(
        topic="t",
        partition=1,
        offset=10,
        max_records=100,
        max_bytes=1 << 20,
        max_wait_ms=500,
        min_bytes=1,
        format=pb.FetchRequest.FORMAT_RECORDS,
    )
    assert pb.FetchRequest.FromString(request.SerializeToString()) == request
    assert pb.FetchRequest().format == pb.FetchRequest.FORMAT_BATCH
    response = pb.FetchResponse(topic="t", partition=1, batch=b"ipc", next_offset=11, end_offset=20, record_count=1)
    decoded = pb.FetchResponse.FromString(response.SerializeToString())
    assert decoded == response and decoded.WhichOneof("payload") == "batch"

    topic = pb.TopicDescription(
        name="events",
        topic_id=7,
        partitions=2,
        config={"retention.ms": "86400000"},
        value_schema="",
        partition_info=[
            pb.PartitionDescription(
                partition=0, durable_end_offset=5, end_offset=9, leader="a:1", leader_epoch=3, segments=1
            ),
            pb.PartitionDescription(partition=1),
        ],
    )
    decoded_topic = pb.TopicDescription.FromString(topic.SerializeToString())
    assert decoded_topic == topic
    assert dict(decoded_topic.config) == {"retention.ms": "86400000"}
    assert decoded_topic.partition_info[1].leader == ""

    commit = pb.CommitOffsetsRequest(group="g", topic="t", offsets={0: 5, 3: 2**40})
    assert dict(pb.CommitOffsetsRequest.FromString(commit.SerializeToString()).offsets) == {0: 5, 3: 2**40}
    group = pb.DescribeGroupResponse(
        group="g", offsets=[pb.PartitionOffset(topic="t", partition=0, committed_offset=5, end_offset=9, lag=4)]
    )
    assert pb.DescribeGroupResponse.FromString(group.SerializeToString()) == group


def test_acks_enum_values() -> None:
    assert (pb.ACKS_LEADER, pb.ACKS_DURABLE, pb.ACKS_NONE) == (0, 1, 2)
    assert (pb.FetchRequest.FORMAT_BATCH, pb.FetchRequest.FORMAT_RECORDS) == (0, 1)


# service -> {method: (input, output, client_streaming, server_streaming)}
SERVICES: dict[str, dict[str, tuple[str, str, bool, bool]]] = {
    "Produce": {
        "Produce": ("ProduceRequest", "ProduceResponse", False, False),
        "ProduceStream": ("ProduceRequest", "ProduceResponse", True, True),
    },
    "Fetch": {
        "Fetch": ("FetchRequest", "FetchResponse", False, False),
        "Subscribe": ("FetchRequest", "FetchResponse", False, True),
    },
    "Admin": {
        "CreateTopic": ("CreateTopicRequest", "TopicDescription", False, False),
        "ListTopics": ("ListTopicsRequest", "ListTopicsResponse", False, False),
        "DescribeTopic": ("DescribeTopicRequest", "TopicDescription", False, False),
        "DeleteTopic": ("DeleteTopicRequest", "DeleteTopicResponse", False, False),
        "AlterTopic": ("AlterTopicRequest", "TopicDescription", False, False),
    },
    "ConsumerGroups": {
        "CommitOffsets": ("CommitOffsetsRequest", "CommitOffsetsResponse", False, False),
        "FetchOffsets": ("FetchOffsetsRequest", "FetchOffsetsResponse", False, False),
        "ListGroups": ("ListGroupsRequest", "ListGroupsResponse", False, False),
        "DescribeGroup": ("DescribeGroupRequest", "DescribeGroupResponse", False, False),
    },
    "Query": {
        "ExecuteSql": ("ExecuteSqlRequest", "ArrowChunk", False, True),
    },
}


def test_services_have_the_right_methods_and_streaming_flags() -> None:
    assert set(pb.DESCRIPTOR.services_by_name) == set(SERVICES)
    for service_name, methods in SERVICES.items():
        service = pb.DESCRIPTOR.services_by_name[service_name]
        assert service.full_name == f"streamhouse.v1.{service_name}"
        assert set(service.methods_by_name) == set(methods), service_name
        for method_name, (request, response, client_streaming, server_streaming) in methods.items():
            method = service.methods_by_name[method_name]
            assert method.input_type.full_name == f"streamhouse.v1.{request}", method.full_name
            assert method.output_type.full_name == f"streamhouse.v1.{response}", method.full_name
            assert method.client_streaming is client_streaming, method.full_name
            assert method.server_streaming is server_streaming, method.full_name


@pytest.mark.parametrize("service_name", sorted(SERVICES))
def test_grpc_module_has_stub_servicer_and_registration(service_name: str) -> None:
    stub = getattr(pb_grpc, f"{service_name}Stub")
    servicer = getattr(pb_grpc, f"{service_name}Servicer")
    register = getattr(pb_grpc, f"add_{service_name}Servicer_to_server")
    assert callable(register)
    with grpc.insecure_channel("localhost:1") as channel:  # never connected: stubs are lazy
        client = stub(channel)
        for method_name in SERVICES[service_name]:
            assert callable(getattr(client, method_name))
            assert callable(getattr(servicer, method_name))


def test_optional_fields_are_exactly_the_nullable_ones() -> None:
    """proto3 `optional` only where null must differ from empty (record key/value, header value)."""
    optional = {
        field.full_name
        for message in pb.DESCRIPTOR.message_types_by_name.values()
        for field in message.fields
        if field.has_presence and field.containing_oneof is not None and field.containing_oneof.name.startswith("_")
    }
    assert optional == {"streamhouse.v1.Record.key", "streamhouse.v1.Record.value", "streamhouse.v1.Header.value"}
