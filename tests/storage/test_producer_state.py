"""Idempotent producer state in storage (docs/DESIGN.md §10), against real stores: the metadata
contract over SQLite and PostgreSQL (producer ids, states committed in the segment commit's
transaction, nothing stored by a refused commit, topic deletion) and the partition writer over
them and SeaweedFS (a tagged retry is answered with its original offsets, the state is
rebuilt from the WAL after a crash and from the metadata store without the WAL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from streamhouse.storage.errors import (
    BatchAlreadyWrittenError,
    FencedError,
    InvalidInputError,
    OffsetConflictError,
    PartitionNotFoundError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState, fold, newest, tag, tagged
from streamhouse.storage.model import TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.codec import decode_batch, encode_batch
from streamhouse.storage.records.schema import RECORD_SCHEMA, make_batch
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog
from streamhouse.storage.wal.recovery import Piece, piece_payload
from tests.storage.test_metadata_contract import HOLDER, make_segment


def state(pid: int, epoch: int, *batches: tuple[int, int, int, int]) -> ProducerState:
    return ProducerState(pid, epoch, tuple(ProducerBatch(pid, epoch, f, last, b, n) for f, last, b, n in batches))


async def leased(store: MetadataStore, topic: str = "t", partition: int = 0, holder: str = HOLDER) -> int:
    return (await store.acquire_lease(partition_resource(topic, partition), holder, 60_000)).epoch


# -- the metadata store -----------------------------------------------------------------------------
async def test_states_are_committed_with_their_segment(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 2)
    epoch = await leased(metadata_store)
    one, two = state(5, 0, (0, 2, 0, 3)), state(9, 1, (0, 0, 3, 1))
    await metadata_store.commit_segment(make_segment("t", 0, 0, 4, epoch), HOLDER, epoch, [one, two])
    assert await metadata_store.get_producer_states("t", 0) == [one, two]
    assert await metadata_store.get_producer_states("t", 1) == []
    # The next commit replaces a producer's row and leaves the others.
    later = state(5, 0, (0, 2, 0, 3), (3, 4, 4, 2))
    await metadata_store.commit_segment(make_segment("t", 0, 4, 6, epoch), HOLDER, epoch, [later])
    assert await metadata_store.get_producer_states("t", 0) == [later, two]
    await metadata_store.commit_segment(make_segment("t", 0, 6, 7, epoch), HOLDER, epoch)  # no producers
    assert await metadata_store.get_producer_states("t", 0) == [later, two]


async def test_a_refused_commit_stores_no_state(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    epoch = await leased(metadata_store)
    with pytest.raises(FencedError):
        await metadata_store.commit_segment(make_segment("t", 0, 0, 3, epoch + 1), HOLDER, epoch + 1, [state(1, 0)])
    with pytest.raises(OffsetConflictError):
        await metadata_store.commit_segment(make_segment("t", 0, 2, 3, epoch), HOLDER, epoch, [state(1, 0)])
    bad = [state(1, 0, (0, 0, 0, 1)), state(1, 0, (1, 1, 1, 1))]  # one producer named twice
    with pytest.raises(InvalidInputError, match="named twice"):
        await metadata_store.commit_segment(make_segment("t", 0, 0, 2, epoch), HOLDER, epoch, bad)
    with pytest.raises(InvalidInputError, match="at most 5"):
        many = state(1, 0, *((i, i, i, 1) for i in range(6)))
        await metadata_store.commit_segment(make_segment("t", 0, 0, 6, epoch), HOLDER, epoch, [many])
    assert await metadata_store.get_producer_states("t", 0) == []
    assert await metadata_store.get_end_offset("t", 0) == 0


async def test_states_go_with_their_topic(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic("t", 1)
    epoch = await leased(metadata_store)
    await metadata_store.commit_segment(make_segment("t", 0, 0, 1, epoch), HOLDER, epoch, [state(3, 0, (0, 0, 0, 1))])
    await metadata_store.delete_topic("t")
    with pytest.raises(TopicNotFoundError):
        await metadata_store.get_producer_states("t", 0)
    await metadata_store.create_topic("t", 1)
    assert await metadata_store.get_producer_states("t", 0) == []
    with pytest.raises(PartitionNotFoundError):
        await metadata_store.get_producer_states("t", 1)


async def test_producer_ids_are_unique_across_stores(metadata_store: MetadataStore) -> None:
    """Two stores on one database (two agents): concurrent allocations never repeat an id."""
    other = await open_metadata_store(metadata_store.url)
    try:
        ids = await asyncio.gather(*(s.allocate_producer_id() for _ in range(25) for s in (metadata_store, other)))
    finally:
        await other.close()
    assert len(set(ids)) == 50 and min(ids) >= 1
    assert await metadata_store.allocate_producer_id() > max(ids)


# -- the partition writer ---------------------------------------------------------------------------
@pytest.fixture
async def topic(metadata_store: MetadataStore) -> TopicInfo:
    return await metadata_store.create_topic("events", 1)


@pytest.fixture
async def wal(tmp_path: Path) -> AsyncIterator[WriteAheadLog]:
    log = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await log.replay()
    yield log
    await log.close()


def records(n: int, pid: int = 7, epoch: int = 0, sequence: int = 0, prefix: str = "v") -> pa.RecordBatch:
    batch = make_batch([f"{prefix}{i}".encode() for i in range(n)], timestamps=[1000] * n)
    return tag(batch, pid, epoch, sequence)


async def writer(
    metadata: MetadataStore,
    store: ObjectStore,
    wal: WriteAheadLog,
    topic: TopicInfo,
    holder: str = "a",
    replayed: Sequence[WalEntry] = (),
) -> PartitionWriter:
    epoch = (await metadata.acquire_lease(partition_resource("events", 0), holder, 60_000)).epoch
    return await PartitionWriter.recover(
        topic, 0, holder=holder, epoch=epoch, metadata=metadata, store=store, wal=wal, replayed=list(replayed)
    )


async def test_a_tagged_retry_gets_its_original_offsets(
    metadata_store: MetadataStore, object_store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo
) -> None:
    w = await writer(metadata_store, object_store, wal, topic)
    assert await w.append(records(3)) == 0
    assert await w.append(records(2, sequence=3)) == 3
    assert await w.append(records(3)) == 0  # retry: not written again
    assert await w.append(make_batch([b"plain"], timestamps=[1])) == 5  # untagged: always written
    assert w.next_offset == 6
    # The buffer serves plain record batches; the WAL entries keep the tags.
    assert all(b.schema.metadata is None for b in w.read_buffer(0, 10))
    entries = await wal.entries_of(topic.topic_id, 0)
    assert [tagged(decode_batch(e.payload), e.base_offset) for e in entries] == [
        ProducerBatch(7, 0, 0, 2, 0, 3), ProducerBatch(7, 0, 3, 4, 3, 2), None]  # fmt: skip
    await w.flush()
    assert await metadata_store.get_producer_states("events", 0) == [state(7, 0, (0, 2, 0, 3), (3, 4, 3, 2))]


async def test_a_copy_older_than_the_kept_batches_is_not_written_again(
    metadata_store: MetadataStore, object_store: ObjectStore, wal: WriteAheadLog, topic: TopicInfo
) -> None:
    """A dead leader's WAL copy of a batch whose producer retried it here, handed over after
    the producer wrote more than the kept batches (the sixth 42-min fault run: a committed
    transaction's two records in the log twice)."""
    w = await writer(metadata_store, object_store, wal, topic)
    for i in range(7):
        assert await w.append(records(2, sequence=2 * i)) == 2 * i
    with pytest.raises(BatchAlreadyWrittenError):
        await w.append(records(2, sequence=0))  # behind the last 5 kept batches
    assert await w.append(records(2, sequence=6)) == 6  # still kept: its original offsets
    assert w.next_offset == 14
    # Another epoch's batch is not judged by this one's sequences (a bumped producer's copy
    # may be the only one of an acknowledged record), nor is an unknown producer's.
    assert await w.append(records(2, epoch=1, sequence=0)) == 14
    assert await w.append(records(1, pid=8, sequence=40)) == 16


async def test_the_state_is_rebuilt_from_the_wal_and_from_metadata(
    metadata_store: MetadataStore, object_store: ObjectStore, tmp_path: Path, topic: TopicInfo
) -> None:
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    await wal.replay()
    first = await writer(metadata_store, object_store, wal, topic)
    await first.append(records(4))
    await first.flush()  # committed: the state is in the metadata store
    await first.append(records(2, sequence=4))  # in the WAL only
    await wal.close()
    # A restart of the same agent: committed rows + the WAL's tagged entry.
    wal = await WriteAheadLog.open(tmp_path / "wal", fsync="never")
    replayed = (await wal.replay()).entries
    await metadata_store.release_lease(partition_resource("events", 0), "a", first.epoch)
    again = await writer(metadata_store, object_store, wal, topic, replayed=replayed)
    assert again.producers[7] == state(7, 0, (0, 3, 0, 4), (4, 5, 4, 2))
    assert await again.append(records(2, sequence=4)) == 4 and again.next_offset == 6
    await wal.close()
    # Another agent without that WAL: only what was committed, which still answers its retry.
    other_wal = await WriteAheadLog.open(tmp_path / "other", fsync="never")
    await other_wal.replay()
    await metadata_store.release_lease(partition_resource("events", 0), "a", again.epoch)
    other = await writer(metadata_store, object_store, other_wal, topic, holder="b")
    assert other.producers[7] == state(7, 0, (0, 3, 0, 4))
    assert await other.append(records(4)) == 0
    assert other.next_offset == 4
    await other_wal.close()


def test_tags_are_checked() -> None:
    plain = make_batch([b"x"], timestamps=[1])
    assert tagged(plain, 0) is None
    assert tagged(tag(plain, 3, 1, 2**31 - 1), 10) == ProducerBatch(3, 1, 2**31 - 1, 2**31 - 1, 10, 1)
    wrapped = tag(make_batch([b"x", b"y"], timestamps=[1, 1]), 3, 1, 2**31 - 1)
    assert tagged(wrapped, 0) == ProducerBatch(3, 1, 2**31 - 1, 0, 0, 2)  # sequences wrap to 0
    bad = plain.replace_schema_metadata({b"streamhouse.producer": b"3:x:1"})
    with pytest.raises(InvalidInputError, match="bad producer tag"):
        tagged(bad, 0)
    assert tag(plain, 1, 0, 0).schema.equals(RECORD_SCHEMA)


def test_a_batch_behind_the_last_written_one_has_passed() -> None:
    kept = state(7, 3, (10, 14, 0, 5), (15, 19, 5, 5))
    assert kept.passed(3, 14) and kept.passed(3, 19) and kept.passed(3, 2)
    assert not kept.passed(3, 20) and not kept.passed(2, 14) and not kept.passed(4, 0)
    wrapped = state(7, 0, (2**31 - 3, 1, 0, 5))  # sequences wrap at 2**31
    assert wrapped.passed(0, 2**31 - 4) and wrapped.passed(0, 0) and not wrapped.passed(0, 2)
    assert not state(7, 0).passed(0, 0)


def test_the_written_head_of_a_batch_straddling_the_last_written_sequence() -> None:
    kept = state(7, 3, (10, 14, 0, 5), (15, 19, 5, 5))
    assert kept.written_head(3, 17, 24) == 3  # 17..19 written, 20..24 new
    assert kept.written_head(3, 19, 20) == 1
    assert kept.written_head(3, 12, 19) == 3  # wholly written, its tail the kept 15..19: that answers it
    assert kept.written_head(3, 15, 19) == 0  # a kept batch itself
    assert kept.written_head(3, 12, 18) == 0  # wholly written, no kept batch ends there
    assert kept.written_head(3, 20, 24) == 0 and kept.written_head(3, 22, 24) == 0  # new, or past a gap
    assert kept.written_head(2, 17, 24) == 0 and kept.written_head(4, 0, 3) == 0  # another epoch
    wrapped = state(7, 0, (2**31 - 3, 1, 0, 5))  # sequences wrap at 2**31
    assert wrapped.written_head(0, 2**31 - 1, 4) == 3  # 2**31-1, 0, 1 written; 2..4 new
    assert state(7, 0).written_head(0, 0, 4) == 0


def test_state_folds_per_batch_and_keeps_the_newest() -> None:
    s = fold({}, [ProducerBatch(1, 0, i, i, i, 1) for i in range(7)])[1]
    assert [b.first_sequence for b in s.batches] == [2, 3, 4, 5, 6] and s.next_sequence == 7
    assert s.with_batch(ProducerBatch(1, 0, 4, 4, 99, 1)) is s  # a late copy does not move it back
    assert s.with_batch(ProducerBatch(1, 0, 9, 9, 99, 1)).next_sequence == 10  # a gap is the caller's to refuse
    assert s.with_batch(ProducerBatch(1, 1, 0, 0, 99, 1)).batches == (ProducerBatch(1, 1, 0, 0, 99, 1),)
    assert s.with_batch(ProducerBatch(1, 0, 0, 0, 99, 1)) is s  # nor one that fell out of the kept five
    many = {pid: state(pid, 0, (0, 0, pid * 10, 1)) for pid in range(100)}
    assert sorted(newest(many, 3)) == [97, 98, 99]


def test_a_slice_of_a_wal_entry_loses_the_tag() -> None:
    """Recovery re-encodes part of an entry when only part of it needs placing: the tag names
    the whole batch's sequences, so the part must not carry it (the whole entry keeps it)."""
    payload = encode_batch(records(4))
    entry = WalEntry(1, 0, 3, 10, 4, payload)
    assert tagged(decode_batch(piece_payload(Piece(entry, 10, 14))), 10) == ProducerBatch(7, 0, 0, 3, 10, 4)
    assert tagged(decode_batch(piece_payload(Piece(entry, 12, 14))), 12) is None
