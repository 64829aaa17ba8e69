"""Pure-Python Kafka clients against a real `streamhouse serve --kafka-port` subprocess on
PostgreSQL + SeaweedFS: kafka-python (sync, idempotent by default) and aiokafka (asyncio,
older non-flexible protocol versions) produce with every codec, consume in a group and
commit; our SDK sees the same records and the same committed offsets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import streamhouse
from tests.agent_process import AgentProcess, kafka_agent, read_log

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture
def agent(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> Iterator[tuple[AgentProcess, str]]:
    with kafka_agent(tmp_path, pg_url, s3_url) as (process, port):
        yield process, f"127.0.0.1:{port}"


def _value(client: str, codec: str | None, i: int) -> bytes:
    return f"{client}-{codec}-{i}".encode()


def test_kafka_python_produces_consumes_and_commits(agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic("kp", 2)
    sent: dict[int, list[bytes]] = {0: [], 1: []}
    for codec in CODECS:
        producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, acks="all")
        try:
            futures = []
            for i in range(6):
                value = _value("kp", codec, i)
                sent[i % 2].append(value)
                futures.append(producer.send("kp", value=value, key=b"k" if i % 3 else None, partition=i % 2,
                                             headers=[("n", str(i).encode())]))  # fmt: skip
            producer.flush(20)
            assert all(f.get(20).offset >= 0 for f in futures)
        finally:
            producer.close(5)
    with streamhouse.connect(process.address) as client:
        assert read_log(client, "kp") == sent  # dense offsets, nothing twice (idempotent by default)
        # The same records are a SQL table, with the Kafka offsets.
        rows = client.sql("SELECT _partition AS p, _offset AS o, _value AS value FROM kp ORDER BY p, o").to_pylist()
        assert [(r["p"], r["o"], r["value"]) for r in rows] == [
            (p, o, v) for p in (0, 1) for o, v in enumerate(sent[p])]  # fmt: skip

    consumer = KafkaConsumer("kp", bootstrap_servers=bootstrap, group_id="kp-group", auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=15000)  # fmt: skip
    got: dict[int, list[bytes]] = {0: [], 1: []}
    try:
        for message in consumer:
            got[message.partition].append(message.value)
            assert dict(message.headers)["n"] == message.value.rsplit(b"-", 1)[1]
            if sum(map(len, got.values())) == 30:
                break
        consumer.commit()
        assert consumer.committed(TopicPartition("kp", 0)) == 15
    finally:
        consumer.close()
    assert got == sent
    with streamhouse.connect(process.address) as client:
        assert {o.partition: o.committed_offset for o in client.committed("kp-group", "kp")} == {0: 15, 1: 15}


async def _aiokafka_round_trip(bootstrap: str) -> tuple[dict[int, list[bytes]], dict[int, list[bytes]]]:
    sent: dict[int, list[bytes]] = {0: [], 1: []}
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(4):
                value = _value("aio", codec, i)
                sent[i % 2].append(value)
                await producer.send_and_wait("aio", value, key=None if i == 0 else b"", partition=i % 2)
        finally:
            await producer.stop()
    consumer = AIOKafkaConsumer("aio", bootstrap_servers=bootstrap, group_id="aio-group",
                                auto_offset_reset="earliest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    got: dict[int, list[bytes]] = {0: [], 1: []}
    try:
        async with asyncio.timeout(30):
            async for message in consumer:
                assert message.key == (None if message.value.endswith(b"-0") else b"")  # null vs empty kept
                got[message.partition].append(message.value)
                if sum(map(len, got.values())) == 20:
                    break
        await consumer.commit()
    finally:
        await consumer.stop()
    return sent, got


def test_aiokafka_produces_consumes_and_commits(agent: tuple[AgentProcess, str]) -> None:
    process, bootstrap = agent
    with streamhouse.connect(process.address) as client:
        client.create_topic("aio", 2)
    sent, got = asyncio.run(_aiokafka_round_trip(bootstrap))
    assert got == sent
    with streamhouse.connect(process.address) as client:
        assert read_log(client, "aio") == sent
        assert {o.partition: o.committed_offset for o in client.committed("aio-group", "aio")} == {0: 10, 1: 10}
