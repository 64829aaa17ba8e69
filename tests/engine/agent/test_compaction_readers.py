"""Every reader over a compacted topic's gaps (issue 14 item 2), on PostgreSQL + SeaweedFS with the
embedded engine's Kafka listener: the SDK (read, a consumer from earliest), SQL, a continuous
query, and kafka-python consuming from the start and from inside a gap see exactly the records
compaction kept, at their original offsets; a keyless record is refused; tombstones past
delete.retention.ms are gone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

import streamhouse
from streamhouse import Client
from streamhouse.storage.segment.compact import KeyRequiredError


def _expected(writes: list[tuple[int, str, int | None]], cut: int) -> list[tuple[int, int]]:
    """(offset, n) the log holds after one pass with delete.retention.ms = 0: below `cut` (the
    newest segment's base) the latest record per key unless a tombstone, everything from `cut`."""
    latest: dict[str, tuple[int, int | None]] = {}
    for offset, key, n in writes:
        if offset < cut:
            latest[key] = (offset, n)
    kept = [(o, n) for o, n in latest.values() if n is not None]
    kept += [(o, n) for o, _, n in writes if o >= cut and n is not None]
    return sorted(kept)


def _wait(check: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_readers_see_exactly_what_compaction_kept(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> None:
    url, endpoint = s3_url
    settings = {"metadata_url": pg_url, "object_store_url": url, "s3_endpoint": endpoint, "merge_interval_ms": 0}
    sh: Client
    with streamhouse.open(str(tmp_path / "engine"), kafka_port=0, **settings) as sh:
        sh.sql(
            "CREATE TOPIC kv (n BIGINT) WITH ('cleanup.policy' = 'compact', 'delete.retention.ms' = '0', "
            "'min.cleanable.dirty.ratio' = '0')"
        )
        # One key written 25,000 times first: compaction leaves a gap wider than a job reads
        # in one window (10,000 offsets) and than a fetch's record count spans.
        bulk = sh.produce_batch(
            "kv", [{"n": i} for i in range(25_000)], keys=["bulk"] * 25_000, partition=0, acks="durable"
        )
        writes: list[tuple[int, str, int | None]] = [(bulk[0].base_offset + i, "bulk", i) for i in range(25_000)]
        for round_ in range(5):  # acks=durable: one segment per round
            count = 4 if round_ == 4 else 6  # the newest segment holds k0..k3 only
            keys = [f"k{i}" for i in range(count)]
            values: list[dict[str, int] | None] = [{"n": round_ * 10 + i} for i in range(count)]
            if round_ == 3:
                values[4] = None  # k4 deleted in the last cleanable segment
            results = sh.produce_batch("kv", values, keys=keys, partition=0, acks="durable")
            base = results[0].base_offset
            writes += [
                (base + i, k, None if v is None else v["n"]) for i, (k, v) in enumerate(zip(keys, values, strict=True))
            ]
        with pytest.raises(KeyRequiredError, match="has no key"):
            sh.produce("kv", {"n": 1}, acks="durable")

        node = sh.transport.node  # type: ignore[attr-defined]
        outcomes = sh.transport._run(node.compactor.run_once())  # type: ignore[attr-defined]
        assert [(o.topic, o.swapped) for o in outcomes] == [("kv", 1)]
        assert outcomes[0].counts.tombstones_dropped == 1
        cut = max(o for o, _, _ in writes) - 3  # the last round's segment stays as it was
        expected = _expected(writes, cut)
        assert len(expected) < len(writes)  # there are gaps to read over

        # SDK: read (fetch, next offset after each answer) and a consumer from earliest.
        table = sh.read("kv")
        assert (
            list(
                zip(table.column("offset").to_pylist(), [_n(v) for v in table.column("value").to_pylist()], strict=True)
            )
            == expected
        )
        with sh.consumer("kv", start="earliest") as consumer:
            seen: list[int] = []
            deadline = time.monotonic() + 20
            while len(seen) < len(expected) and time.monotonic() < deadline:
                seen += consumer.poll(timeout=0.5).column("offset").to_pylist()
        assert seen == [o for o, _ in expected]

        # SQL: the topic as a table, and as its latest value per key.
        rows = sh.sql("SELECT _offset, n FROM kv ORDER BY _offset").to_pylist()
        assert [(r["_offset"], r["n"]) for r in rows] == expected
        latest = sh.sql("SELECT _key, n FROM latest.kv ORDER BY _key").to_pylist()
        assert [(r["_key"], r["n"]) for r in latest] == [
            (b"bulk", 24_999),
            *[(f"k{i}".encode(), 40 + i) for i in range(4)],
            (b"k5", 35),
        ]

        # A continuous query reads from the start across the gaps.
        sh.sql("CREATE MATERIALIZED VIEW kvcopy WITH ('start' = 'earliest') AS SELECT _offset AS o, n FROM kv")
        _wait(lambda: sh.sql("SELECT count(*) AS c FROM kvcopy").column("c")[0].as_py() == len(expected), "the job")
        copied = sh.sql("SELECT o, n FROM kvcopy ORDER BY o").to_pylist()
        assert [(r["o"], r["n"]) for r in copied] == expected
        sh.sql("DROP MATERIALIZED VIEW kvcopy")

        # A real Kafka client: from the beginning, then from an offset inside a gap.
        gap = next(o for o in range(cut) if o not in {e for e, _ in expected})
        consumer = KafkaConsumer(bootstrap_servers=sh.kafka_bootstrap, enable_auto_commit=False, api_version=(2, 5))
        try:
            tp = TopicPartition("kv", 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            assert _consume(consumer, len(expected)) == [o for o, _ in expected]
            consumer.seek(tp, gap)
            rest = [o for o, _ in expected if o > gap]
            assert _consume(consumer, len(rest)) == rest
        finally:
            consumer.close()
        # Kafka producers are refused a keyless record too (INVALID_RECORD), as by a broker.
        producer = KafkaProducer(bootstrap_servers=sh.kafka_bootstrap, api_version=(2, 5), retries=0)
        try:
            with pytest.raises(KafkaError, match=r"INVALID_RECORD|InvalidRecord"):
                producer.send("kv", value=b'{"n": 1}', partition=0).get(timeout=20)
        finally:
            producer.close()
        assert sh.sql("SELECT count(*) AS c FROM kv").column("c")[0].as_py() == len(expected)


def _consume(consumer: KafkaConsumer, count: int) -> list[int]:
    """Offsets of the next `count` records (polling until they came, at most 20 s)."""
    offsets: list[int] = []
    deadline = time.monotonic() + 20
    while len(offsets) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            offsets += [m.offset for m in records]
    return offsets


def _n(value: bytes | None) -> int | None:
    import json

    return None if value is None else int(json.loads(value)["n"])
