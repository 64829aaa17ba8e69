"""The WAL payload the partition writer frames itself (a Kafka produce carries no Arrow IPC):
uncompressed (storage/records/codec.py frame_batch), and replayed exactly as the LZ4
entries written before it, tags included, in the same WAL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from streamhouse.kafka.record.batch import decode_batch as decode_kafka
from streamhouse.kafka.record.encode import encode_batch as encode_kafka
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.producer_state import ProducerBatch, tag, tagged
from streamhouse.storage.model import TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.codec import decode_batch, encode_batch, frame_batch
from streamhouse.storage.records.schema import assign_offsets, make_batch
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog


@pytest.fixture
async def topic(metadata_store: MetadataStore) -> TopicInfo:
    return await metadata_store.create_topic("events", 1)


async def writer(
    metadata: MetadataStore, store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo, holder: str,
    replayed: list[WalEntry] | None = None,
) -> PartitionWriter:  # fmt: skip
    epoch = (await metadata.acquire_lease(partition_resource("events", 0), holder, 60_000)).epoch
    return await PartitionWriter.recover(
        topic, 0, holder=holder, epoch=epoch, metadata=metadata, store=store, wal=wal, replayed=replayed or []
    )


@pytest.fixture
async def wal(tmp_path: Path) -> AsyncIterator[WriteAheadLog]:
    log = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await log.replay()
    yield log
    await log.close()


def kafka_records(n: int, first: int) -> pa.RecordBatch:
    """Records as a Kafka produce hands them to the writer: decoded from a RecordBatch v2
    (random values, null and empty keys, headers on some)."""
    rng = np.random.default_rng(first)
    keys = [None if i % 3 == 0 else b"" if i % 3 == 1 else b"k%d" % i for i in range(n)]
    headers = [[("h", b"x%d" % i)] if i % 2 else None for i in range(n)]
    batch = make_batch([rng.bytes(100) for _ in range(n)], keys=keys, timestamps=[5_000 + i for i in range(n)],
                       headers=headers)  # fmt: skip
    return decode_kafka(encode_kafka(batch)).records


def test_a_framed_batch_is_the_plain_encoding_of_it() -> None:
    batch = tag(kafka_records(50, 1), 7, 0, 0)
    framed = frame_batch(batch)
    assert bytes(framed) == encode_batch(batch, compress=False)
    back = decode_batch(framed)
    assert back.equals(batch) and back.schema.metadata == batch.schema.metadata  # the tag too
    table = pa.Table.from_batches([batch, batch])
    assert decode_batch(frame_batch(table)).equals(pa.concat_tables([table]).combine_chunks().to_batches()[0])
    # Nothing spent on compression: random values would not shrink anyway.
    assert len(framed) > len(encode_batch(batch)) * 0.9


async def test_entries_the_writer_framed_replay_as_written(
    metadata_store: MetadataStore, object_store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo, tmp_path: Path
) -> None:
    first = await writer(metadata_store, object_store, wal, topic, "a")
    # An entry of the earlier format (an LZ4 payload handed in, as the gRPC SDK sends) ...
    old = make_batch([b"old-%d" % i for i in range(4)], timestamps=[1] * 4)
    assert await first.append(old, encode_batch(old)) == 0
    # ... then Kafka batches, framed by the writer: one plain, one of an idempotent producer.
    plain, idem = kafka_records(300, 2), tag(kafka_records(200, 3), 9, 1, 40)
    assert await first.append(plain) == 4
    assert await first.append(idem) == 304
    entries = await wal.entries_of(topic.topic_id, 0)
    assert [e.payload for e in entries[1:]] == [
        encode_batch(assign_offsets(plain, 4), compress=False),
        encode_batch(assign_offsets(idem, 304), compress=False),
    ]
    written = pa.Table.from_batches(first.read_buffer(0, 1_000))

    # A restart: the same entries replayed from disk, by the next leadership.
    await wal.close()
    again = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    try:
        replayed = list((await again.replay()).entries)
        await metadata_store.release_lease(partition_resource("events", 0), "a", first.epoch)
        second = await writer(metadata_store, object_store, again, topic, "b", replayed)
        assert second.replayed_records == 504 and second.next_offset == 504
        assert pa.Table.from_batches(second.read_buffer(0, 1_000)).equals(written)
        assert tagged(decode_batch(replayed[-1].payload), 304) == ProducerBatch(9, 1, 40, 239, 304, 200)
        assert await second.append(idem) == 304  # the producer's retry: answered from the WAL's tag
        await second.flush()
        table = await PartitionReader(metadata_store, object_store).read("events", 0, 0)
        assert table.select(["offset", "timestamp", "key", "value", "headers"]).equals(written)
    finally:
        await again.close()
