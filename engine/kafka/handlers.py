"""Kafka API handlers over the front-end contract (engine/api/contract.py, FrontEnd):
ApiVersions, Metadata, Fetch and ListOffsets (Produce and InitProducerId are in
handlers_produce.py). Each takes a decoded request body and returns a response body (schemas
in protocol/messages_*.py); the server (server.py) does the framing.

StreamHouse errors map to Kafka error codes per partition (the contract's error table), so one
bad partition does not fail the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from streamhouse.api.contract import FrontEnd, error_mapping
from streamhouse.api.types import FetchResult
from streamhouse.auth import Principal
from streamhouse.kafka import errors as codes
from streamhouse.kafka import txn_v2
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.fetch_txn import aborted_transactions, below_stable, encode_fetch
from streamhouse.kafka.protocol.api import api_version_ranges
from streamhouse.kafka.registry import Broker, BrokerRegistry
from streamhouse.kafka.timestamps import log_append_time
from streamhouse.storage.errors import (
    AuthorizationError,
    FencedError,
    InvalidInputError,
    LeaseHeldError,
    StorageUnavailableError,
    StreamHouseError,
)
from streamhouse.storage.metadata.txn_reads import CommittedReads, Stable
from streamhouse.storage.tasks import retrieve

log = logging.getLogger(__name__)
Body = dict[str, Any]
LEADER_NOT_AVAILABLE = 5
_TOPIC_NAMESPACE = uuid.UUID("5f1d0b7e-6a43-4c4b-9a52-6b1a4f0e2c11")

# ListOffsets' special timestamps, and the request version that first allows each (Kafka's
# ReplicaManager.timestampMinSupportedVersion): a partition asking for one at an older version
# is answered UNSUPPORTED_VERSION, the others of the request as usual.
#
# EARLIEST_LOCAL (-4, KIP-405) and LATEST_TIERED (-5, KIP-1005) are about Kafka's tiered
# storage, which splits a partition's log into a remote part (old segments in object storage,
# read through a separate path) and a local part on the broker's disk with a retention of its
# own. A StreamHouse partition is one log: every committed segment is in the object store and
# is read by the same path as the leader's buffered tail (storage/partition/view.py), with one
# retention and nothing ever moved between tiers. That is a Kafka broker without tiered
# storage, and we answer what it answers: -4 is the log start offset (the answer to -2),
# -5 is unknown (offset, timestamp and leader epoch -1). Naming the last segment's end as the
# "tiered" offset would tell tools that offsets below it exist only remotely, and that offsets
# above it are not yet safe in the object store, neither of which is what our segments mean.
LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED, EARLIEST_PENDING_UPLOAD = -1, -2, -3, -4, -5, -6
SPECIAL_TIMESTAMP_VERSIONS = {
    LATEST: 1, EARLIEST: 1, MAX_TIMESTAMP: 7, EARLIEST_LOCAL: 8, LATEST_TIERED: 9,
    EARLIEST_PENDING_UPLOAD: 11,  # KIP-1023: beyond the versions served (protocol/messages_data.py)
}  # fmt: skip
# Other negative values: Kafka searches them as times (the first record); we refuse them as
# unsupported, so a mistyped constant is not answered as "offset 0".
_NEVER = 1 << 15


@dataclass(frozen=True)
class Context:
    """Who sent a request: DescribeGroups shows it per member. `applied`, when set, is called
    by Produce once its records have their offsets (or it failed before), so the server can
    read the connection's next request while this one waits for its acknowledgement.
    `principal`: whom the connection's SASL login speaks for (None without authentication).
    `client_closed()`: whether the client has closed its side of the connection by now.
    `at_send`: what a handler settles only as its answer is written, not when it ends: answers
    go out in request order, so one may wait behind a slower one while the client goes away
    (the server runs them, in order, right before the write; never if the answer is not written)."""

    client_id: str
    client_host: str
    applied: Callable[[], None] | None = None
    principal: Principal | None = None
    client_closed: Callable[[], bool] | None = None
    at_send: list[Callable[[], None]] = dataclasses.field(default_factory=list)


Handler = Callable[[Body, int, Context], Awaitable[Body]]


@dataclass(frozen=True)
class Node:
    """This agent as Kafka clients see it: one broker, leader of every partition."""

    node_id: int
    host: str
    port: int


def error_code(exc: BaseException) -> int:
    """The Kafka error code for a refusal: a Kafka refusal's own, else the contract's table."""
    if isinstance(exc, KafkaProtocolError):
        return exc.error_code
    if isinstance(exc, AuthorizationError) and exc.resource_type == "group":
        return 30  # GROUP_AUTHORIZATION_FAILED (every other denial: 29 TOPIC_AUTHORIZATION_FAILED)
    return error_mapping(exc).kafka


def produce_error_code(exc: StreamHouseError) -> int:
    """A refused partition's Kafka code. A lost leadership or an unreachable store is a
    retriable condition at a Kafka broker (NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR), and
    an idempotent producer depends on it: UNKNOWN_SERVER_ERROR, the contract's code for these,
    is permanent to librdkafka, which then fails the messages and bumps its producer epoch by
    itself, re-sending every message waiting for a retry from sequence 0 of the new epoch,
    including ones this agent had already written under the old one (issue 19, finding 1:
    values in the log 2-7 times). A retry keeps its epoch and sequence, so the sequence check
    (idempotence.py) answers it with the original's offsets or writes it once."""
    if isinstance(exc, FencedError | LeaseHeldError):
        return codes.NOT_LEADER_OR_FOLLOWER
    if isinstance(exc, StorageUnavailableError):
        return codes.KAFKA_STORAGE_ERROR
    return error_code(exc)


