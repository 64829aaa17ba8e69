"""The front-end contract (engine/api/contract.py) holds: every protocol adapter reaches the
agent through FrontEnd and nothing else.

Two checks, each able to fail:
- statically, the adapters' source: every attribute they take off their front end is a
  contract operation, they do not import the agent service (or jobs), and Kafka's server
  takes nothing but its named extras (metadata, config, append_control) off its node;
- at run time, a real AgentService on PostgreSQL + SeaweedFS behind a recording proxy that
  forwards contract operations only: the embedded SDK, the gRPC servicers (a real gRPC server,
  the remote SDK) and the Kafka listener (librdkafka) each do their everyday work through it.
  An adapter asking the proxy for anything else (`.manager`, `.metadata`, ...) is recorded as
  a violation and refused. The proxy forwards to the real service: no stand-in for our
  storage or metadata.
"""

from __future__ import annotations

import ast
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from grpc import aio

import streamhouse
from streamhouse.api.contract import ERRORS, FrontEnd, error_mapping
from streamhouse.client.client import Client
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.devservices.ports import free_port
from streamhouse.kafka.server import KafkaServer
from streamhouse.server.grpc.services import add_services
from streamhouse.storage import errors as e

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = frozenset(name for name, value in vars(FrontEnd).items() if not name.startswith("_") and callable(value))
# Kafka's own state outside the contract (engine/kafka/server.py KafkaNode): the store holding
# its broker and group-coordinator leases, the agent config they are renewed with, and the
# append of transaction markers (engine/kafka/txn_markers.py).
KAFKA_EXTRAS = frozenset({"metadata", "config", "append_control"})
ADAPTERS = [
    "engine/server/grpc/services.py",
    "engine/kafka/handlers.py",
    "engine/kafka/handlers_admin.py",
    "engine/kafka/handlers_groups.py",
    "engine/kafka/handlers_produce.py",
    "engine/kafka/timestamps.py",
    "engine/kafka/server.py",
    "engine/client/embedded.py",
]
# Adapters never import the agent's implementation; the embedded transport builds the node,
# so it may import the composition (engine/node) but still calls the agent only through `front`.
FORBIDDEN_IMPORTS = ("streamhouse.agent.service", "streamhouse.agent.partitions", "streamhouse.jobs")
COMPOSERS = {"engine/client/embedded.py"}


# -- static -------------------------------------------------------------------------------------
def _path(node: ast.expr) -> str | None:
    """`self.front` for Attribute(Name(self), front); None for anything not a dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _path(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def reach_ins(source: str, *, composer: bool = False) -> list[str]:
    """What in `source` goes past the front-end contract, one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                bad = name.startswith(FORBIDDEN_IMPORTS) or (not composer and name.startswith("streamhouse.node"))
                if bad:
                    found.append(f"line {node.lineno}: imports {name}")
        if not isinstance(node, ast.Attribute):
            continue
        base = _path(node.value)
        if base in ("self.front", "front") and node.attr not in CONTRACT:
            found.append(f"line {node.lineno}: {base}.{node.attr} is not a contract operation")
        elif base == "self._node" and node.attr not in KAFKA_EXTRAS:
            found.append(f"line {node.lineno}: self._node.{node.attr} is neither the contract nor Kafka's extras")
        elif base in ("self.service", "service") and not composer:
            found.append(f"line {node.lineno}: {base}.{node.attr}: adapters hold the contract, not the service")
        elif (
            base is not None
            and base.startswith("self.")
            and base != "self.front"
            and node.attr in CONTRACT
            and composer
        ):
            # The composer holds the node too; an operation on it would bypass the contract's type.
            found.append(f"line {node.lineno}: {base}.{node.attr} bypasses self.front")
    return found


@pytest.mark.parametrize("module", ADAPTERS)
def test_adapters_only_touch_the_contract(module: str) -> None:
    source = (ROOT / module).read_text()
    assert reach_ins(source, composer=module in COMPOSERS) == []


def test_the_static_check_catches_reach_ins() -> None:
    """The checker itself fails on each kind of reach-in it is there to catch."""
    samples = {
        "self.front.manager.end_offset(t, p)": "self.front.manager",
        "front.metadata.list_segments(t, p)": "front.metadata",
        "self._node.manager": "self._node.manager",
        "self.service.topic(name)": "self.service.topic",
        "from streamhouse.agent.service import AgentService": "imports streamhouse.agent.service",
        "from streamhouse.jobs.manager import JobManager": "imports streamhouse.jobs.manager",
    }
    for code, named in samples.items():
        problems = reach_ins(code)
        assert len(problems) == 1 and named in problems[0], (code, problems)
    assert reach_ins("self.node.service.produce(t, -1, b)", composer=True)
    assert reach_ins("self.front.produce(t, -1, b)\nself.front.ready()") == []


def test_every_contract_operation_is_async_and_documented_in_the_error_table() -> None:
    """The table decides for every error class, most specific first, and ends with INTERNAL."""
    assert {"produce", "fetch", "end_offset", "offset_for_time", "commit_offsets", "sql", "ready"} <= CONTRACT
    for name in CONTRACT:
        assert asyncio.iscoroutinefunction(getattr(FrontEnd, name)), name
    assert ERRORS[-1].error is e.StreamHouseError and ERRORS[-1].grpc == "INTERNAL"
    for i, row in enumerate(ERRORS):
        # A row below a superclass's row would never be reached.
        assert not any(issubclass(row.error, above.error) for above in ERRORS[:i]), row.error
    assert error_mapping(e.TopicNotFoundError("t")).http == 404
    assert error_mapping(e.PartitionNotFoundError("t", 3, 1)).grpc == "INVALID_ARGUMENT"
    assert error_mapping(e.BackpressureError("full")).kafka == 7
    assert error_mapping(ValueError("not ours")).kafka == -1


