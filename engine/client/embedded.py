"""The whole engine in this process: an AgentService on an event loop in a background
thread (docs/DESIGN.md §1), driven synchronously. No network, no server to start."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from streamhouse.agent.config import AgentConfig
from streamhouse.api.committed_front import read_committed
from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import Acks, FetchResult, GroupDescription, GroupOffset, ProduceResult, TopicDescription
from streamhouse.auth.admin import AuthAdmin
from streamhouse.client.forward import forward_to_leader
from streamhouse.node import AgentNode
from streamhouse.storage.errors import (
    AddressInUseError,
    BackpressureError,
    InvalidInputError,
    QueryCancelledError,
    StreamHouseError,
)
from streamhouse.storage.metadata.isolation import READ_COMMITTED, parse_isolation, reading
from streamhouse.storage.metadata.txn_reads import shared_reads
from streamhouse.storage.model import TopicInfo

if TYPE_CHECKING:  # the Kafka codecs (cramjam, zstandard) load only when a listener starts
    from streamhouse.kafka.server import KafkaServer

T = TypeVar("T")
log = logging.getLogger(__name__)
_WAKE_S = 0.1


class EmbeddedTransport:
    def __init__(self, config: AgentConfig, *, retry_for_s: float = 120.0) -> None:
        self.retry_for_s = retry_for_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="streamhouse-embedded", daemon=True)
        self._thread.start()
        self._closed = False
        # Kafka listeners on this engine (open(kafka_port=...), serve_kafka): closed before it.
        self.kafka_servers: list[KafkaServer] = []
        try:
            # The agent and its jobs (engine/node/), as the agent server runs them.
            self.node = self._run(AgentNode.start(config, forward=forward_to_leader))
        except BaseException:
            self._stop_loop()
            raise
        self.service = self.node.service
        self.config = self.service.config
        # Every SDK operation goes through the front-end contract (engine/api/contract.py), as the
        # gRPC servicers do; the node itself is only built, wired and closed here.
        # Fetches read committed (engine/api/committed_front.py), as through gRPC and REST.
        self.front: FrontEnd = read_committed(self.service, shared_reads(self.service.manager.metadata))
        # A notebook or script that never closes still gets its buffers flushed and leases
        # released. It must run before the thread pools shut down at interpreter exit, which
        # only threading's own exit hooks do (atexit runs after them).
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            ref = weakref.ref(self)

            def close_at_exit() -> None:
                transport = ref()
                if transport is not None:
                    transport.close()

            register(close_at_exit)

    def run_admin(self, work: Callable[[AuthAdmin], Coroutine[Any, Any, T]]) -> T:
        """Organisations and API keys on this engine's metadata store (engine/client/admin.py)."""
        return self._run(work(AuthAdmin(self.service.manager.metadata)))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise StreamHouseError("the embedded engine is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def start_kafka(self, *, port: int, host: str | None = None, advertised: str | None = None) -> KafkaServer:
        """A Kafka listener on this engine's loop (port 0: any free port), on the engine's
        host setting unless `host` is given; `close()` stops it."""
        from streamhouse.kafka.server import KafkaServer

        if not 0 <= port <= 65535:
            raise InvalidInputError(f"kafka_port must be 0 (any free port) or a port up to 65535, not {port}")
        bind = host or self.config.host
        server = KafkaServer(self.service, host=bind, port=port, advertised=advertised)
        try:
            self._run(server.start())
        except OSError as exc:
            self._run(server.close())
            raise AddressInUseError(f"cannot listen on {bind}:{port} (Kafka): {exc.strerror}") from None
        except BaseException:
            self._run(server.close())
            raise
        self.kafka_servers.append(server)
        return server

    def stop_kafka(self, server: KafkaServer) -> None:
        if server in self.kafka_servers:
            self.kafka_servers.remove(server)
            self._run(server.close())

    @property
    def kafka_bootstrap(self) -> str | None:
        """host:port of the first Kafka listener, for `bootstrap.servers`; None when none runs."""
        if not self.kafka_servers:
            return None
        server = self.kafka_servers[0]
        host, port = server.advertised or (server.host, server.port)
        return f"{host}:{port}"

    def create_topic(
        self, name: str, partitions: int, config: Mapping[str, str], value_schema: str | None
    ) -> TopicInfo:
        return self._run(self.front.create_topic(name, partitions, config, value_schema))

    def list_topics(self) -> list[TopicInfo]:
        return self._run(self.front.list_topics())

    def describe_topic(self, name: str) -> TopicDescription:
        return self._run(self.front.describe_topic(name))

    def delete_topic(self, name: str) -> None:
        self._run(self.front.delete_topic(name))

    def alter_topic(
        self, name: str, set_config: Mapping[str, str], reset: Sequence[str], add_partitions: int | None
    ) -> TopicInfo:
        return self._run(self.front.alter_topic(name, set_config, reset, add_partitions))

    def produce(self, topic: str, partition: int, batch: pa.RecordBatch, acks: Acks) -> list[ProduceResult]:
        # Backpressure is waited out here, as the remote transport does: the buffers drain as
        # segments are written. Nothing was appended when it is raised, so a retry is safe.
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        while True:
            try:
                return self._run(self.front.produce(topic, partition, batch, acks))
            except BackpressureError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int,
        max_wait_ms: int,
        min_bytes: int = 1,
        isolation: str = READ_COMMITTED,
    ) -> FetchResult:
        level = parse_isolation(isolation, "isolation")

        async def fetch() -> FetchResult:
            with reading(level):  # read committed unless asked otherwise (api/committed_front.py)
                return await self.front.fetch(
                    topic, partition, offset, max_records=max_records, max_wait_ms=max_wait_ms, min_bytes=min_bytes
                )

        return self._run(fetch())

    def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        self._run(self.front.commit_offsets(group, topic, offsets))

    def fetch_offsets(self, group: str, topic: str) -> list[GroupOffset]:
        return self._run(self.front.fetch_offsets(group, topic))

    def list_groups(self) -> list[str]:
        return self._run(self.front.list_groups())

    def describe_group(self, group: str) -> GroupDescription:
        return self._run(self.front.describe_group(group))

    def sql(self, query: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        if self._closed:
            raise StreamHouseError("the embedded engine is closed")
        future = asyncio.run_coroutine_threadsafe(self.front.sql(query, settings), self._loop)
        try:
            while True:
                # Short waits, so Ctrl-C is seen while the statement runs even where the signal
                # did not interrupt the wait (it arrived on another thread).
                try:
                    return future.result(timeout=_WAKE_S)
                except TimeoutError:
                    if future.done():  # the statement's own QueryTimeoutError is a TimeoutError
                        raise
                    if self._closed:  # closed from another thread: the loop will not finish it
                        raise QueryCancelledError("the embedded engine was closed while the statement ran") from None
                except concurrent.futures.CancelledError:
                    raise QueryCancelledError("the statement was cancelled before it finished") from None
        except BaseException:
            # Ctrl-C (or any exception raised into this thread) while the statement runs: cancel
            # its task on the engine's loop, which drops the DataFusion stream mid-operator.
            future.cancel()
            raise

    def close(self) -> None:
        """Flush every partition into segments, release leases, stop the loop thread."""
        if self._closed:
            return
        try:
            # Listeners first: no Kafka request may reach a service that is closing.
            for server in list(self.kafka_servers):
                try:
                    self.stop_kafka(server)
                except Exception:  # the engine must still flush and release its leases
                    log.exception("closing the Kafka listener on %s:%s failed", server.host, server.port)
            self._run(self.node.close(flush=True))
        finally:
            self._closed = True
            self._stop_loop()
