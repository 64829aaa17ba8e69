"""The Kafka wire-protocol listener of one agent: asyncio TCP, one task per connection.

A connection (connection.py: whole frames in, answer bytes out) reads a 4-byte size,
refuses sizes over `max_request_bytes` before reading them, decodes the frame and answers
in request order (Kafka clients rely on ordered
responses per connection). Anything malformed closes that connection only; nothing it
sent was written, and other connections are untouched. An ApiVersions request of an
unknown version is answered in v0 format so the client can retry with one we know.

Requests are pipelined: each is *applied* before the next frame is read (a Produce once its
records have their offsets, Context.applied; any other request once it is answered), and a
writer sends the answers in request order. So a client's in-flight acks=all produces share
one segment commit instead of waiting for one each, while order stays Kafka's. At most
`max_in_flight` answers wait per connection; past that no further request is taken (the
connection buffers at most its limit of whole frames, then stops reading the socket).

Every handler works on the front-end contract (engine/api/contract.py, FrontEnd) alone. What
is Kafka's own stays here, on a narrow named dependency (KafkaNode): the metadata store that
holds its broker registrations (registry.py) and group-coordinator leases (group_leases.py),
and the agent id and lease timing they are renewed with. The group coordinator's members and
the idempotent producers' sequences (idempotence.py) live in this listener's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from streamhouse.agent.config import AgentConfig
from streamhouse.api.contract import FrontEnd
from streamhouse.api.guarded import GuardedFrontEnd
from streamhouse.api.quota_front import metered
from streamhouse.kafka.answers import SettledAtSend, answer_frame
from streamhouse.kafka.connection import Frame, FrameConnection
from streamhouse.kafka.errors import KafkaProtocolError, UnsupportedVersionError
from streamhouse.kafka.group_leases import GroupLeases
from streamhouse.kafka.groups import Coordinator
from streamhouse.kafka.handlers import Context, Handler, Handlers, Node
from streamhouse.kafka.handlers_acl import AclHandlers
from streamhouse.kafka.handlers_admin import AdminHandlers
from streamhouse.kafka.handlers_groups import GroupHandlers
from streamhouse.kafka.handlers_produce import ProduceHandlers
from streamhouse.kafka.handlers_txn import OrgReads, TxnHandlers
from streamhouse.kafka.protocol.api import (
    DEFAULT_MAX_REQUEST_BYTES,
    decode_request,
    decode_request_header,
    encode_response,
    unsupported_api_versions_response,
)
from streamhouse.kafka.registry import BrokerRegistry
from streamhouse.kafka.sasl.gate import GatedFrames, SaslConnection, SaslGate
from streamhouse.kafka.throttle import KafkaThrottle, Mute, with_throttle
from streamhouse.kafka.txn_coordinator import LEASE_PREFIX, TxnCoordinator
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.txn_reads import shared_reads

if TYPE_CHECKING:
    import pyarrow as pa

    from streamhouse.auth import Authenticator
    from streamhouse.auth.quota_gate import QuotaGate
    from streamhouse.auth.quota_storage import StorageQuotas

log = logging.getLogger(__name__)
_API_VERSIONS = 18
_PRODUCE = 0
# Reads that must see every Produce sent before them on the same connection (Fetch,
# ListOffsets): a Kafka broker handles one request per connection at a time, so a read behind
# an acks=all produce sees its records; ours waits for those produces to be answered first.
_READS_AFTER_WRITES = frozenset({1, 2})
DEFAULT_MAX_IN_FLIGHT = 32
# What the reader hands the writer: a request's answer to come, a failure to raise after the
# answers before it are written, or None at the end of the stream.
_Answer = bytes | SettledAtSend | None
_Item = asyncio.Task[_Answer] | BaseException | None


class KafkaNode(FrontEnd, Protocol):
    """The agent as the Kafka listener needs it: the front-end contract for every record,
    topic, offset and group operation, plus Kafka's own shared state outside the contract.
    Only server.py touches the two extras (for BrokerRegistry and GroupLeases); handlers get
    the contract alone."""

    @property
    def metadata(self) -> MetadataStore:
        """Where kafka-broker/<agent> and kafka-group/<group> leases are held."""
        ...

    @property
    def config(self) -> AgentConfig:
        """agent_id, lease_ttl_ms, renew_interval_ms for those leases."""
        ...

    async def append_control(self, topic: str, partition: int, batch: pa.RecordBatch) -> int:
        """A transaction's COMMIT/ABORT marker appended to a partition (txn_markers.py): past the
        produce checks, which refuse the control header."""
        ...


def _resolve(future: asyncio.Future[None], *_: object) -> None:
    if not future.done():
        future.set_result(None)


class KafkaServer:
    def __init__(
        self,
        service: KafkaNode,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        advertised: str | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        tls: ssl.SSLContext | None = None,
        authenticator: Authenticator | None = None,
        max_reauth_ms: int = 0,
        quotas: QuotaGate | None = None,
        storage_quotas: StorageQuotas | None = None,
    ) -> None:
        # all that the handlers get; with SASL, behind the ACL check (engine/api/guarded.py)
        self.front: FrontEnd = service if authenticator is None else GuardedFrontEnd(service)
        self.front = metered(self.front, storage_quotas)  # storage/partition quotas (engine/api/quota_front.py)
        self._acls = None if authenticator is None else authenticator.acls
        self._node = service  # Kafka's own state (KafkaNode): registry and group leases only
        self.host = host
        self.port = port
        # host:port told to clients (Metadata, FindCoordinator) when a proxy or NAT sits in between.
        self.advertised: tuple[str, int] | None = None
        if advertised:
            host_part, _, port_part = advertised.rpartition(":")
            if not host_part or not port_part.isdigit():
                raise InvalidInputError(f"the Kafka advertised address must be host:port, not {advertised!r}")
            self.advertised = (host_part, int(port_part))
        self.max_request_bytes = max_request_bytes
        self.tls = tls  # clients' security.protocol=SSL (engine/api/tls.py); the advertised address stays
        if max_in_flight < 1:
            raise InvalidInputError(f"the Kafka requests in flight per connection must be >= 1, not {max_in_flight}")
        self.max_in_flight = max_in_flight
        # SASL (engine/kafka/sasl/): with an authenticator, every connection logs in first.
        self.sasl = (
            None if authenticator is None else SaslGate(authenticator, self._node.metadata, max_reauth_ms=max_reauth_ms)
        )
        # Rate quotas (issue 15, throttle.py): answered with throttle_time_ms, then the connection is muted.
        self.throttle = None if quotas is None else KafkaThrottle(quotas)
        self.handlers: dict[int, Handler] = {}
        self.coordinator = Coordinator()
        self.registry: BrokerRegistry | None = None
        self.group_leases: GroupLeases | None = None
        self.txn_leases: GroupLeases | None = None
        self.txn: TxnCoordinator | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listens; returns the bound port (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        host, port = self.advertised or (self.host, self.port)
        config = self._node.config
        self.registry = BrokerRegistry(
            self._node.metadata, config.agent_id, host, port, ttl_ms=config.lease_ttl_ms,
            renew_ms=config.renew_interval_ms,
        )  # fmt: skip
        await self.registry.start()
        node = Node(self.registry.me.node_id, host, port)
        data = Handlers(self.front, node, self.registry)
        # ApiVersions advertises exactly the keys of this one table.
        self.group_leases = GroupLeases(self.registry, self.coordinator.drop)
        self.group_leases.start()
        data.by_key.update(GroupHandlers(self.front, node, self.coordinator, self.group_leases).by_key)
        data.by_key.update(AdminHandlers(self.front).by_key)
        data.by_key.update(AclHandlers(self._node.metadata, self._acls).by_key)  # 29-31; SECURITY_DISABLED sans SASL
        self._start_transactions(data)
        if self.sasl is not None:
            data.by_key.update(self.sasl.advertised)  # ApiVersions lists SaslHandshake/SaslAuthenticate
        self.handlers = data.by_key
        self.coordinator.start()
        log.info("kafka protocol listening on %s:%s", self.host, self.port)
        return self.port

    def _start_transactions(self, data: Handlers) -> None:
        """Transactions (issue 18): a coordinator per transactional id leased as kafka-txn/<id>,
        transactional batches on the produce path, read_committed fetches."""
        assert self.registry is not None
        reads = shared_reads(self._node.metadata)
        # Under SASL, requests name topics in their org (OrgReads maps them to stored names).
        data.committed = reads if self.sasl is None else OrgReads(reads)
        self.txn_leases = GroupLeases(self.registry, lambda _tid: None, prefix=LEASE_PREFIX)
        self.txn_leases.start()
        # COMMIT/ABORT markers go through the agent's own append (txn_markers.py), past the produce checks.
        markers = self._node.append_control
        self.txn = TxnCoordinator(
            self._node.metadata, self.front.new_producer_id, self.txn_leases, reads.ended, markers
        )
        self.txn.start()
        produce = ProduceHandlers(self.front, txn=reads)
        data.by_key.update(produce.by_key)
        txn = TxnHandlers(self.txn, self.registry.me, data.by_key[10], produce.init_producer_id,
                          self.txn_leases.coordinator)  # fmt: skip
        data.by_key.update(txn.by_key)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.coordinator.close()
        if self.txn is not None:
            await self.txn.close()
        if self.txn_leases is not None:
            await self.txn_leases.close()
        if self.group_leases is not None:
            await self.group_leases.close()
        if self.registry is not None:
            await self.registry.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def _connection(self) -> FrameConnection:
        if self.sasl is not None:
            return GatedFrames(self.max_request_bytes, self._opened, self.sasl.pre_auth_max_frame)
        return FrameConnection(self.max_request_bytes, self._opened)

    def _opened(self, conn: FrameConnection) -> None:
        task = asyncio.get_running_loop().create_task(self._accept(conn))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _accept(self, conn: FrameConnection) -> None:
        peer = conn.peer
        try:
            host = peer[0] if isinstance(peer, tuple) else str(peer)
            await self._serve(conn, host)
        except KafkaProtocolError as exc:
            log.warning("kafka connection %s closed: %s", peer, exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except asyncio.CancelledError:
            # close() cancels open connections; ending normally keeps asyncio's stream callback
            # from logging each one as an error.
            pass
        except Exception:  # a bug or an unmapped storage failure: this connection only
            log.exception("kafka connection %s failed", peer)
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    async def _serve(self, conn: FrameConnection, host: str) -> None:
        """Reads and applies requests in order while a writer answers them in order; returns
        when the client has gone and every answer is written, raises what closes it."""
        queue: asyncio.Queue[_Item] = asyncio.Queue()  # bounded by `slots`
        slots = asyncio.Semaphore(self.max_in_flight)  # taken per request, given back once answered
        requests: set[asyncio.Task[_Answer]] = set()
        sasl = None if self.sasl is None or not isinstance(conn, GatedFrames) else self.sasl.connection(conn.widen)
        reading = asyncio.create_task(self._read(conn, host, queue, requests, slots, sasl, Mute()))
        writing = asyncio.create_task(self._write(conn, queue, slots))
        try:
            done, _ = await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_COMPLETED)
            if writing not in done and reading.exception() is None:
                await writing  # the reader has queued its last item: let the answers out
            for side in (writing, reading):
                if side.done():
                    side.result()  # the failure that closes the connection, if any
        finally:
            # The writer stopped (a failure, or the server's close): nothing else will be
            # answered, so requests still running are cancelled and awaited, never left pending.
            reading.cancel()
            writing.cancel()
            for task in requests:
                task.cancel()
            await asyncio.gather(reading, writing, *requests, return_exceptions=True)

    async def _read(
        self,
        conn: FrameConnection,
        host: str,
        queue: asyncio.Queue[_Item],
        requests: set[asyncio.Task[_Answer]],
        slots: asyncio.Semaphore,
        sasl: SaslConnection | None = None,
        mute: Mute | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        produces: set[asyncio.Task[_Answer]] = set()  # applied, not yet answered
        while True:
            if mute is not None:
                await mute.wait()  # over a rate quota (KIP-219): no request is read while muted
            await slots.acquire()  # max_in_flight answers pending: no further request is taken
            try:
                # sizes over max_request_bytes refused unread; before a SASL login, its limits
                read = conn.read_frame()
                frame = await (read if sasl is None or sasl.authenticated else sasl.before_deadline(read))
            except KafkaProtocolError as exc:
                queue.put_nowait(exc)
                return
            if frame is None:
                queue.put_nowait(None)  # the client went away: answer what it sent, then close
                return
            key = _api_key(frame)
            if produces and key in _READS_AFTER_WRITES:
                await asyncio.wait(set(produces))  # reads the high watermark only after them
            applied: asyncio.Future[None] = loop.create_future()
            done = functools.partial(_resolve, applied)
            task = asyncio.create_task(self.respond(frame, host, done, sasl, mute, conn.client_closed))
            if key == _PRODUCE:
                produces.add(task)
                task.add_done_callback(produces.discard)
            task.add_done_callback(functools.partial(_resolve, applied))  # any other API: applied when answered
            requests.add(task)
            task.add_done_callback(requests.discard)
            queue.put_nowait(task)
            await applied  # Kafka's order: this request is applied before the next is read
            if task.done() and not task.cancelled() and task.exception() is not None:
                return  # nothing after a failed request is applied; the writer raises it
            if sasl is not None and sasl.closing:
                await sasl.linger()  # a refused login: its answer goes out, then the connection closes
                queue.put_nowait(None)
                return

    async def _write(self, conn: FrameConnection, queue: asyncio.Queue[_Item], slots: asyncio.Semaphore) -> None:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            response = answer_frame(await item)  # settled now: nothing awaited before the write
            if response is not None:
                conn.write(response)
                await conn.drain()
            slots.release()

    async def respond(
        self,
        frame: bytes | bytearray | memoryview,
        client_host: str = "",
        applied: Callable[[], None] | None = None,
        sasl: SaslConnection | None = None,
        mute: Mute | None = None,
        client_closed: Callable[[], bool] | None = None,
    ) -> bytes | SettledAtSend | None:
        """The response frame for one request frame; None when Kafka sends none (acks=0); or an
        answer its handler settles only as it is written (Context.at_send: `answer_frame`
        gives its bytes). Raises KafkaProtocolError when the connection must be closed. A
        Produce handler calls `applied` once its records have their place (the server then
        reads the next request)."""
        if sasl is not None and sasl.raw:
            return await sasl.raw_token(frame)  # a bare SASL token (after SaslHandshake v0)
        try:
            request = decode_request(frame)
        except UnsupportedVersionError:
            header, _ = decode_request_header(frame)
            if header.api_key == _API_VERSIONS:
                return unsupported_api_versions_response(header.correlation_id, self.handlers)
            raise
        if sasl is not None and not sasl.passes(request.api.key):
            return await sasl.respond(request)  # SASL requests, and what a login must come before
        if sasl is not None and sasl.principal is not None and self._acls is not None:
            await self._acls.enter(sasl.principal)  # this request's ACLs (cached, engine/auth/authorizer.py)
        handler = self.handlers.get(request.api.key)
        if handler is None:
            version = request.header.api_version
            raise UnsupportedVersionError("API not served yet", api=request.api.name, version=version)
        principal = sasl.principal if sasl is not None else None  # for authorisation (issue 15 ACLs)
        context = Context(request.header.client_id or "", client_host, applied, principal, client_closed)
        key, version, correlation = request.api.key, request.header.api_version, request.header.correlation_id
        # Charged before the work (a Produce by its frame): the mute is set before `applied` lets
        # the reader on, so the next request already waits it out. Never a refusal.
        throttle_s = 0.0 if self.throttle is None else await self.throttle.before(key, len(frame), principal)
        if mute is not None:
            mute.extend(throttle_s)
        body = await handler(request.body, version, context)
        if key == _PRODUCE and request.body["acks"] == 0:
            return None
        with_throttle(body, throttle_s)
        if context.at_send:  # a Produce: its quota was charged before the work (throttle.after is Fetch's)
            return SettledAtSend(request.api, version, correlation, body, tuple(context.at_send))
        answer = encode_response(request.api, version, correlation, body)
        if self.throttle is not None:
            fetched_s = await self.throttle.after(key, len(answer), principal)
            if with_throttle(body, fetched_s):  # a Fetch over its quota: the answer says how long
                answer = encode_response(request.api, version, correlation, body)
            if mute is not None:
                mute.extend(fetched_s)
        return answer


def _api_key(frame: Frame) -> int:
    """The request's API key (its header's first int16), -1 for a frame too short to hold one
    (respond refuses it)."""
    return int.from_bytes(frame[:2], "big", signed=True) if len(frame) >= 2 else -1
