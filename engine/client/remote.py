"""A remote agent (or several) over gRPC. Produce goes to the partition's leader: the first
agent asked either leads it or answers NOT_LEADER with the leader's address, which is
remembered. Retries on NOT_LEADER, fencing, backpressure and unreachable agents are handled
here, so the caller never sees them unless the retry budget runs out."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

import grpc
import pyarrow as pa

from streamhouse.api.tls import ClientTls, grpc_channel
from streamhouse.api.types import Acks, FetchResult, GroupDescription, GroupOffset, ProduceResult, TopicDescription
from streamhouse.client.bearer import checked_api_key, with_api_key
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.rpc import convert
from streamhouse.rpc.convert import MAX_MESSAGE_BYTES, arrow_from_chunks
from streamhouse.rpc.status import error_from_rpc
from streamhouse.storage import topic_config
from streamhouse.storage.errors import (
    AgentUnreachableError,
    BackpressureError,
    FencedError,
    InvalidInputError,
    NotLeaderError,
    QueryCancelledError,
    StorageUnavailableError,
    StreamHouseError,
)
from streamhouse.storage.metadata.isolation import READ_COMMITTED, READ_UNCOMMITTED, parse_isolation
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.records.codec import encode_batch

T = TypeVar("T")
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
_RETRYABLE = (NotLeaderError, FencedError, BackpressureError, StorageUnavailableError)
_MAX_HOPS = 3  # NOT_LEADER redirects followed in a row before backing off (or failing)
# An agent that could not be reached (or timed out) is skipped by address rotation this long,
# so a client given several addresses moves on instead of re-trying a dead one first.
_DOWN_S = 5.0
_DOWN_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class _Stubs:
    def __init__(self, address: str, tls: ClientTls | None, api_key: str | None = None) -> None:
        self.channel = with_api_key(grpc_channel(address, tls, _OPTIONS), api_key)
        self.produce = pbg.ProduceStub(self.channel)
        self.fetch = pbg.FetchStub(self.channel)
        self.admin = pbg.AdminStub(self.channel)
        self.groups = pbg.ConsumerGroupsStub(self.channel)
        self.query = pbg.QueryStub(self.channel)


class RemoteTransport:
    def __init__(
        self,
        addresses: str | Sequence[str],
        *,
        timeout_s: float = 10.0,
        retry_for_s: float = 30.0,
        retries: bool = True,
        compress: bool = False,
        connect_timeout_s: float = 4.0,
        tls: ClientTls | bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        api_key: str | None = None,
    ) -> None:
        """`addresses`: one "host:port" or several (comma-separated or a list); any agent of
        the cluster can answer anything. `timeout_s` bounds one call, `retry_for_s` the whole
        retried operation. retries=False surfaces every failure (at-most-once produce).
        compress: LZ4-compress produce batches and ask for compressed fetch responses. Off by
        default: on a LAN or loopback LZ4 costs more CPU than the bytes it saves.
        connect_timeout_s: until some agent has answered once, addresses where nothing listens
        fail the call after this long (a typo in --bootstrap should not wait out the retry
        budget); after that, an unreachable agent is a failover and gets `retry_for_s`.
        tls: connect over TLS (True: trusting the system's roots; or a ClientTls); tls_ca (a
        PEM CA file to trust), tls_cert + tls_key (a client certificate, for mutual TLS) imply it.
        api_key: `<key_id>.<secret>`, sent on every call (engine/client/bearer.py) to an agent
        started with `--auth api-key`."""
        if isinstance(addresses, str):
            addresses = [a.strip() for a in addresses.split(",") if a.strip()]
        if not addresses:
            raise InvalidInputError("connect() needs at least one agent address, e.g. 'localhost:50051'")
        self.bootstrap = list(addresses)
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.retries = retries
        self.compress = compress
        self.connect_timeout_s = connect_timeout_s
        self.tls = _client_tls(tls, tls_ca, tls_cert, tls_key)
        self._api_key = checked_api_key(api_key)  # a typo fails here, not at the first call
        self._reached = False  # some agent answered at least once
        self._stubs: dict[str, _Stubs] = {}
        self._leaders: dict[tuple[str, int], str] = {}
        # The agent that last answered a partition's call (its address): for acks=leader, the one
        # whose WAL alone holds the records until they reach a segment (the chaos harness's
        # disk-loss check reads it).
        self.answered: dict[tuple[str, int], str] = {}
        self._next = itertools.count()
        self._down: dict[str, float] = {}  # address -> monotonic time it last failed to answer
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------
    def _at(self, address: str) -> _Stubs:
        with self._lock:
            stubs = self._stubs.get(address)
            if stubs is None:
                stubs = self._stubs[address] = _Stubs(address, self.tls, self._api_key)
            return stubs

    def _any_address(self) -> str:
        """The next bootstrap address in rotation, skipping ones that recently failed to answer."""
        return self._next_address(()) or self.bootstrap[next(self._next) % len(self.bootstrap)]

    def _next_address(self, avoid: Collection[str]) -> str | None:
        """The next address not in `avoid`, preferring ones not recently down; None if none."""
        start = next(self._next)
        order = [self.bootstrap[(start + i) % len(self.bootstrap)] for i in range(len(self.bootstrap))]
        now = time.monotonic()
        fresh = [a for a in order if a not in avoid and now - self._down.get(a, -_DOWN_S) >= _DOWN_S]
        rest = [a for a in order if a not in avoid]
        candidates = fresh or rest
        return candidates[0] if candidates else None

    def _failed_at(self, address: str, err: grpc.RpcError, route: tuple[str, int] | None) -> bool:
        """Note an agent that did not answer (it is skipped for a while and stops being the
        remembered leader); returns whether the call never reached it (nothing was sent)."""
        code = err.code() if isinstance(err, grpc.Call) else None
        if code in _DOWN_CODES:
            self._down[address] = time.monotonic()
            if route is not None and self._leaders.get(route) == address:
                self._leaders.pop(route, None)
        return _never_connected(err)

    def _call(self, fn: Callable[[_Stubs], T], *, route: tuple[str, int] | None = None) -> T:
        """Run `fn` against the routed agent (the partition's leader when known), retrying
        retryable failures on the leader it names or on the next bootstrap address."""
        started = time.monotonic()
        deadline = started + self.retry_for_s
        delay = 0.05
        address = self._leaders.get(route) if route else None
        address = address or self._any_address()
        hops = 0
        unreached: set[str] = set()
        while True:
            try:
                result = fn(self._at(address))
                self._reached = True
                if route is not None:
                    self.answered[route] = address
                return result
            except grpc.RpcError as err:
                exc = error_from_rpc(err)
                if not _no_agent(err):
                    self._reached = True  # an agent answered, if only with an error
                elif not self._reached and time.monotonic() - started >= self.connect_timeout_s:
                    raise self._unreachable(err) from None
                if self._failed_at(address, err, route):
                    # The call never reached that agent, so trying the next address is not a
                    # retry (even retries=False may: nothing can be written twice). Each
                    # address once per call.
                    unreached.add(address)
                    other = self._next_address(unreached)
                    if other is not None and time.monotonic() <= deadline:
                        address = other
                        continue
                    if not self._reached and (not self.retries or time.monotonic() - started >= self.connect_timeout_s):
                        # Never any answer from any address: a wrong or dead --bootstrap, not a failover.
                        raise self._unreachable(err) from None
            named = exc.leader if isinstance(exc, NotLeaderError) and exc.leader != address else ""
            # Going to a named leader is routing, not a retry: an agent refuses a one-partition
            # (routed) call before writing anything, so even retries=False follows it. A few hops
            # at most in a row: two agents with stale views could name each other.
            if named and (route or self.retries) and hops < _MAX_HOPS and time.monotonic() <= deadline:
                hops += 1
                address = named
                if route:
                    self._leaders[route] = named
                continue
            if not self.retries or not isinstance(exc, _RETRYABLE) or time.monotonic() > deadline:
                raise exc
            if route:
                self._leaders.pop(route, None)
            # Before any agent answered, never sleep past the connect budget.
            left = started + self.connect_timeout_s - time.monotonic()
            # A rate quota says how long to wait (retry-after-ms): its throttle time, not our guess.
            wait = getattr(exc, "retry_after_s", 0.0) or delay
            time.sleep(wait if self._reached else min(wait, max(0.0, left)))
            delay = min(delay * 2, 1.0)
            hops = 0
            address = self._any_address()

    def _unreachable(self, err: grpc.RpcError) -> AgentUnreachableError:
        details = (err.details() if isinstance(err, grpc.Call) else "") or str(err)
        # gRPC's text ends with the OS reason ("Connection refused"); keep only that part.
        reason = details.rsplit(": ", 1)[-1].strip(" ]") or "unavailable"
        return AgentUnreachableError(f"cannot reach an agent at {', '.join(self.bootstrap)}: {reason}")

    # -- topics ---------------------------------------------------------------------------------
    def create_topic(
        self, name: str, partitions: int, config: Mapping[str, str], value_schema: str | None
    ) -> TopicInfo:
        request = pb.CreateTopicRequest(
            name=name, partitions=partitions, config=dict(config), value_schema=value_schema or ""
        )
        msg = self._call(lambda s: s.admin.CreateTopic(request, timeout=self.timeout_s))
        return convert.topic_from_pb(msg).info

    def list_topics(self) -> list[TopicInfo]:
        msg = self._call(lambda s: s.admin.ListTopics(pb.ListTopicsRequest(), timeout=self.timeout_s))
        return [convert.topic_from_pb(t).info for t in msg.topics]

    def describe_topic(self, name: str) -> TopicDescription:
        msg = self._call(lambda s: s.admin.DescribeTopic(pb.DescribeTopicRequest(name=name), timeout=self.timeout_s))
        description = convert.topic_from_pb(msg)
        for p in description.partitions:
            if p.leader:
                self._leaders[(name, p.partition)] = p.leader
            else:
                # No live leader any more: a remembered one is stale (dead, or frozen, where
                # each call would wait out its whole timeout before the SDK moved on).
                self._leaders.pop((name, p.partition), None)
        return description

    def delete_topic(self, name: str) -> None:
        self._call(lambda s: s.admin.DeleteTopic(pb.DeleteTopicRequest(name=name), timeout=self.timeout_s))
        for key in [k for k in self._leaders if k[0] == name]:
            self._leaders.pop(key, None)

    def alter_topic(
        self, name: str, set_config: Mapping[str, str], reset: Sequence[str], add_partitions: int | None
    ) -> TopicInfo:
        # Types are checked here, the keys by the agent: protobuf would refuse a non-string value
        # with a TypeError, and proto3 has no "unset" int (0 = no partitions to add), so an
        # explicit 0 must be refused before it is sent.
        change = topic_config.alter_shape(name, set_config, reset, add_partitions)
        request = pb.AlterTopicRequest(
            name=name,
            set_config=dict(change.set_config),
            reset_config=list(change.reset),
            add_partitions=change.add_partitions,
        )
        msg = self._call(lambda s: s.admin.AlterTopic(request, timeout=self.timeout_s))
        return convert.topic_from_pb(msg).info

    # -- records --------------------------------------------------------------------------------
    def produce(self, topic: str, partition: int, batch: pa.RecordBatch, acks: Acks) -> list[ProduceResult]:
        request = pb.ProduceRequest(
            topic=topic,
            partition=partition,
            acks=convert.ACKS_TO_PB[acks],
            batch=encode_batch(batch, compress=self.compress),
        )
        # acks=durable waits for a segment upload: give it the retry budget, not one call's.
        timeout = max(self.timeout_s, self.retry_for_s) if acks == "durable" else self.timeout_s
        route = (topic, partition) if partition >= 0 else None
        msg = self._call(lambda s: s.produce.Produce(request, timeout=timeout), route=route)
        return [ProduceResult(topic, a.partition, a.base_offset, a.record_count) for a in msg.appends]

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
        uncommitted = parse_isolation(isolation, "isolation") == READ_UNCOMMITTED
        request = pb.FetchRequest(
            topic=topic,
            partition=partition,
            offset=offset,
            max_records=max_records,
            max_wait_ms=max_wait_ms,
            min_bytes=min_bytes,
            format=pb.FetchRequest.FORMAT_BATCH,
            compress=self.compress,
            isolation_level=pb.FetchRequest.READ_UNCOMMITTED if uncommitted else pb.FetchRequest.READ_COMMITTED,
        )
        timeout = self.timeout_s + max_wait_ms / 1000
        msg = self._call(lambda s: s.fetch.Fetch(request, timeout=timeout), route=(topic, partition))
        return convert.fetch_from_pb(msg)

    # -- consumer groups ------------------------------------------------------------------------
    def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        request = pb.CommitOffsetsRequest(group=group, topic=topic, offsets=dict(offsets))
        self._call(lambda s: s.groups.CommitOffsets(request, timeout=self.timeout_s))

    def fetch_offsets(self, group: str, topic: str) -> list[GroupOffset]:
        request = pb.FetchOffsetsRequest(group=group, topic=topic)
        msg = self._call(lambda s: s.groups.FetchOffsets(request, timeout=self.timeout_s))
        return [convert.offset_from_pb(o) for o in msg.offsets]

    def list_groups(self) -> list[str]:
        return list(self._call(lambda s: s.groups.ListGroups(pb.ListGroupsRequest(), timeout=self.timeout_s)).groups)

    def describe_group(self, group: str) -> GroupDescription:
        request = pb.DescribeGroupRequest(group=group)
        return convert.group_from_pb(self._call(lambda s: s.groups.DescribeGroup(request, timeout=self.timeout_s)))

    def sql(self, query: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        request = pb.ExecuteSqlRequest(sql=query, settings=dict(settings or {}))
        # Not retried once an agent may have run it: a statement may be DDL, and a query's cost
        # should not silently double. An agent that could not be reached never saw it, so the
        # next address is tried then (every address once). No client deadline: the agent
        # enforces the statement's time limit and answers DEADLINE_EXCEEDED itself.
        for attempt in range(len(self.bootstrap)):
            call = self._at(self._any_address()).query.ExecuteSql(request, timeout=None)
            try:
                chunks = [c.ipc for c in call]
                return arrow_from_chunks(chunks)
            except grpc.RpcError as err:
                if attempt + 1 == len(self.bootstrap) or not _never_connected(err):
                    if _never_connected(err) and not self._reached:
                        raise self._unreachable(err) from None
                    raise _sql_error(err) from None
            except BaseException:
                # Ctrl-C while waiting (grpc wakes every 100 ms, so it is delivered): cancel the
                # call, which cancels the statement on the agent, then let it propagate.
                call.cancel()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        with self._lock:
            for stubs in self._stubs.values():
                stubs.channel.close()
            self._stubs.clear()


def _client_tls(tls: ClientTls | bool, ca: str | None, cert: str | None, key: str | None) -> ClientTls | None:
    if isinstance(tls, ClientTls):
        if ca or cert or key:
            raise InvalidInputError("give either tls=ClientTls(...) or tls_ca/tls_cert/tls_key, not both")
        return tls
    if tls or ca or cert or key:
        return ClientTls.load(ca, cert, key)  # the files are read (and checked) once, here
    return None


def _sql_error(err: grpc.RpcError) -> StreamHouseError:
    exc = error_from_rpc(err)
    code = err.code() if isinstance(err, grpc.Call) else None
    if code == grpc.StatusCode.CANCELLED and type(exc) is StreamHouseError:
        # Cancelled without the agent naming an error: the call was cancelled (this client's
        # channel closed under it, or the agent shut down mid-statement).
        return QueryCancelledError(f"the statement was cancelled before it finished: {err.details() or 'CANCELLED'}")
    return exc


def _no_agent(err: grpc.RpcError) -> bool:
    """Nothing answered at that address: refused, unresolvable, or never connected."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = ((err.details() if isinstance(err, grpc.Call) else "") or "").lower()
    return _never_connected(err) or (code == grpc.StatusCode.UNAVAILABLE and "resolving" in details)


def _never_connected(err: grpc.RpcError) -> bool:
    """The call failed before reaching any agent (nothing was sent), as opposed to an agent
    lost mid-call, which may have run it."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else "") or ""
    return code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in details.lower()
