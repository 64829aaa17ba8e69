"""A COMMIT/ABORT marker a partition cannot take when its transaction ends (the leader
unreachable, the WAL disk full, the store restarting) is retried with backoff until it is
written, once (issue 18: Kafka's coordinator retries WriteTxnMarkers the same way)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pyarrow as pa

import streamhouse
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.kafka.txn_coordinator import TxnCoordinator
from streamhouse.kafka.txn_markers import FIRST_RETRY_S
from streamhouse.storage.errors import StorageUnavailableError


def test_a_marker_the_partition_could_not_take_is_written_later(tmp_path: Path) -> None:
    with streamhouse.open(str(tmp_path / "data")) as sh:
        sh.create_topic("t", 1)
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        service = transport.service
        refusals = [StorageUnavailableError("WAL disk full"), StorageUnavailableError("still full")]
        calls: list[int] = []

        async def append(topic: str, partition: int, batch: pa.RecordBatch) -> int:
            calls.append(partition)
            if refusals:  # the first attempts meet the fault; the rest the real append
                raise refusals.pop(0)
            return await service.append_control(topic, partition, batch)

        async def scenario() -> int:
            ids = itertools.count(100)

            async def new_id() -> int:
                return next(ids)

            coord = TxnCoordinator(service.metadata, new_id, markers=append)
            pid, epoch = await coord.init_producer_id("app", 60_000, -1, -1)
            await coord.add("app", pid, epoch, partitions=[("t", 0)])
            await coord.end("app", pid, epoch, True)  # ended although its marker was refused
            assert coord.pending is not None and len(coord.pending) == 1
            for _ in range(40):  # backoff 0.5 s, then 1 s: written within a few seconds
                await asyncio.sleep(FIRST_RETRY_S / 2)
                await coord.pending.retry_due()
                if not len(coord.pending):
                    break
            await coord.pending.retry_due()  # nothing left: no second copy
            return len(calls)

        assert transport._run(scenario()) == 3  # two refusals, one write
        # The marker holds offset 0, once: a Kafka consumer sees it as a control batch there.
        assert transport._run(service.manager.acked_end("t", 0)) == 1
