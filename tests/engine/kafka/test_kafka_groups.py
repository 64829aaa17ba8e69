"""Consumer groups and admin over the Kafka listener, with confluent-kafka (librdkafka)
against a real `streamhouse serve --kafka-port` subprocess on PostgreSQL + SeaweedFS.

Two consumers of one group split the partitions; when one is killed (SIGKILL, no
LeaveGroup) the other takes its partitions after the session timeout; offsets committed
over Kafka are the ones our SDK shows, and a group made by our SDK lists as an "Empty"
Kafka group. The AdminClient creates, describes, grows and deletes topics, and a Kafka
setting StreamHouse does not enforce is refused rather than stored.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

import streamhouse
from tests.agent_process import AgentProcess, kafka_agent

TOPIC = "grouped"
GROUP = "kafka-group"
SESSION_MS = 6000


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, str]]:
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        yield process, f"127.0.0.1:{port}"


def _wait(check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


CHILD = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": int(sys.argv[4]), "heartbeat.interval.ms": 500})
c.list_topics(sys.argv[3], timeout=20)
c.subscribe([sys.argv[3]])
last = None
while True:
    c.poll(0.2)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print("assigned", *now, flush=True)
        last = now
"""


class Member(threading.Thread):
    """A consumer in this process: consumes, commits each record, records its assignment."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.stop = threading.Event()
        self.assignment: list[int] = []
        self.seen: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.refused_commits = 0

    def run(self) -> None:
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": GROUP, "auto.offset.reset": "earliest",
             "enable.auto.commit": False, "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500}
        )  # fmt: skip
        consumer.list_topics(TOPIC, timeout=20)  # topic metadata before subscribing (as in test_kafka_cluster)
        consumer.subscribe([TOPIC])
        try:
            while not self.stop.is_set():
                msg = consumer.poll(0.2)
                self.assignment = sorted(tp.partition for tp in consumer.assignment())
                if msg is None:
                    continue
                if msg.error() is not None:
                    self.errors.append(str(msg.error()))
                    continue
                self.seen.append((msg.partition(), msg.offset()))
                try:
                    consumer.commit(message=msg, asynchronous=False)
                except KafkaException as exc:
                    # A commit racing the second member's join is refused, as at a Kafka broker;
                    # the record is consumed again by whoever is assigned its partition next.
                    if exc.args[0].code() not in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION):
                        self.errors.append(f"commit: {exc}")  # asserted empty at the end
                        raise
                    self.refused_commits += 1
        finally:
            consumer.close()


def test_a_group_splits_partitions_and_takes_over_from_a_killed_member(agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic(TOPIC, 4)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(40):
        producer.produce(TOPIC, value=b"v%d" % i, partition=i % 4)
    assert producer.flush(20) == 0

    first = Member(bootstrap)
    first.start()
    other = subprocess.Popen(
        [sys.executable, "-c", CHILD, bootstrap, GROUP, TOPIC, str(SESSION_MS)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait(lambda: len(first.seen) == 40 or len(first.assignment) < 4, "the first member to consume")
        lines: list[str] = []
        out = other.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
        reader.start()

        def split() -> bool:
            theirs = [ln.split()[1:] for ln in lines if ln.startswith("assigned")]
            return bool(theirs) and len(theirs[-1]) == 2 and len(first.assignment) == 2

        _wait(split, "two members to split four partitions")
        theirs = {int(p) for p in [ln for ln in lines if ln.startswith("assigned")][-1].split()[1:]}
        assert theirs | set(first.assignment) == {0, 1, 2, 3}
        assert not theirs & set(first.assignment)

        other.send_signal(signal.SIGKILL)  # no LeaveGroup: only the session timeout tells
        other.wait(10)
        killed_at = time.monotonic()
        _wait(lambda: first.assignment == [0, 1, 2, 3], "the survivor to take every partition")
        assert time.monotonic() - killed_at > SESSION_MS / 1000 - 2  # it was the session timeout
        _wait(lambda: len({r for r in first.seen}) == 40, "every record to be consumed")
    finally:
        other.kill()
        first.stop.set()
        first.join(20)
    assert first.errors == []
    # Offsets committed over Kafka are the group's offsets in our SDK (next offset to read).
    with streamhouse.connect(process.address) as client:
        committed = {o.partition: o.committed_offset for o in client.committed(GROUP, TOPIC)}
    assert committed == {0: 10, 1: 10, 2: 10, 3: 10}


def test_admin_client_and_sdk_groups(agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics([NewTopic("adm", 2, 1)])
    created["adm"].result(20)
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic("adm", 2, 1)])["adm"].result(20)
    assert info.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as info:
        admin.create_topics([NewTopic("unenforced", 1, 1, config={"segment.ms": "1000"})])["unenforced"].result(20)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG

    with streamhouse.connect(process.address) as client:
        assert {t.name for t in client.topics()} == {"adm"}  # the refused one was not created
        client.alter_topic("adm", set={"json.ignore-errors": "true"})
        client.commit("sdk-group", "adm", {0: 3})

    configs = admin.describe_configs([ConfigResource("topic", "adm")])
    described = next(iter(configs.values())).result(20)
    assert described["json.ignore-errors"].value == "true"

    # kafka-configs.sh / Admin.incrementalAlterConfigs: SET and DELETE one key each.
    change = ConfigResource("topic", "adm", incremental_configs=[
        ConfigEntry("json.ignore-errors", "false", incremental_operation=AlterConfigOpType.SET)])  # fmt: skip
    next(iter(admin.incremental_alter_configs([change]).values())).result(20)
    with streamhouse.connect(process.address) as client:
        assert client.describe("adm").info.config["json.ignore-errors"] == "false"
    change = ConfigResource("topic", "adm", incremental_configs=[
        ConfigEntry("json.ignore-errors", None, incremental_operation=AlterConfigOpType.DELETE)])  # fmt: skip
    next(iter(admin.incremental_alter_configs([change]).values())).result(20)
    refused = ConfigResource("topic", "adm", incremental_configs=[
        ConfigEntry("segment.ms", "1000", incremental_operation=AlterConfigOpType.SET)])  # fmt: skip
    with pytest.raises(KafkaException) as info:
        next(iter(admin.incremental_alter_configs([refused]).values())).result(20)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG
    with streamhouse.connect(process.address) as client:
        assert client.describe("adm").info.config == {}

    admin.create_partitions([NewPartitions("adm", 5)])["adm"].result(20)
    with streamhouse.connect(process.address) as client:
        assert client.describe("adm").info.partitions == 5

    listed = admin.list_consumer_groups().result(20)
    assert {(g.group_id, g.state.name) for g in listed.valid} == {("sdk-group", "EMPTY")}
    group = admin.describe_consumer_groups(["sdk-group"])["sdk-group"].result(20)
    assert group.state.name == "EMPTY" and group.members == []

    admin.delete_topics(["adm"])["adm"].result(20)
    with streamhouse.connect(process.address) as client:
        assert client.topics() == []
