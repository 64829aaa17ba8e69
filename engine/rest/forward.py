"""REST produce to a partition another agent leads: the records are produced there over gRPC,
so a REST client can send to any agent of a cluster (issue 13), as the SDK's remote transport
follows NOT_LEADER (engine/client/remote.py) and the agent hands held WAL records to a new
leader (engine/agent/forward.py, engine/client/forward.py).

The agent answers NotLeaderError (with the leader's gRPC address) before writing anything, so
the first attempt is always safe to redirect. A batch for one partition goes to its leader
whole, with the request's acks; the leader's answer (offsets, or its error: backpressure, a
refused record…) is the REST answer. A batch the agent partitions itself (no partition_id) that
meets a partition led elsewhere is split here with the agent's own partitioner (Kafka's murmur2
on keys, round robin without keys, engine/api/partitioner.py), and each partition's share is
produced locally or at its leader. Every share is still all-or-nothing, but shares on different
agents cannot commit together: if one fails after others were stored, the error says which
partitions already hold their records (the client must not resend those).

Redirects are bounded (a leader that moved again is followed up to _MAX_HOPS times), so a
leadership that keeps moving ends in the agent's 421, never a loop. The gRPC client blocks, so
calls run on a thread; channels are kept per address (grpc channels reconnect on their own).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pyarrow as pa

from streamhouse.api.contract import FrontEnd
from streamhouse.api.partitioner import partition_for_keys, split_by_partition
from streamhouse.api.tls import ClientTls, grpc_channel
from streamhouse.api.types import Acks, ProduceResult
from streamhouse.auth.context import forwarded_metadata
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.rpc import convert
from streamhouse.rpc.convert import MAX_MESSAGE_BYTES
from streamhouse.rpc.status import error_from_rpc
from streamhouse.storage.errors import NotLeaderError, StreamHouseError
from streamhouse.storage.records.codec import encode_batch

_MAX_HOPS = 3
_TIMEOUT_S = 10.0
_DURABLE_TIMEOUT_S = 60.0  # acks=durable waits for the leader's segment upload
_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
_KEY = 2  # RECORD_SCHEMA's key column


class Forwarder:
    """Produce through the local agent, or at the partition's leader when another agent leads it."""

    def __init__(self, front: FrontEnd, tls: ClientTls | None = None) -> None:
        self._front = front
        self._tls = tls  # the cluster's agents serve TLS: how this one connects to them
        self._stubs: dict[str, pbg.ProduceStub] = {}
        self._lock = threading.Lock()
        # Round robin for keyless records of batches split here; the agent keeps its own for the rest.
        self._round_robin: dict[str, int] = {}

    async def produce(self, topic: str, partition: int, batch: pa.RecordBatch, acks: Acks) -> list[ProduceResult]:
        try:
            return await self._front.produce(topic, partition, batch, acks=acks)
        except NotLeaderError as exc:
            if not exc.leader:
                raise  # no live leader known: the agent's 421 says so
            if partition >= 0:
                return await self._at_leader(exc.leader, topic, partition, batch, acks)
        return await self._split(topic, batch, acks)

    async def _split(self, topic: str, batch: pa.RecordBatch, acks: Acks) -> list[ProduceResult]:
        info = await self._front.topic(topic)
        keys = batch.column(_KEY)
        start = self._round_robin.get(topic, 0)
        self._round_robin[topic] = start + keys.null_count
        parts = split_by_partition(batch, partition_for_keys(keys, info.partitions, start=start), info.partitions)
        results: list[ProduceResult] = []
        for p, part in parts.items():
            try:
                try:
                    results += await self._front.produce(topic, p, part, acks=acks)
                except NotLeaderError as exc:
                    if not exc.leader:
                        raise
                    results += await self._at_leader(exc.leader, topic, p, part, acks)
            except StreamHouseError as exc:
                if results:
                    stored = ", ".join(f"{r.partition} from offset {r.base_offset}" for r in results)
                    exc.args = (f"{exc} (partitions already stored: {stored}; do not resend their records)",)
                raise
        return results

    async def _at_leader(
        self, address: str, topic: str, partition: int, batch: pa.RecordBatch, acks: Acks
    ) -> list[ProduceResult]:
        request = pb.ProduceRequest(
            topic=topic, partition=partition, acks=convert.ACKS_TO_PB[acks], batch=encode_batch(batch)
        )
        timeout = _DURABLE_TIMEOUT_S if acks == "durable" else _TIMEOUT_S
        for hop in range(_MAX_HOPS):
            try:
                reply: Any = await asyncio.to_thread(
                    # The client's own credential, when the agents require one (engine/auth/context.py).
                    self._stub(address).Produce,
                    request,
                    timeout=timeout,
                    metadata=forwarded_metadata(),
                )
            except grpc.RpcError as err:
                exc = error_from_rpc(err)
                if isinstance(exc, NotLeaderError) and exc.leader and exc.leader != address and hop + 1 < _MAX_HOPS:
                    address = exc.leader  # leadership moved on meanwhile: follow it, boundedly
                    continue
                raise exc from None
            return [ProduceResult(topic, a.partition, a.base_offset, a.record_count) for a in reply.appends]
        raise NotLeaderError(f"{topic}/{partition}", address)  # unreachable: the loop returns or raises

    def _stub(self, address: str) -> pbg.ProduceStub:
        with self._lock:
            stub = self._stubs.get(address)
            if stub is None:
                stub = self._stubs[address] = pbg.ProduceStub(grpc_channel(address, self._tls, _OPTIONS))
            return stub
