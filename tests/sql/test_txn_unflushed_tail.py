"""Ad-hoc SQL reads a leader's unflushed tail, and read committed it must not show an aborted
Kafka transaction's batch there (issue 18). A transactional produce registers its batch, appends
it and places it only after its acks=all round; a client that gives up waiting (its message
timeout) aborts meanwhile. Until the segment commit places the batch, only the leader's buffer
knows its offsets: the view finds it there by its producer, epoch and sequence, and hides it."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.records.schema import make_batch
from tests.engine.kafka.txn_store import coordinator

T = TypeVar("T")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    settings = {
        "metadata_url": f"sqlite:///{tmp_path / 'meta.db'}",
        "object_store_url": f"file://{tmp_path / 'objects'}",
        "roll_bytes": 3 << 20,
        "roll_age_ms": 600_000,  # records stay in the leader's buffer until a durable produce
    }
    with streamhouse.open(tmp_path / "a", **settings) as opened:
        yield opened


def _run(client: Client, coro: Coroutine[Any, Any, T]) -> T:
    return client.transport._run(coro)  # type: ignore[attr-defined]  # on the embedded agent's loop


def _values(client: Client) -> list[int]:
    return sorted(client.sql("SELECT n FROM t").column("n").to_pylist())


def test_an_aborted_batch_in_the_tail_is_hidden_before_its_commit_places_it(client: Client) -> None:
    client.sql("CREATE TOPIC t (n BIGINT) WITH (partitions = 1)")
    client.produce_batch("t", [{"n": i} for i in range(5)], partition=0, acks="durable")
    service = client.transport.service  # type: ignore[attr-defined]
    store = service.metadata
    coord = coordinator(store)
    pid, epoch = _run(client, coord.init_producer_id("app", 60_000, -1, -1))
    _run(client, coord.add("app", pid, epoch, partitions=[("t", 0)]))
    _run(client, store.txn_open_batch("app", pid, epoch, "t", 0, 0, 5))  # registered before the append
    info = _run(client, service.topic("t", 0))
    batch = ps.tag(make_batch([b'{"n": 100}', b'{"n": 101}']), pid, epoch, 0)  # as the Kafka produce tags it
    assert _run(client, service.manager.append(info, 0, batch, "leader")) == 5  # the leader's tail
    assert _values(client) == [0, 1, 2, 3, 4]  # open: held at its base, the last stable offset
    _run(client, coord.end("app", pid, epoch, False))  # the client aborts before any placement
    client.produce_batch("t", [{"n": 7}], partition=0)  # a plain record behind it, also in the tail
    assert _values(client) == [0, 1, 2, 3, 4, 7]  # hidden where the buffer has it; 7 not held back
    client.sql("SET isolation_level = 'read_uncommitted'")
    assert _values(client) == [0, 1, 2, 3, 4, 7, 100, 101]
    client.sql("RESET isolation_level")
    # The segment commit (a durable produce rolls the buffer) places the batch where it is.
    client.produce_batch("t", [{"n": 8}], partition=0, acks="durable")
    (row,) = [b for b in _run(client, store.txn_batches("t", 0)) if b.producer_id == pid]
    assert (row.base_offset, row.end_offset, row.aborted) == (5, 7, True)
    assert _values(client) == [0, 1, 2, 3, 4, 7, 8]
