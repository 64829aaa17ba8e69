"""FindCoordinator (groups and transactions) while the metadata store is unreachable (the long
chaos run, PostgreSQL restarts): answered COORDINATOR_NOT_AVAILABLE, which Kafka clients retry,
instead of the StorageUnavailableError closing the client's connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamhouse.kafka import errors as codes
from streamhouse.kafka.group_leases import GroupLeases
from streamhouse.kafka.handlers import Context
from streamhouse.kafka.handlers_txn import TxnHandlers
from streamhouse.kafka.registry import BrokerRegistry
from streamhouse.kafka.txn_coordinator import LEASE_PREFIX
from streamhouse.storage.errors import StorageUnavailableError
from streamhouse.storage.metadata import open_metadata_store


async def _unused(*_: object) -> dict[str, object]:
    raise AssertionError("not asked")


@pytest.mark.parametrize("key_type", [0, 1])
async def test_find_coordinator_answers_retriably_while_the_store_is_down(tmp_path: Path, key_type: int) -> None:
    down = await open_metadata_store(f"sqlite:///{tmp_path / 'meta.db'}")
    await down.close()  # a real store that answers StorageUnavailableError from now on
    registry = BrokerRegistry(down, "agent-a", "127.0.0.1", 9092, ttl_ms=10_000, renew_ms=3_000)
    groups = GroupLeases(registry, lambda _gid: None)
    txns = GroupLeases(registry, lambda _tid: None, prefix=LEASE_PREFIX)
    leases = groups if key_type == 0 else txns
    with pytest.raises(StorageUnavailableError):  # the lookup under it: escaped to the connection before
        await leases._whose("g")
    broker = await leases.coordinator("g")
    assert broker is None  # COORDINATOR_NOT_AVAILABLE
    if key_type == 1:
        handlers = TxnHandlers(None, registry.me, _unused, _unused, txns.coordinator)  # type: ignore[arg-type]
        body = {"key_type": 1, "coordinator_keys": ["tid"]}
        answer = await handlers.find_coordinator(body, 4, Context("c", "127.0.0.1"))
        assert [c["error_code"] for c in answer["coordinators"]] == [codes.COORDINATOR_NOT_AVAILABLE]
