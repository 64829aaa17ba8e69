"""Kafka transaction APIs over the transaction coordinator (txn_coordinator.py): InitProducerId
with a transactional id, FindCoordinator for key type 1, AddPartitionsToTxn, AddOffsetsToTxn,
TxnOffsetCommit, EndTxn (issue 18).

Requests for a transactional id another agent coordinates are answered NOT_COORDINATOR (the
client asks FindCoordinator again). TxnOffsetCommit goes to the group's coordinator in Kafka;
here any agent answers it, since the offsets wait in the store under the transaction (checked
against its producer epoch and groups there) until EndTxn commits them.

Under SASL (issue 15 namespaces and ACLs) a transactional id is its org's, stored `<org>~<id>`
(storage/namespace.py) as groups and topics are: two orgs' ids of one name are two ids, and one
org can neither use nor fence another's. The rights are Kafka's: describe on the id for
FindCoordinator; write on it for InitProducerId, AddPartitionsToTxn (and write on the topics),
AddOffsetsToTxn (and read on the group), EndTxn and TxnOffsetCommit (and read on the group and
topics); the transaction's Produce needs write on it too (txn_produce.py). A refusal changes
nothing. Without auth every name is its own and everything is allowed.

Refusals map to Kafka's codes by TransactionError.kind; PRODUCER_FENCED (90) is answered where
the request version knows it (Kafka's rule: InitProducerId/AddPartitions/AddOffsets/EndTxn from
v2, TxnOffsetCommit from v3 uses it too), INVALID_PRODUCER_EPOCH before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from streamhouse.kafka import errors as codes
from streamhouse.kafka import txn_v2
from streamhouse.kafka.handlers import Body, Context, Handler, error_code
from streamhouse.kafka.registry import Broker
from streamhouse.kafka.txn_coordinator import TxnCoordinator
from streamhouse.storage import access
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import InvalidInputError, StreamHouseError, TransactionError
from streamhouse.storage.metadata.txn_reads import CommittedReads, Stable

INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
PRODUCER_FENCED = 90
TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, OPERATION_NOT_ATTEMPTED = 29, 30, 55
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


def stored(name: str) -> str | None:
    """The stored name of the request's org's `name` (storage/namespace.py); None for a name no
    client of an org may use (it holds the separator: another org's)."""
    try:
        return ns.inner(name, ns.current())
    except InvalidInputError:
        return None


def _tid(body: Body, operation: str = "write") -> str | None:
    """The stored transactional id, if the request may `operation` it (else None: refused)."""
    tid: str = body["transactional_id"]
    return stored(tid) if access.allows(operation, "transactional_id", tid) else None


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

    async def _coordinator(self, key: str) -> Body:
        out: Body = {"error_code": 0, "error_message": None, "node_id": -1, "host": "", "port": -1}
        tid = stored(key) if access.allows("describe", "transactional_id", key) else None
        if tid is None:
            return dict(out, error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
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
        if body["transactional_id"] is None:
            return await self._idempotent_init(body, version, ctx)
        out: Body = {"throttle_time_ms": 0, "error_code": 0, "producer_id": -1, "producer_epoch": -1}
        tid = _tid(body)
        if tid is None:
            return dict(out, error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
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
        tid = _tid(body)
        names = {t["name"]: stored(t["name"]) if access.allows("write", "topic", t["name"]) else None
                 for t in body["topics"]}  # fmt: skip
        wanted = [(names[topic["name"]], p) for topic in body["topics"] for p in topic["partitions"]]
        code = 0
        refused = {n for n, s in names.items() if s is None}
        if tid is None:
            code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        elif refused:  # Kafka's answer: the refused topics' partitions fail, the others are not attempted
            code = OPERATION_NOT_ATTEMPTED
        elif not await self.coordinator.mine(tid):
            code = codes.NOT_COORDINATOR
        else:
            try:
                partitions = [(t, p) for t, p in wanted if t is not None]
                await self.coordinator.add(tid, body["producer_id"], body["producer_epoch"], partitions=partitions)
            except StreamHouseError as exc:
                code = txn_error_code(exc, _fenced(version))

        def topic_code(name: str) -> int:
            return TOPIC_AUTHORIZATION_FAILED if code == OPERATION_NOT_ATTEMPTED and name in refused else code

        results = [
            {"name": t["name"],
             "results": [{"partition_index": p, "error_code": topic_code(t["name"])} for p in t["partitions"]]}
            for t in body["topics"]
        ]  # fmt: skip
        return {"throttle_time_ms": 0, "results": results}

    async def add_offsets(self, body: Body, version: int, ctx: Context) -> Body:
        tid = _tid(body)
        if tid is None:
            return {"throttle_time_ms": 0, "error_code": TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
        group = stored(body["group_id"]) if access.allows("read", "group", body["group_id"]) else None
        if group is None:
            return {"throttle_time_ms": 0, "error_code": GROUP_AUTHORIZATION_FAILED}
        if not await self.coordinator.mine(tid):
            return {"throttle_time_ms": 0, "error_code": codes.NOT_COORDINATOR}
        try:
            await self.coordinator.add(tid, body["producer_id"], body["producer_epoch"], groups=[group])
        except StreamHouseError as exc:
            return {"throttle_time_ms": 0, "error_code": txn_error_code(exc, _fenced(version))}
        return {"throttle_time_ms": 0, "error_code": 0}

    async def end_txn(self, body: Body, version: int, ctx: Context) -> Body:
        out: Body = {"throttle_time_ms": 0, "error_code": 0, "producer_id": -1, "producer_epoch": -1}
        tid = _tid(body)
        if tid is None:
            return dict(out, error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        if not await self.coordinator.mine(tid):
            return dict(out, error_code=codes.NOT_COORDINATOR)
        try:
            out["producer_id"], out["producer_epoch"] = await self.coordinator.end(
                tid, body["producer_id"], body["producer_epoch"], body["committed"],
                bump=version >= txn_v2.BUMP_END_VERSION,
            )  # fmt: skip
        except StreamHouseError as exc:
            return dict(out, error_code=txn_error_code(exc, _fenced(version)))
        return out

    async def txn_offset_commit(self, body: Body, version: int, ctx: Context) -> Body:
        tid = _tid(body)
        group = stored(body["group_id"]) if access.allows("read", "group", body["group_id"]) else None
        topics = []
        for topic in body["topics"]:
            offsets = {p["partition_index"]: p["committed_offset"] for p in topic["partitions"]}
            name = stored(topic["name"]) if access.allows("read", "topic", topic["name"]) else None
            code = 0
            if tid is None:
                code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            elif group is None:
                code = GROUP_AUTHORIZATION_FAILED
            elif name is None:
                code = TOPIC_AUTHORIZATION_FAILED
            else:
                try:
                    if version >= txn_v2.IMPLICIT_OFFSETS_VERSION:  # transaction version 2: no AddOffsetsToTxn
                        await txn_v2.implicit_add(self.coordinator.metadata, tid, body["producer_id"],
                                                  body["producer_epoch"], groups=frozenset([group]))  # fmt: skip
                    await self.coordinator.metadata.txn_commit_offsets(
                        tid, body["producer_id"], body["producer_epoch"], group, name, offsets
                    )
                except StreamHouseError as exc:
                    code = txn_error_code(exc, _fenced(version, 3))
            topics.append({"name": topic["name"], "partitions": [
                {"partition_index": p, "error_code": code} for p in offsets]})  # fmt: skip
        return {"throttle_time_ms": 0, "topics": topics}


class OrgReads(CommittedReads):
    """The process's shared read_committed view (txn_reads.shared_reads) asked by the names the
    request's org uses: under SASL, Fetch and ListOffsets name topics as the client does, and the
    view (like the store) keys them by their stored names. Changes and waits are the shared view's."""

    def __init__(self, shared: CommittedReads) -> None:
        super().__init__(shared.metadata)
        self.shared = shared

    def changed(self, partitions: Iterable[tuple[str, int]]) -> None:
        self.shared.changed(partitions)

    def ended(self, partitions: Iterable[tuple[str, int]]) -> None:
        self.shared.ended(partitions)

    async def moved(self) -> None:
        await self.shared.moved()

    async def stable(
        self, topic: str, partition: int, from_offset: int, *, upto: int | None = None, fresh: bool = False
    ) -> Stable:
        return await self.shared.stable(ns.inner(topic, ns.current()), partition, from_offset, upto=upto, fresh=fresh)
