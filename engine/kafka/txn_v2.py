"""Kafka transaction version 2 (KIP-890 part 2, issue 18): what a client that supports it is told,
and the implicit adds it relies on.

A client (the Java client 4.x) uses transaction version 2 when ApiVersions finalizes the feature
`transaction.version` at level 2. It then never sends AddPartitionsToTxn or AddOffsetsToTxn: a
transactional Produce of version 12+ adds its partition to the producer's transaction (beginning
one if none is open), a TxnOffsetCommit of version 5+ adds its group, and EndTxn (version 5+)
bumps the producer's epoch at every commit or abort and answers the new one, which the client
uses for its next transaction. A late batch of the transaction that ended (a retry, a zombie)
carries the epoch before the bump, so the store refuses it before it is written: it can never
land in the next transaction, which is the hole part 1's checks left.

Clients on transaction version 1 (librdkafka, older Java clients) use Produce <= 11, EndTxn <= 4
and TxnOffsetCommit <= 4 and keep the explicit adds and one epoch per producer session.

The implicit add writes the transactional id's row from whichever agent leads the partition, not
only from the id's coordinator: the row's compare-and-set keeps it exact (a coordinator working on
the id at the same moment gets CONCURRENT_TRANSACTIONS, which clients retry), and a few lost
races with other partitions' adds of the same transaction are tried again here.
"""

from __future__ import annotations

import dataclasses

from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import TransactionError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata import transactions as t

FEATURE = "transaction.version"
LEVEL = 2
FEATURES_EPOCH = 1  # Kafka clients take finalized features only from an epoch above -1
IMPLICIT_PRODUCE_VERSION = 12  # Produce v12+: the batch adds its partition
IMPLICIT_OFFSETS_VERSION = 5  # TxnOffsetCommit v5+: the request adds its group
BUMP_END_VERSION = 5  # EndTxn v5+: the epoch moves at every end, and the answer carries it
_TRIES = 8  # compare-and-set races lost to other adds of the same transaction before giving up


def features() -> dict[str, object]:
    """The ApiVersions (v3+) fields that turn transaction version 2 on in a client."""
    return {
        "supported_features": [{"name": FEATURE, "min_version": 0, "max_version": LEVEL}],
        "finalized_features_epoch": FEATURES_EPOCH,
        "finalized_features": [{"name": FEATURE, "max_version_level": LEVEL, "min_version_level": LEVEL}],
    }


def with_added(state: t.TxnState, partitions: frozenset[t.Partition], groups: frozenset[str]) -> t.TxnState:
    """The state whose open transaction (begun now if none is) also covers `partitions`/`groups`."""
    ongoing = state.state == t.ONGOING
    return dataclasses.replace(
        state, state=t.ONGOING, started_ms=state.started_ms if ongoing else now_ms(),
        partitions=state.partitions | partitions, groups=state.groups | groups,
    )  # fmt: skip


async def implicit_add(
    store: MetadataStore,
    transactional_id: str,
    producer_id: int,
    epoch: int,
    partitions: frozenset[t.Partition] = frozenset(),
    groups: frozenset[str] = frozenset(),
) -> None:
    """Adds to the producer's transaction at `epoch` (TransactionError: unknown id, fenced epoch).
    Nothing is written when the open transaction covers them already (every batch after the first)."""
    for _ in range(_TRIES):
        state = await store.txn_get(transactional_id)
        if state is None:
            raise TransactionError(f"transactional id {transactional_id!r} is unknown (InitProducerId first)",
                                   "unknown")  # fmt: skip
        state.check_producer(producer_id, epoch)
        new = with_added(state, partitions, groups)
        if new == state:
            return
        try:
            await store.txn_put(new)
            return
        except TransactionError as exc:
            if exc.kind != "concurrent":
                raise
    raise TransactionError(f"transaction {transactional_id!r} kept changing while adding to it", "concurrent")
