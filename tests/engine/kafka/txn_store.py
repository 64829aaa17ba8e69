"""The transaction coordinator over a fresh SQLite store, shared by the coordinator-level tests
(test_kafka_txn_coordinator.py, test_kafka_txn_v2.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from streamhouse.kafka.txn_coordinator import TxnCoordinator
from streamhouse.storage.errors import TransactionError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store


@asynccontextmanager
async def store_with_topic(tmp_path: Path, partitions: int) -> AsyncIterator[MetadataStore]:
    """A store holding topic "out" of `partitions` partitions."""
    store = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    await store.create_topic("out", partitions)
    try:
        yield store
    finally:
        await store.close()


def coordinator(store: MetadataStore) -> TxnCoordinator:
    """A coordinator whose producer ids count from 100."""
    ids = itertools.count(100)

    async def new_id() -> int:
        return next(ids)

    return TxnCoordinator(store, new_id)


async def refusal_kind(call: Awaitable[object]) -> str:
    """The TransactionError kind `call` is refused with (fails the test if it is not refused)."""
    with pytest.raises(TransactionError) as refused:
        await call
    return refused.value.kind
