"""Kafka transaction APIs over the transaction coordinator (txn_coordinator.py): InitProducerId
with a transactional id, FindCoordinator for key type 1, AddPartitionsToTxn, AddOffsetsToTxn,
TxnOffsetCommit, EndTxn (issue 18).

Requests for a transactional id another agent coordinates are answered NOT_COORDINATOR (the
client asks FindCoordinator again). TxnOffsetCommit goes to the group's coordinator in Kafka;
here any agent answers it, since the offsets wait in the store under the transaction (checked
against its producer epoch and groups there) until EndTxn commits them.

Refusals map to Kafka's codes by TransactionError.kind; PRODUCER_FENCED (90) is answered where
the request version knows it (Kafka's rule: InitProducerId/AddPartitions/AddOffsets/EndTxn from
v2, TxnOffsetCommit from v3 uses it too), INVALID_PRODUCER_EPOCH before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from streamhouse.kafka import errors as codes
from streamhouse.kafka.handlers import Body, Context, Handler, error_code
from streamhouse.kafka.registry import Broker
from streamhouse.kafka.txn_coordinator import TxnCoordinator
from streamhouse.storage.errors import InvalidInputError, StreamHouseError, TransactionError

INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
PRODUCER_FENCED = 90
_KINDS = {
    "state": INVALID_TXN_STATE, "concurrent": CONCURRENT_TRANSACTIONS, "unknown": INVALID_PRODUCER_ID_MAPPING,
    "timeout": INVALID_TRANSACTION_TIMEOUT,
}  # fmt: skip


def txn_error_code(exc: StreamHouseError, fenced_code: int = PRODUCER_FENCED) -> int:
    if isinstance(exc, TransactionError):
        return fenced_code if exc.kind == "fenced" else _KINDS.get(exc.kind, INVALID_TXN_STATE)
    return error_code(exc)


def _fenced(version: int, since: int = 2) -> int:
    return PRODUCER_FENCED if version >= since else INVALID_PRODUCER_EPOCH


class TxnHandlers:
    def __init__(
        self,
        coordinator: TxnCoordinator,
        me: Broker,
        find_coordinator: Handler,
        init_producer_id: Handler,
        coordinator_of: Callable[[str], Awaitable[Broker | None]] | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.me = me
        self._groups_find = find_coordinator  # key type 0 (groups): the group handlers' answer
        self._idempotent_init = init_producer_id  # no transactional id: the idempotent producer's
        self.coordinator_of = coordinator_of
        self.by_key: dict[int, Any] = {
            10: self.find_coordinator, 22: self.init_producer_id, 24: self.add_partitions, 25: self.add_offsets,
            26: self.end_txn, 28: self.txn_offset_commit,
        }  # fmt: skip

    async def find_coordinator(self, body: Body, version: int, ctx: Context) -> Body:
        if body["key_type"] != 1:
            return await self._groups_find(body, version, ctx)
        if version < 4:
            return await self._coordinator(body["key"])
        return {"coordinators": [dict(await self._coordinator(key), key=key) for key in body["coordinator_keys"]]}

    async def _coordinator(self, tid: str) -> Body:
        out: Body = {"error_code": 0, "error_message": None, "node_id": -1, "host": "", "port": -1}
        broker: Broker | None = self.me
        if self.coordinator_of is not None:
            try:
                broker = await self.coordinator_of(tid)
            except InvalidInputError as exc:
                return dict(out, error_code=codes.INVALID_REQUEST, error_message=str(exc))
        if broker is None:
            return dict(out, error_code=codes.COORDINATOR_NOT_AVAILABLE)
        return dict(out, node_id=broker.node_id, host=broker.host, port=broker.port)

    async def init_producer_id(self, body: Body, version: int, ctx: Context) -> Body:
        tid = body["transactional_id"]
        if tid is None:
            return await self._idempotent_init(body, version, ctx)
        out: Body = {"throttle_time_ms": 0, "error_code": 0, "producer_id": -1, "producer_epoch": -1}
        if not await self.coordinator.mine(tid):
            return dict(out, error_code=codes.NOT_COORDINATOR)
        try:
            out["producer_id"], out["producer_epoch"] = await self.coordinator.init_producer_id(
                tid, body["transaction_timeout_ms"], body["producer_id"], body["producer_epoch"]
            )
        except StreamHouseError as exc:
            out["error_code"] = txn_error_code(exc, _fenced(version, 3))
        return out

    async def add_partitions(self, body: Body, version: int, ctx: Context) -> Body:
        tid = body["transactional_id"]
        wanted = [(topic["name"], p) for topic in body["topics"] for p in topic["partitions"]]
        code = 0
        if not await self.coordinator.mine(tid):
            code = codes.NOT_COORDINATOR
        else:
            try:
                await self.coordinator.add(tid, body["producer_id"], body["producer_epoch"], partitions=wanted)
            except StreamHouseError as exc:
                code = txn_error_code(exc, _fenced(version))
        results = [
            {"name": t["name"], "results": [{"partition_index": p, "error_code": code} for p in t["partitions"]]}
            for t in body["topics"]
        ]
        return {"throttle_time_ms": 0, "results": results}

    async def add_offsets(self, body: Body, version: int, ctx: Context) -> Body:
        tid = body["transactional_id"]
        if not await self.coordinator.mine(tid):
            return {"throttle_time_ms": 0, "error_code": codes.NOT_COORDINATOR}
        try:
            await self.coordinator.add(tid, body["producer_id"], body["producer_epoch"], groups=[body["group_id"]])
        except StreamHouseError as exc:
            return {"throttle_time_ms": 0, "error_code": txn_error_code(exc, _fenced(version))}
        return {"throttle_time_ms": 0, "error_code": 0}

    async def end_txn(self, body: Body, version: int, ctx: Context) -> Body:
        tid = body["transactional_id"]
        if not await self.coordinator.mine(tid):
            return {"throttle_time_ms": 0, "error_code": codes.NOT_COORDINATOR}
        try:
            await self.coordinator.end(tid, body["producer_id"], body["producer_epoch"], body["committed"])
        except StreamHouseError as exc:
            return {"throttle_time_ms": 0, "error_code": txn_error_code(exc, _fenced(version))}
        return {"throttle_time_ms": 0, "error_code": 0}

    async def txn_offset_commit(self, body: Body, version: int, ctx: Context) -> Body:
        topics = []
        for topic in body["topics"]:
            offsets = {p["partition_index"]: p["committed_offset"] for p in topic["partitions"]}
            code = 0
            try:
                await self.coordinator.metadata.txn_commit_offsets(
                    body["transactional_id"], body["producer_id"], body["producer_epoch"], body["group_id"],
                    topic["name"], offsets,
                )  # fmt: skip
            except StreamHouseError as exc:
                code = txn_error_code(exc, _fenced(version, 3))
            topics.append({"name": topic["name"], "partitions": [
                {"partition_index": p, "error_code": code} for p in offsets]})  # fmt: skip
        return {"throttle_time_ms": 0, "topics": topics}