# -- at run time --------------------------------------------------------------------------------
class RecordingFrontEnd:
    """Forwards the contract's operations (and `extras`) to a real agent service, counting
    them; anything else an adapter asks for is recorded as a violation and refused."""

    def __init__(self, target: Any, extras: frozenset[str] = frozenset()) -> None:
        self._target = target
        self._allowed = CONTRACT | extras
        self.calls: Counter[str] = Counter()
        self.violations: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            self.violations.append(name)
            raise AttributeError(f"{name!r} is not part of the front-end contract")
        self.calls[name] += 1
        return getattr(self._target, name)


@pytest.fixture
def engine(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[Client, EmbeddedTransport, int]]:
    """The embedded engine on PostgreSQL + SeaweedFS, its gRPC port chosen so the leader
    address it advertises is the gRPC server these tests start on its loop."""
    url, endpoint = s3_url
    port = free_port()
    client = streamhouse.open(
        str(tmp_path / "data"), metadata_url=pg_url, object_store_url=url, s3_endpoint=endpoint, grpc_port=port
    )
    try:
        transport = client.transport
        assert isinstance(transport, EmbeddedTransport)
        yield client, transport, port
    finally:
        client.close()


def _exercise_sdk(client: Client, topic: str) -> None:
    """The SDK's everyday surface: topics, produce, read, groups, SQL."""
    client.create_topic(topic, 2)
    assert topic in [t.name for t in client.topics()]
    client.produce_batch(topic, [f"v{i}" for i in range(20)], keys=[f"k{i}" for i in range(20)])
    assert client.read(topic).num_rows == 20
    assert sum(client.describe(topic).end_offsets.values()) == 20
    client.commit("g", topic, {0: 1})
    assert next(o.committed_offset for o in client.committed("g", topic)) == 1
    assert "g" in client.groups()
    assert client.describe_group("g").group == "g"
    client.alter_topic(topic, set={"message.timestamp.type": "LogAppendTime"})
    assert client.sql(f'SELECT count(*) AS n FROM "{topic}"').column("n").to_pylist() == [20]
    client.delete_topic(topic)


def test_the_embedded_sdk_goes_through_the_contract(engine: tuple[Client, EmbeddedTransport, int]) -> None:
    client, transport, _ = engine
    recording = RecordingFrontEnd(transport.front)
    transport.front = recording  # type: ignore[assignment]
    _exercise_sdk(client, f"emb-{uuid.uuid4().hex[:8]}")
    assert recording.violations == []
    used = set(recording.calls)
    assert {"create_topic", "produce", "fetch", "commit_offsets", "fetch_offsets", "sql", "delete_topic"} <= used
    with pytest.raises(AttributeError):  # the proxy does refuse what the contract does not hold
        recording.manager  # noqa: B018
    assert recording.violations == ["manager"]


def test_the_grpc_servicers_go_through_the_contract(engine: tuple[Client, EmbeddedTransport, int]) -> None:
    _, transport, port = engine
    recording = RecordingFrontEnd(transport.front)

    async def serve() -> aio.Server:
        server = aio.server()
        add_services(server, recording)  # type: ignore[arg-type]
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return server

    server = transport._run(serve())
    try:
        with streamhouse.connect(f"127.0.0.1:{port}") as remote:
            _exercise_sdk(remote, f"grpc-{uuid.uuid4().hex[:8]}")
    finally:
        transport._run(server.stop(None))
    assert recording.violations == []
    used = set(recording.calls)
    assert {"create_topic", "describe_topic", "produce", "fetch", "commit_offsets", "sql", "alter_topic"} <= used


def test_the_kafka_listener_goes_through_the_contract(engine: tuple[Client, EmbeddedTransport, int]) -> None:
    client, transport, _ = engine
    recording = RecordingFrontEnd(transport.front, KAFKA_EXTRAS)
    server = KafkaServer(recording, host="127.0.0.1", port=0)  # type: ignore[arg-type]
    transport._run(server.start())
    bootstrap = f"127.0.0.1:{server.port}"
    topic = f"kafka-{uuid.uuid4().hex[:8]}"
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 2)])[topic].result(20)
        described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
        assert "message.timestamp.type" in next(iter(described.values())).result(20)

        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(30):
            producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, timestamp=1_700_000_000_000 + i)
        assert producer.flush(30) == 0

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "contract", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False})  # fmt: skip
        consumer.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 40
        while got < 30 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got += 1
        assert got == 30
        consumer.commit(asynchronous=False)
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert low == 0 and high > 0
        found = consumer.offsets_for_times([TopicPartition(topic, 0, 1_700_000_000_000)], timeout=10)
        assert found[0].offset == 0
        assert sum(o.committed_offset for o in client.committed("contract", topic)) == 30
        consumer.close()
    finally:
        transport._run(server.close())
    assert recording.violations == []
    used = set(recording.calls)
    assert {"create_topic", "topic", "partition_leaders", "produce", "fetch", "commit_offsets",
            "committed_offsets", "end_offset", "earliest_offset", "offset_for_time"} <= used  # fmt: skip
