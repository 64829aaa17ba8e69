"""Kafka transaction version 2 (KIP-890 part 2, engine/kafka/txn_v2.py) over a real SQLite store:
EndTxn v5 bumps the epoch at every end and answers it, a retry naming the pre-bump epoch is answered
done, a late batch or add of the ended transaction (the pre-bump epoch) is refused before anything is
registered, implicit adds begin the next transaction, epochs run out into a new producer id; and the
wire: ApiVersions finalizes transaction.version=2, EndTxn v5 carries the new producer id/epoch.
The Java client's run over all of it is tests/engine/kafka/test_kafka_java.py (TxnPeer)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pytest
from kafka.protocol.metadata.api_versions import ApiVersionsResponse

from streamhouse.kafka import txn_v2
from streamhouse.kafka.handlers import Body, Context
from streamhouse.kafka.handlers_txn import INVALID_TXN_STATE, PRODUCER_FENCED, TxnHandlers
from streamhouse.kafka.protocol.api import decode_response, encode_response
from streamhouse.kafka.protocol.messages_data import API_VERSIONS
from streamhouse.kafka.protocol.messages_txn import END_TXN
from streamhouse.kafka.record.batch import TRANSACTIONAL, KafkaBatch, iter_batches
from streamhouse.kafka.record.encode import encode_batch
from streamhouse.kafka.registry import Broker
from streamhouse.kafka.txn_coordinator import TxnCoordinator
from streamhouse.kafka.txn_produce import INVALID_PRODUCER_EPOCH, TxnProduceError, produce_transactional
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.transactions import COMPLETE_ABORT, COMPLETE_COMMIT, EMPTY, MAX_EPOCH, ONGOING
from streamhouse.storage.metadata.txn_reads import CommittedReads
from streamhouse.storage.records.control import CONTROL_HEADER, Marker, marker_of
from streamhouse.storage.records.schema import make_batch
from tests.engine.kafka.txn_store import coordinator, refusal_kind, store_with_topic

P0, P1 = ("out", 0), ("out", 1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MetadataStore]:
    async with store_with_topic(tmp_path, 8) as store:
        yield store


async def _batch(store: MetadataStore, epoch: int, seq: int, base: int, partition: tuple[str, int] = P0) -> None:
    """A Produce v12 batch's store steps (txn_produce.py): implicit add, register, place."""
    await txn_v2.implicit_add(store, "app", 100, epoch, frozenset([partition]))
    await store.txn_open_batch("app", 100, epoch, partition[0], partition[1], seq, base)
    await store.txn_place_batch(partition[0], partition[1], 100, epoch, seq, base, base + 2)


async def test_every_end_bumps_and_the_pre_bump_epoch_is_fenced(store: MetadataStore) -> None:
    coord = coordinator(store)
    assert await coord.init_producer_id("app", 10_000, -1, -1) == (100, 0)
    await _batch(store, 0, 0, 0)  # no AddPartitionsToTxn: the batch began the transaction
    state = await store.txn_get("app")
    assert state is not None and state.state == ONGOING and state.partitions == {P0}
    assert await coord.end("app", 100, 0, True, bump=True) == (100, 1)
    done = await store.txn_get("app")
    assert done is not None and (done.producer_epoch, done.state) == (1, COMPLETE_COMMIT)
    assert await store.txn_batches("out", 0) == []  # committed: plain records
    # The lost answer's retry names the pre-bump epoch: done, nothing written again.
    assert await coord.end("app", 100, 0, True, bump=True) == (100, 1)
    assert await store.txn_get("app") == done
    assert await refusal_kind(coord.end("app", 100, 0, False, bump=True)) == "fenced"  # the other end is not a retry
    # A late batch of the ended transaction (a retry, a zombie) never enters the next one.
    assert await refusal_kind(_batch(store, 0, 2, 2)) == "fenced"
    assert await refusal_kind(store.txn_open_batch("app", 100, 0, "out", 1, 0, 0)) == "fenced"
    assert await store.txn_get("app") == done and await store.txn_batches("out", 1) == []
    # The next transaction at the bumped epoch, aborted: its rows stay as aborted ranges.
    await _batch(store, 1, 0, 2, P1)
    assert await coord.end("app", 100, 1, False, bump=True) == (100, 2)
    assert [(b.producer_epoch, b.aborted) for b in await store.txn_batches("out", 1)] == [(1, True)]
    assert await coord.end("app", 100, 2, True, bump=True) == (100, 3)  # an empty transaction bumps too
    # A second instance fences the first: its end at the old epoch is no retry (the row is Empty).
    assert await coord.init_producer_id("app", 10_000, -1, -1) == (100, 4)
    assert await refusal_kind(coord.end("app", 100, 3, True, bump=True)) == "fenced"
    # Transaction version 1 (EndTxn <= 4) keeps one epoch per producer session.
    await coord.add("app", 100, 4, partitions=[P0])
    assert await coord.end("app", 100, 4, True) == (100, 4)


