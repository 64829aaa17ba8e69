"""Transactional batches on the produce path (issue 18): each batch is registered in the store
as part of its producer's open transaction before it is appended, and placed at its offsets
after (storage/metadata/transactions.py).

Registering first is KIP-890's defence: the store refuses a batch for a partition that was not
added to the transaction, or of a fenced epoch, before anything is written, so a zombie's late
batch can never land in (or after) a transaction it no longer owns. It also makes the partition's
last stable offset hold at the registered lower bound from before the append until the end of
the transaction, so a read_committed reader never sees the records in between.

Under SASL the transactional id and the topic are the request's org's (storage/namespace.py):
the batch is registered under their stored names, as the transaction's partitions were added
(handlers_txn.py), and the producer needs write on the id, as in Kafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from streamhouse.kafka import txn_v2
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.record.batch import KafkaBatch
from streamhouse.storage import access
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import InvalidInputError, TransactionError
from streamhouse.storage.metadata.txn_reads import CommittedReads

INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 29, 53
_CODES = {"fenced": INVALID_PRODUCER_EPOCH, "unknown": INVALID_PRODUCER_EPOCH, "state": INVALID_TXN_STATE}


class TxnProduceError(KafkaProtocolError):
    """A transactional batch its transaction refuses; `error_code` says why."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason, api="Produce", field="transactional_id")
        self.error_code = code


async def produce_transactional(
    reads: CommittedReads,
    transactional_id: str | None,
    topic: str,
    partition: int,
    batches: list[KafkaBatch],
    lower: Callable[[], Awaitable[int]],
    append: Callable[[KafkaBatch, bool], Awaitable[int]],
    implicit_add: bool = False,
) -> int:
    """The first batch's base offset. `lower()`: an offset at or below where the next record
    goes (the partition's end); `append(batch, last)`: the idempotent append of one batch.
    `implicit_add` (Produce v12+, transaction version 2: txn_v2.py): the batch adds its
    partition to its producer's transaction, at the batch's epoch, instead of AddPartitionsToTxn."""
    if transactional_id is None:
        raise TxnProduceError("transactional batches need the request's transactional id", INVALID_TXN_STATE)
    if not all(b.is_transactional and b.producer_id >= 0 for b in batches):
        raise TxnProduceError("a request's batches for one partition are all transactional or none", INVALID_TXN_STATE)
    if not access.allows("write", "transactional_id", transactional_id):
        raise TxnProduceError(f"no ACL allows writing transactional id {transactional_id!r}",
                              TRANSACTIONAL_ID_AUTHORIZATION_FAILED)  # fmt: skip
    if not access.allows("write", "topic", topic):  # before registering: a refused batch holds nothing open
        raise TxnProduceError(f"no ACL allows writing topic {topic!r}", TOPIC_AUTHORIZATION_FAILED)
    try:
        transactional_id, topic = ns.inner(transactional_id, ns.current()), ns.inner(topic, ns.current())
    except InvalidInputError as exc:
        raise TxnProduceError(str(exc), TRANSACTIONAL_ID_AUTHORIZATION_FAILED) from exc
    store = reads.metadata
    floor = await lower()
    bases = []
    for i, batch in enumerate(batches):
        pid, epoch, seq = batch.producer_id, batch.producer_epoch, batch.base_sequence
        try:
            try:
                await store.txn_open_batch(transactional_id, pid, epoch, topic, partition, seq, floor)
            except TransactionError as exc:
                # Version 2: only the partition's first batch of a transaction pays for the add
                # (and a fenced or unknown producer is refused by the add's checks as well).
                if not implicit_add or exc.kind != "state":
                    raise
                await txn_v2.implicit_add(store, transactional_id, pid, epoch, frozenset([(topic, partition)]))
                await store.txn_open_batch(transactional_id, pid, epoch, topic, partition, seq, floor)
        except TransactionError as exc:
            raise TxnProduceError(str(exc), _CODES.get(exc.kind, INVALID_TXN_STATE)) from exc
        reads.changed([(topic, partition)])
        base = await append(batch, i == len(batches) - 1)
        await store.txn_place_batch(topic, partition, pid, epoch, seq, base, base + batch.records.num_rows)
        reads.changed([(topic, partition)])
        bases.append(base)
    return bases[0]
