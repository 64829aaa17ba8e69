"""A transactional batch that reaches the log after its transaction was aborted (issue 18, the
chaos runs' aborted-read and torn-transaction findings).

A transactional batch is registered in the store before it is appended and placed at its
offsets after its acknowledgement (engine/kafka/txn_produce.py). When that placement never
runs (the metadata store restarting at that moment, the agent killed while the batch waits for
its segment commit and its WAL entry then re-appended by the restarted agent), the batch's row
stayed without offsets; an abort then left it covering nothing, and the aborted records were
read as committed, by our readers and by Kafka read_committed consumers alike.

Here: one agent (SQLite, a file object store) whose segment commits fail while a file blocks the
partition's directory. A real confluent-kafka transactional producer's batch is appended but
never acknowledged, the transaction is aborted (the ABORT marker puts the batch into the WAL),
the agent is killed, and the restarted agent re-appends both from its WAL once the store works.
The aborted values must stay invisible to read_committed readers, and the next transaction must
be read whole.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaException, Producer

import streamhouse
from tests.agent_process import AgentLauncher, free_port, wait_until
from tests.engine.kafka.raw_kafka import read_committed_values

TOPIC = "late_txn"


def test_a_batch_landing_after_its_abort_stays_aborted(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    port = free_port()
    flags = ("--data-dir", str(tmp_path / "a"), "--object-store", f"file://{objects}",
             "--kafka-advertised", f"127.0.0.1:{port}")  # fmt: skip
    with AgentLauncher(tmp_path) as launcher:
        agent = launcher.start(*flags, kafka_port=port)
        bootstrap = f"127.0.0.1:{port}"
        with streamhouse.connect(agent.address) as client:
            client.create_topic(TOPIC, 1)
        blocker = objects / "topics" / TOPIC / "00000"  # every segment commit of the partition fails
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_bytes(b"in the way")
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "late", "linger.ms": 0,
                             "request.timeout.ms": 2000, "message.timeout.ms": 4000})  # fmt: skip
        producer.init_transactions(20)
        producer.begin_transaction()
        producer.produce(TOPIC, b"aborted-0", partition=0)
        producer.produce(TOPIC, b"aborted-1", partition=0)
        producer.poll(0)
        # The batch is appended but its segment cannot commit: never acknowledged, the message
        # times out in the client, and the transaction can only abort.
        try:
            producer.commit_transaction(20)
            raise AssertionError("the commit succeeded without a segment commit")
        except KafkaException as exc:
            assert exc.args[0].txn_requires_abort(), exc
        producer.abort_transaction(20)
        agent.kill()
        blocker.unlink()
        agent = launcher.start(*flags, kafka_port=port)
        # The restarted agent re-appends the aborted batch (and its marker) from its WAL.
        with streamhouse.connect(agent.address) as client:
            wait_until(lambda: client.read(TOPIC, isolation="read_uncommitted").num_rows >= 2, timeout_s=30,
                       what="the WAL's records back in the log")  # fmt: skip
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "late", "linger.ms": 0})
        producer.init_transactions(20)
        producer.begin_transaction()
        producer.produce(TOPIC, b"committed-0", partition=0)
        producer.commit_transaction(20)
        assert read_committed_values(bootstrap, TOPIC, 1) == [b"committed-0"]
        with streamhouse.connect(agent.address) as client:
            values = client.read(TOPIC).column("value").to_pylist()  # the SDK reads committed
        assert values == [b"committed-0"]