async def test_epochs_run_out_into_a_new_producer_id(store: MetadataStore) -> None:
    coord = coordinator(store)
    await coord.init_producer_id("app", 10_000, -1, -1)
    state = await store.txn_get("app")
    assert state is not None
    await store.txn_put(dataclasses.replace(state, producer_epoch=MAX_EPOCH))
    await txn_v2.implicit_add(store, "app", 100, MAX_EPOCH, frozenset([P0]))
    assert await coord.end("app", 100, MAX_EPOCH, False, bump=True) == (101, 0)
    after = await store.txn_get("app")
    assert after is not None and (after.producer_id, after.producer_epoch, after.state) == (101, 0, COMPLETE_ABORT)
    assert await refusal_kind(txn_v2.implicit_add(store, "app", 100, MAX_EPOCH, frozenset([P1]))) == "unknown"


async def test_concurrent_implicit_adds_all_land(store: MetadataStore) -> None:
    """Partition leaders (any agent) add at once: the compare-and-set losers read again."""
    coord = coordinator(store)
    await coord.init_producer_id("app", 10_000, -1, -1)
    adds = [txn_v2.implicit_add(store, "app", 100, 0, frozenset([("out", p)])) for p in range(6)]
    groups = [txn_v2.implicit_add(store, "app", 100, 0, groups=frozenset([f"g{i}"])) for i in range(2)]
    await asyncio.gather(*adds, *groups)
    state = await store.txn_get("app")
    assert state is not None and state.state == ONGOING
    assert state.partitions == {("out", p) for p in range(6)} and state.groups == {"g0", "g1"}
    before = state.version
    await txn_v2.implicit_add(store, "app", 100, 0, frozenset([P0]))  # already covered: nothing written
    assert (await store.txn_get("app")).version == before  # type: ignore[union-attr]
    assert (await store.txn_get("app")).state != EMPTY  # type: ignore[union-attr]


def test_the_wire_turns_version_2_on() -> None:
    body = {"error_code": 0, "api_keys": [{"api_key": 26, "min_version": 0, "max_version": 5}],
            "throttle_time_ms": 0, **txn_v2.features()}  # fmt: skip
    frame = encode_response(API_VERSIONS, 3, 9, body)
    theirs = ApiVersionsResponse.decode(frame[8:], version=3)  # kafka-python's reading of the tagged fields
    assert theirs.finalized_features_epoch == 1
    assert [(f.name, f.max_version_level, f.min_version_level) for f in theirs.finalized_features] == [
        ("transaction.version", 2, 2)
    ]
    end = {"throttle_time_ms": 0, "error_code": 0, "producer_id": 100, "producer_epoch": 7}
    _, ours = decode_response(END_TXN, 5, encode_response(END_TXN, 5, 3, end)[4:])
    assert (ours["producer_id"], ours["producer_epoch"]) == (100, 7)
    _, v4 = decode_response(END_TXN, 4, encode_response(END_TXN, 4, 3, end)[4:])
    assert "producer_id" not in v4 or v4["producer_id"] == -1  # version 1 clients are answered as before