def topic_uuid(name: str) -> uuid.UUID:
    """A stable topic id per name: clients (Metadata v10+) cache it and compare."""
    return uuid.uuid5(_TOPIC_NAMESPACE, name)


class Handlers:
    def __init__(
        self,
        front: FrontEnd,
        node: Node,
        registry: BrokerRegistry | None = None,
        committed: CommittedReads | None = None,
    ):
        self.front = front
        self.node = node
        self.registry = registry
        self.committed = committed  # isolation_level=1 (txn_reads.py); None: every reader sees all
        self.by_key: dict[int, Handler] = {
            18: self.api_versions,
            3: self.metadata,
            1: self.fetch,
            2: self.list_offsets,
        }

    async def api_versions(self, body: Body, version: int, ctx: Context) -> Body:
        out: Body = {"error_code": 0, "api_keys": api_version_ranges(self.by_key), "throttle_time_ms": 0}
        if 26 in self.by_key:  # this listener coordinates transactions: version 2 too (txn_v2.py)
            out.update(txn_v2.features())
        return out

    async def metadata(self, body: Body, version: int, ctx: Context) -> Body:
        requested = body["topics"]
        if requested is None or (version == 0 and not requested):
            names = [t.name for t in await self.front.list_topics()]
        else:
            names = [t["name"] for t in requested if t["name"] is not None]
        brokers = {self.node.node_id: (self.node.host, self.node.port)}
        topics = [await self._topic_metadata(name, brokers) for name in names]
        node = self.node
        return {
            "brokers": [{"node_id": n, "host": h, "port": p, "rack": None} for n, (h, p) in sorted(brokers.items())],
            "cluster_id": "streamhouse",
            "controller_id": node.node_id,
            "topics": topics,
        }

    async def _topic_metadata(self, name: str, brokers: dict[int, tuple[str, int]]) -> Body:
        """Each partition's leader is its lease holder's broker (registry.py); this agent when
        nobody holds the lease (it takes it on the first produce). `brokers` collects every
        broker named, for the response's broker list."""
        try:
            info = await self.front.topic(name)
        except StreamHouseError as exc:
            return {"error_code": error_code(exc), "name": name, "topic_id": topic_uuid(name), "partitions": []}
        try:
            return await self._partition_metadata(name, info.partitions, brokers)
        except StorageUnavailableError:
            # The leases are the store's: with it unreachable (a PostgreSQL restart) the topic's
            # leaders are unknown. A retriable topic error, which clients answer by asking again;
            # raised, it closed the connection and cancelled the produces in flight on it.
            return {"error_code": LEADER_NOT_AVAILABLE, "name": name, "topic_id": topic_uuid(name), "partitions": []}

    async def _partition_metadata(self, name: str, count: int, brokers: dict[int, tuple[str, int]]) -> Body:
        leaders = await self.front.partition_leaders(name) if self.registry is not None else ()
        partitions = []
        for p in range(count):
            leader = Broker(self.node.node_id, self.node.host, self.node.port)
            epoch, error = 0, 0
            if self.registry is not None and p < len(leaders):
                epoch = leaders[p].epoch
                found = await self.registry.broker(leaders[p].agent_id) if leaders[p].agent_id else leader
                if found is None:
                    leader, error = Broker(-1, "", 0), LEADER_NOT_AVAILABLE  # its holder has no Kafka listener
                else:
                    leader = found
                    brokers[leader.node_id] = (leader.host, leader.port)
            nodes = [leader.node_id] if leader.node_id >= 0 else []
            partitions.append(
                {"error_code": error, "partition_index": p, "leader_id": leader.node_id, "leader_epoch": epoch,
                 "replica_nodes": nodes, "isr_nodes": nodes}
            )  # fmt: skip
        return {"error_code": 0, "name": name, "topic_id": topic_uuid(name), "partitions": partitions}

    # -- fetch --------------------------------------------------------------------------------
    async def fetch(self, body: Body, version: int, ctx: Context) -> Body:
        wanted = [(t["topic"], p) for t in body["topics"] for p in t["partitions"]]
        deadline = time.monotonic() + max(body["max_wait_ms"], 0) / 1000
        min_bytes = max(body["min_bytes"], 1)
        # Answer once MinBytes are there, a partition fails, or MaxWaitMs has passed. Each
        # round either waits for more data or ends at the deadline, so the loop ends.
        stable: dict[tuple[str, int], int] = {}  # read_committed: each partition's last stable offset
        views: dict[tuple[str, int], Stable] = {}  # read_committed: aborted ranges (fetch_txn.py)
        while True:
            results: dict[tuple[str, int], FetchResult | BaseException] = {}
            for topic, p in wanted:
                results[(topic, p["partition"])] = await self._fetch_one(topic, p, 0, 1)
            shown = results
            if body.get("isolation_level", 0) == 1 and self.committed is not None:
                shown = await self._committed(self.committed, results, stable, views)
            size = sum(r.records.nbytes for r in shown.values() if isinstance(r, FetchResult))
            remaining = deadline - time.monotonic()
            failed = any(not isinstance(r, FetchResult) for r in shown.values())  # or a view the store did not give
            if size >= min_bytes or remaining <= 0 or failed or not wanted:
                break
            await self._wait_for_more(wanted, results, remaining, read_committed=results is not shown)
        responses: dict[str, list[Body]] = {}
        budget = body["max_bytes"] if body["max_bytes"] > 0 else 2**31 - 1
        for topic, p in wanted:
            key = (topic, p["partition"])
            appended = await self._log_append_time(topic)
            data = self._partition_data(
                p["partition"], shown[key], skip=budget <= 0, log_append=appended, view=views.get(key),
                fetch_offset=p["fetch_offset"],
            )  # fmt: skip
            if key in stable and not data["error_code"]:
                data["last_stable_offset"] = stable[key]
            # MaxBytes bounds the whole response, except that the first data goes out whole
            # (Kafka's rule, so a record larger than the limit cannot stall a consumer).
            budget -= len(data["records"] or b"")
            responses.setdefault(topic, []).append(data)
        return {
            "throttle_time_ms": 0,
            "error_code": 0,
            "session_id": 0,  # no fetch sessions: every request is a full fetch
            "responses": [{"topic": t, "partitions": parts} for t, parts in responses.items()],
        }

    @staticmethod
    async def _committed(
        committed: CommittedReads,
        results: dict[tuple[str, int], FetchResult | BaseException],
        stable: dict[tuple[str, int], int],
        views: dict[tuple[str, int], Stable],
    ) -> dict[tuple[str, int], FetchResult | BaseException]:
        """What a read_committed consumer is sent of `results` (txn_reads.py); `stable` gets
        each partition's last stable offset. The wait for more data (`_wait_for_more`) still
        compares the unfiltered results: records held back are not new data."""
        shown: dict[tuple[str, int], FetchResult | BaseException] = {}
        for (topic, partition), result in results.items():
            if not isinstance(result, FetchResult):
                shown[(topic, partition)] = result
                continue
            first = int(result.records.column("offset")[0].as_py()) if result.records.num_rows else result.next_offset
            try:
                upto = result.next_offset if result.records.num_rows else None  # what it must know
                view = await committed.stable(topic, partition, first, upto=upto)
            except StreamHouseError as exc:  # the store is down: this partition's error, not the connection's
                shown[(topic, partition)] = exc
                continue
            stable[(topic, partition)] = view.stable_end(result.readable_end)
            # Aborted records go out with the aborted transactions: the client drops them (fetch_txn.py).
            views[(topic, partition)] = view
            shown[(topic, partition)] = dataclasses.replace(result, records=below_stable(result.records, view))
        return shown

    async def _fetch_one(self, topic: str, p: Body, wait_ms: int, min_bytes: int) -> FetchResult | BaseException:
        try:
            return await self.front.fetch(
                topic, p["partition"], p["fetch_offset"], max_bytes=max(p["partition_max_bytes"], 1),
                max_wait_ms=wait_ms, min_bytes=min_bytes,
            )  # fmt: skip
        except StreamHouseError as exc:
            return exc

    async def _wait_for_more(
        self,
        wanted: list[tuple[str, Body]],
        results: dict[tuple[str, int], FetchResult | BaseException],
        wait_s: float,
        read_committed: bool = False,
    ) -> None:
        """Returns when any partition has more than it had in `results` (the agent's own
        long-poll, one per partition), a transaction ended here (read_committed), or after `wait_s`."""
        tasks: list[asyncio.Future[Any]] = []
        if read_committed and self.committed is not None:
            tasks.append(asyncio.ensure_future(self.committed.moved()))
        for topic, p in wanted:
            had = results[(topic, p["partition"])]
            more = had.records.nbytes + 1 if isinstance(had, FetchResult) else 1
            tasks.append(asyncio.ensure_future(self._fetch_one(topic, p, max(int(wait_s * 1000), 1), more)))
        try:
            await asyncio.wait(tasks, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
                # Not awaited (the answer goes out now); a database call cancelled during a
                # PostgreSQL restart can still fail in its cleanup, which nobody needs to see.
                task.add_done_callback(retrieve)

    async def _log_append_time(self, topic: str) -> bool:
        try:
            return log_append_time((await self.front.topic(topic)).config)
        except StreamHouseError:
            return False  # the partition's own fetch result carries the error

    def _partition_data(
        self,
        partition: int,
        result: FetchResult | BaseException,
        *,
        skip: bool = False,
        log_append: bool = False,
        view: Stable | None = None,
        fetch_offset: int = 0,
    ) -> Body:
        if isinstance(result, BaseException):
            code = error_code(result)
            if isinstance(result, InvalidInputError):  # fetch refuses only offsets outside the log
                code = codes.OFFSET_OUT_OF_RANGE
            elif isinstance(result, StorageUnavailableError):  # retriable: clients refresh metadata, fetch again
                code = codes.KAFKA_STORAGE_ERROR
            # Empty records, not null: Kafka sends an empty set with an error, and librdkafka
            # refuses a null one ("invalid MessageSetSize -1"), retrying the fetch forever.
            return {
                "partition_index": partition, "error_code": code, "high_watermark": -1, "log_start_offset": -1,
                "records": b"",
            }  # fmt: skip
        shown = result.records.num_rows and not skip
        records = encode_fetch(result.records, log_append=log_append, view=view) if shown else b""
        return {
            "partition_index": partition,
            "error_code": 0,
            "high_watermark": result.readable_end,  # the durable end: all a consumer may be served
            "last_stable_offset": result.readable_end,
            "log_start_offset": result.log_start,
            "aborted_transactions": None if view is None else aborted_transactions(result.records, view, fetch_offset),
            "records": records,
        }

    # -- list offsets -------------------------------------------------------------------------
    async def list_offsets(self, body: Body, version: int, ctx: Context) -> Body:
        topics = []
        for topic in body["topics"]:
            committed = self.committed if body.get("isolation_level", 0) == 1 else None
            parts = [await self._list_offset(topic["name"], p, version, committed) for p in topic["partitions"]]
            topics.append({"name": topic["name"], "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}

    async def _list_offset(self, topic: str, p: Body, version: int, committed: CommittedReads | None) -> Body:
        index, ts = p["partition_index"], p["timestamp"]
        out: Body = {"partition_index": index, "error_code": 0, "timestamp": -1, "offset": -1, "leader_epoch": 0}
        if ts < 0 and version < SPECIAL_TIMESTAMP_VERSIONS.get(ts, _NEVER):
            # Kafka's refusal: this partition only, before anything is looked up.
            return dict(out, error_code=codes.UNSUPPORTED_VERSION, leader_epoch=-1)
        try:
            info = await self.front.topic(topic, index)
            if not 0 <= index < info.partitions:
                out["error_code"] = codes.UNKNOWN_TOPIC_OR_PARTITION
            elif ts == LATEST:
                out["offset"] = await self.front.end_offset(topic, index)
                if committed is not None:  # read_committed: the last stable offset (txn_reads.py)
                    out["offset"] = (await committed.stable(topic, index, out["offset"])).stable_end(out["offset"])
            elif ts in (EARLIEST, EARLIEST_LOCAL):
                # The log start (retention moves it past removed segments). A partition is one
                # log (see LATEST_TIERED): where its "local" part starts is where it starts.
                out["offset"] = await self.front.earliest_offset(topic, index)
            elif ts >= 0:
                found = await self.front.offset_for_time(topic, index, ts)
                out["offset"], out["timestamp"] = found.offset, found.timestamp
            elif ts == MAX_TIMESTAMP:
                found = await self.front.max_timestamp_offset(topic, index)
                out["offset"], out["timestamp"] = found.offset, found.timestamp
            elif ts == LATEST_TIERED:
                out["leader_epoch"] = -1  # nothing is tiered: unknown offset, as Kafka answers then
        except StreamHouseError as exc:
            out["error_code"] = error_code(exc)
        return out
