"""Kafka transaction markers (issue 18): a transaction's end writes a COMMIT/ABORT control batch
at its own offset in each of its partitions, as a Kafka broker does, and read_committed clients
drop aborted records themselves from Fetch's aborted_transactions list.

On the embedded engine's Kafka listener (one process, SQLite, local objects) with real
confluent-kafka producers and consumers: markers occupy offsets (both isolation levels see the
same gaps), the raw Fetch answer has control batches and the aborted list (so the filtering is the
client's), the markers survive a restart (they are in the segments then), and neither SQL nor the
SDK ever shows a marker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition

import streamhouse
from streamhouse.client.acked_read import read_acknowledged
from streamhouse.kafka.handlers import Context
from streamhouse.kafka.record.batch import CONTROL, TRANSACTIONAL, iter_batches

# Partition 0 of "tm" after the story: offsets of data records (value) and of markers.
DATA = {0: b"a0", 1: b"a1", 2: b"a2", 4: b"b0", 5: b"b1", 7: b"c0", 9: b"d0"}
COMMITTED = {o: v for o, v in DATA.items() if not v.startswith(b"b")}
MARKERS = {3: "commit", 6: "abort", 8: "commit"}

_DAFT_OFFSETS = """
import sys
import streamhouse.cli.main
sys.exit(streamhouse.cli.main.main(["sql", "--data-dir", sys.argv[1], "--engine", "daft", "--format", "csv",
    "SELECT _offset FROM tm WHERE _partition = 0"]))
"""


def _consume(bootstrap: str, isolation: str, expect: int) -> dict[int, bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{time.monotonic_ns()}",
                         "isolation.level": isolation, "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition("tm", 0, 0)])
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2 if len(got) < expect else 0.5)
            if message is None and len(got) >= expect:
                break  # nothing more after what was expected: an extra record would have come by now
            if message is not None and message.error() is None:
                got[message.offset()] = message.value()
    finally:
        consumer.close()
    return got


def _raw_fetch(sh: Any, isolation: int) -> tuple[list[Any], list[dict[str, int]] | None, int]:
    """The listener's own Fetch answer for tm/0 from offset 0: its batches, aborted list, LSO."""
    server = sh.transport.kafka_servers[0]
    body = {"max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": isolation,
            "topics": [{"topic": "tm", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                        "partition_max_bytes": 1 << 20}]}]}  # fmt: skip
    deadline = time.monotonic() + 20
    while True:  # reads stop at the durable end: asked again until the last record is there
        answer = sh.transport._run(server.handlers[1](body, 11, Context("test", "127.0.0.1")))
        part = answer["responses"][0]["partitions"][0]
        batches = list(iter_batches(part["records"]))
        if (batches and batches[-1].base_offset == 9) or time.monotonic() > deadline:
            return batches, part["aborted_transactions"], part["last_stable_offset"]
        time.sleep(0.1)


def _check_fetch(sh: Any) -> None:
    batches, aborted, lso = _raw_fetch(sh, 1)
    controls = {b.base_offset: b for b in batches if b.attributes & CONTROL}
    assert sorted(controls) == sorted(MARKERS)
    pid = controls[3].producer_id
    for offset, kind in MARKERS.items():
        batch = controls[offset]
        assert batch.attributes & TRANSACTIONAL and batch.producer_id == pid and batch.records.num_rows == 1
        key = batch.records.column("key")[0].as_py()
        assert key == (b"\x00\x00\x00\x01" if kind == "commit" else b"\x00\x00\x00\x00")
        assert batch.records.column("value")[0].as_py() == b"\x00\x00\x00\x00\x00\x00"  # version, coordinator epoch
    # The aborted records are sent, marked as the producer's transactional batch, with the list.
    assert aborted == [{"producer_id": pid, "first_offset": 4}]
    sent: dict[int, bytes] = {}
    for b in batches:
        if not b.attributes & CONTROL:
            cols = b.records.to_pydict()
            sent.update(zip(cols["offset"], cols["value"], strict=True))
    assert sent == DATA and lso == 10
    stamped = [b for b in batches if b.attributes & TRANSACTIONAL and not b.attributes & CONTROL]
    assert [(b.base_offset, b.producer_id, b.producer_epoch) for b in stamped] == [(4, pid, controls[6].producer_epoch)]
    _, uncommitted_list, _ = _raw_fetch(sh, 0)
    assert uncommitted_list is None  # read_uncommitted: no list, as from Kafka


def _check_readers(sh: Any) -> None:
    """The SDK (both isolation levels) and SQL never show a marker; SQL counts agree."""
    shown = sh.read("tm", isolation="read_uncommitted")
    assert dict(zip(shown.column("offset").to_pylist(), shown.column("value").to_pylist(), strict=True)) == DATA
    committed = sh.read("tm")
    assert committed.column("offset").to_pylist() == sorted(COMMITTED)
    # The bounded read under SQL tails (Daft's too) passes over aborted records, then goes on.
    tail = pa.concat_tables(read_acknowledged(sh.transport, "tm", 0, 4))
    assert tail.column("offset").to_pylist() == [7, 9]
    rows = sh.sql("SELECT _offset, _value FROM tm")
    seen = dict(zip(rows.column("_offset").to_pylist(), rows.column("_value").to_pylist(), strict=True))
    assert set(seen).isdisjoint(MARKERS) and set(seen) <= set(DATA) and set(COMMITTED) <= set(seen)
    assert sh.sql("SELECT count(*) AS n FROM tm").column("n")[0].as_py() == len(seen)


def test_markers_occupy_offsets_and_clients_filter(tmp_path: Path) -> None:
    with streamhouse.open(str(tmp_path / "data"), kafka_port=0) as sh:
        sh.create_topic("tm", 1)
        bootstrap = sh.kafka_bootstrap
        assert bootstrap is not None
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "m", "linger.ms": 0})
        producer.init_transactions(20)
        for values, commit in (([b"a0", b"a1", b"a2"], True), ([b"b0", b"b1"], False), ([b"c0"], True)):
            producer.begin_transaction()
            for value in values:
                producer.produce("tm", value, partition=0)
            assert producer.flush(20) == 0
            if commit:
                producer.commit_transaction(20)
            else:
                producer.abort_transaction(20)
        plain = Producer({"bootstrap.servers": bootstrap})
        plain.produce("tm", b"d0", partition=0)
        assert plain.flush(20) == 0
        del producer, plain  # librdkafka would go on reconnecting after the engine closes

        assert _consume(bootstrap, "read_uncommitted", len(DATA)) == DATA
        assert _consume(bootstrap, "read_committed", len(COMMITTED)) == COMMITTED
        _check_fetch(sh)
        _check_readers(sh)

    # Closed (the buffer rolled into a segment) and opened again: the markers are in the log.
    with streamhouse.open(str(tmp_path / "data"), kafka_port=0) as sh:
        assert sh.kafka_bootstrap is not None
        _check_fetch(sh)
        _check_readers(sh)
        assert _consume(sh.kafka_bootstrap, "read_committed", len(COMMITTED)) == COMMITTED
    # Daft reads the segment files itself: it drops the markers the footers list. In a fresh
    # process: Daft keeps one runner per process, and another test in this worker may hold Ray's.
    done = subprocess.run(
        [sys.executable, "-c", _DAFT_OFFSETS, str(tmp_path / "data")], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    offsets = {int(line) for line in done.stdout.split()[1:]}
    assert offsets.isdisjoint(MARKERS) and set(COMMITTED) <= offsets <= set(DATA)