async def test_txn_offset_commit_v5_adds_its_group(store: MetadataStore) -> None:
    """The handlers (handlers_txn.py) as the Java client drives them under version 2: no
    AddOffsetsToTxn, TxnOffsetCommit v5 adds the group, EndTxn v5 commits it and answers the bump.
    Version 4 (a version 1 client that skipped AddOffsetsToTxn) is refused as before."""
    coord = coordinator(store)

    async def unused(body: Body, version: int, ctx: Context) -> Body:
        raise AssertionError("not called")

    handlers = TxnHandlers(coord, Broker(1, "127.0.0.1", 9092), unused, unused)
    ctx = Context("test", "127.0.0.1")
    pid, epoch = await coord.init_producer_id("app", 10_000, -1, -1)

    def commit(version: int, offset: int) -> Body:
        partitions = [{"partition_index": 0, "committed_offset": offset, "committed_leader_epoch": -1,
                       "committed_metadata": None}]  # fmt: skip
        return {"transactional_id": "app", "group_id": "g", "producer_id": pid, "producer_epoch": epoch,
                "generation_id": -1, "member_id": "", "group_instance_id": None,
                "topics": [{"name": "out", "partitions": partitions}]}  # fmt: skip

    refused = await handlers.txn_offset_commit(commit(4, 5), 4, ctx)
    assert refused["topics"][0]["partitions"][0]["error_code"] == INVALID_TXN_STATE
    done = await handlers.txn_offset_commit(commit(5, 7), 5, ctx)
    assert done["topics"][0]["partitions"][0]["error_code"] == 0
    assert await store.fetch_offsets("g", "out") == {}  # pending until the commit
    end = {"transactional_id": "app", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    answer = await handlers.end_txn(end, 5, ctx)
    assert (answer["error_code"], answer["producer_id"], answer["producer_epoch"]) == (0, pid, epoch + 1)
    assert await store.fetch_offsets("g", "out") == {("out", 0): 7}
    late = await handlers.txn_offset_commit(commit(5, 9), 5, ctx)  # the pre-bump epoch: fenced, not added
    assert late["topics"][0]["partitions"][0]["error_code"] == PRODUCER_FENCED
    state = await store.txn_get("app")
    assert state is not None and state.state == COMPLETE_COMMIT and state.groups == frozenset()
    assert await store.fetch_offsets("g", "out") == {("out", 0): 7}


async def test_produce_v12_adds_its_partition_and_refuses_the_pre_bump_epoch(store: MetadataStore) -> None:
    """txn_produce.py as the Produce handler calls it: the append is the only thing faked (a
    list of what would be written), the store and the transaction rules are real."""
    coord = coordinator(store)
    pid, epoch = await coord.init_producer_id("app", 10_000, -1, -1)
    written: list[int] = []

    async def lower() -> int:
        return len(written)

    async def append(batch: KafkaBatch, last: bool) -> int:
        written.append(batch.base_sequence)
        return len(written) - 1

    def batch(epoch: int, sequence: int) -> list[KafkaBatch]:
        data = encode_batch(make_batch([b"v"], timestamps=[1]), producer_id=pid, producer_epoch=epoch,
                            base_sequence=sequence, attributes=TRANSACTIONAL)  # fmt: skip
        return list(iter_batches(data))

    reads = CommittedReads(store)
    with pytest.raises(TxnProduceError) as v1:  # Produce <= 11: the partition must have been added
        await produce_transactional(reads, "app", "out", 0, batch(epoch, 0), lower, append)
    assert v1.value.error_code == INVALID_TXN_STATE and written == []
    assert await produce_transactional(reads, "app", "out", 0, batch(epoch, 0), lower, append, True) == 0
    assert await produce_transactional(reads, "app", "out", 0, batch(epoch, 1), lower, append, True) == 1
    assert (await store.txn_get("app")).partitions == {P0}  # type: ignore[union-attr]
    await coord.end("app", pid, epoch, True, bump=True)
    with pytest.raises(TxnProduceError) as late:  # a late batch of the committed transaction
        await produce_transactional(reads, "app", "out", 1, batch(epoch, 2), lower, append, True)
    assert late.value.error_code == INVALID_PRODUCER_EPOCH and written == [0, 1]
    assert await store.txn_batches("out", 1) == []
    assert await produce_transactional(reads, "app", "out", 1, batch(epoch + 1, 0), lower, append, True) == 2
    state = await store.txn_get("app")
    assert state is not None and (state.state, state.partitions, state.producer_epoch) == (ONGOING, {P1}, 1)


async def test_markers_carry_the_epoch_the_end_moved_to(store: MetadataStore) -> None:
    """As Kafka writes them: a bumping end (v2) and a timeout's fencing abort write their markers
    with the bumped epoch, a version-1 end with the transaction's own."""
    written: list[tuple[str, int, Marker]] = []

    async def append(topic: str, partition: int, batch: pa.RecordBatch) -> int:
        meta = {h["key"]: h["value"] for h in batch.column("headers")[0].as_py()}[CONTROL_HEADER]
        written.append((topic, partition, marker_of(batch.column("key")[0].as_py(), meta)))
        return len(written)

    coord = TxnCoordinator(store, coordinator(store).new_producer_id, markers=append)
    assert await coord.init_producer_id("app", 10_000, -1, -1) == (100, 0)
    await _batch(store, 0, 0, 0)
    assert await coord.end("app", 100, 0, True, bump=True) == (100, 1)
    assert written == [("out", 0, Marker(100, 1, True))]
    await coord.add("app", 100, 1, partitions=[P1])
    assert await coord.end("app", 100, 1, False) == (100, 1)  # version 1: no bump
    assert written[1:] == [("out", 1, Marker(100, 1, False))]
    await coord.add("app", 100, 1, partitions=[P0])
    state = await store.txn_get("app")
    assert state is not None
    await store.txn_put(dataclasses.replace(state, started_ms=0, timeout_ms=1))  # long abandoned
    assert await coord.expire() == 1
    assert written[2:] == [("out", 0, Marker(100, 2, False))]
