"""A read_committed Fetch while the metadata store is down (chaos report, stop 14): the
transaction view cannot be read, and the partition is answered with a retriable error code
(56 KAFKA_STORAGE_ERROR, what a Kafka broker sends when it cannot reach its log) instead of
the exception closing the client's connection."""

from __future__ import annotations

import time
from pathlib import Path

import streamhouse
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.kafka import errors as codes
from streamhouse.kafka.handlers import Context, Handlers, Node
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.txn_reads import CommittedReads


def _body(isolation: int, wait_ms: int) -> dict[str, object]:
    parts = [{"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20} for p in range(2)]
    return {"max_wait_ms": wait_ms, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": isolation,
            "topics": [{"topic": "t", "partitions": parts}]}  # fmt: skip


def test_fetch_answers_a_retriable_error_while_the_store_is_down(tmp_path: Path) -> None:
    with streamhouse.open(str(tmp_path / "data")) as sh:
        sh.create_topic("t", 2)
        sh.produce("t", b"v", partition=0, acks="durable")  # fetches serve the durable end
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        service = transport.service

        async def fetch(isolation: int) -> dict[str, object]:
            down = await open_metadata_store(service.metadata.url)
            await down.close()  # a real store that answers StorageUnavailableError from now on
            handlers = Handlers(service, Node(0, "127.0.0.1", 9092), committed=CommittedReads(down))
            return await handlers.fetch(_body(isolation, 20_000), 11, Context("c", "127.0.0.1"))

        started = time.monotonic()
        committed = transport._run(fetch(1))
        assert time.monotonic() - started < 10  # answered at once, not after the long-poll's MaxWaitMs
        parts = committed["responses"][0]["partitions"]  # type: ignore[index]
        assert [p["error_code"] for p in parts] == [codes.KAFKA_STORAGE_ERROR] * 2
        assert all(p["records"] == b"" for p in parts)
        # read_uncommitted does not need the view: the same store outage does not touch it.
        uncommitted = transport._run(fetch(0))
        parts = uncommitted["responses"][0]["partitions"]  # type: ignore[index]
        assert [p["error_code"] for p in parts] == [0, 0] and parts[0]["records"]
