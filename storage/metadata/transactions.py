"""Kafka transactions in the metadata store (issue 18, migration 0012): the values, the checks
both backends make inside their database transaction, and the SQL they share. Pure, IO-free.

A transactional id's row is the coordinator's state (engine/kafka/txn_coordinator.py): its
producer id and epoch, the state, and what the open transaction covers. Every write is a
compare-and-set on `version`, so two coordinators (one that lost its lease while paused, and
its successor) never both move a transaction.

What the records of a transaction are is kept per partition and per batch (kafka_txn_batches):
a batch is registered (open) before it is appended, with a lower bound of its offsets, and
placed once it has them. The last stable offset of a partition is the lowest base of its open
rows; committing deletes the transaction's rows and moves its TxnOffsetCommit offsets into
consumer_offsets, in one database transaction, so the records and the offsets become visible
together; aborting marks the rows aborted, the ranges read_committed readers skip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamhouse.storage.errors import InvalidInputError, TransactionError
from streamhouse.storage.metadata import validate as v
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.metadata.rows import Row

EMPTY, ONGOING, COMPLETE_COMMIT, COMPLETE_ABORT = "Empty", "Ongoing", "CompleteCommit", "CompleteAbort"
STATES = (EMPTY, ONGOING, COMPLETE_COMMIT, COMPLETE_ABORT)
MAX_EPOCH = 32766  # an epoch is int16; past this the coordinator hands out a new producer id

Partition = tuple[str, int]


@dataclass(frozen=True)
class TxnState:
    """A transactional id's stored state. `version` is the row's write count (0: not stored)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    state: str = EMPTY
    timeout_ms: int = 60_000
    started_ms: int = -1  # when the open transaction began (its timeout counts from here)
    partitions: frozenset[Partition] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    version: int = 0

    def __post_init__(self) -> None:
        v._name("transactional id", self.transactional_id)
        v._int("producer id", self.producer_id, 0)
        v._int("producer epoch", self.producer_epoch, 0, MAX_EPOCH + 1)
        if self.state not in STATES:
            raise InvalidInputError(f"transaction state must be one of {STATES}, not {self.state!r}")
        v._int("transaction timeout", self.timeout_ms, 1)
        for topic, partition in self.partitions:
            v.validate_topic_name(topic)
            v.validate_partition_arg(partition)
        for group in self.groups:
            v.validate_group(group)

    def check_producer(self, producer_id: int, epoch: int) -> None:
        """TransactionError unless (producer_id, epoch) is this id's current producer."""
        if producer_id != self.producer_id:
            raise TransactionError(
                f"transactional id {self.transactional_id!r} has producer id {self.producer_id}, not {producer_id}",
                "unknown",
            )
        if epoch != self.producer_epoch:
            raise TransactionError(
                f"producer {producer_id} epoch {epoch} of transactional id {self.transactional_id!r} is fenced by "
                f"epoch {self.producer_epoch}",
                "fenced" if epoch < self.producer_epoch else "unknown",
            )


@dataclass(frozen=True)
class TxnBatch:
    """A transactional batch of a partition still to be filtered: open, or aborted.
    `end_offset` is None while it is being appended (its records lie at or after `base_offset`)."""

    producer_id: int
    base_offset: int
    end_offset: int | None
    aborted: bool
    producer_epoch: int = 0  # of the batch's header (Kafka Fetch stamps aborted batches with it)
    first_sequence: int = 0  # with the producer and epoch, the batch's key (a leader's buffer knows it by it)


def placements(
    topic: str, partition: int, written: Iterable[ProducerBatch], unplaced: Iterable[Row]
) -> list[tuple[object, ...]]:
    """PLACE_BATCH's parameters for the producer batches a committed segment holds (`written`)
    that are registered without offsets (`unplaced`: UNPLACED's rows). A transactional batch is
    registered before it is appended and placed after its acknowledgement; when that placement
    never runs (the store restarting, the agent killed and its WAL entry appended again, here or
    by another leader), the segment commit that makes the batch readable places it."""
    keys = batch_keys(unplaced)
    return [(b.base_offset, b.end_offset, topic, partition, b.producer_id, b.producer_epoch, b.first_sequence)
            for b in written if (b.producer_id, b.producer_epoch, b.first_sequence) in keys]  # fmt: skip


def void_rows(topic: str, partition: int, batches: Iterable[ProducerBatch]) -> list[tuple[object, ...]]:
    """VOID_BATCH's parameters for `batches`."""
    return [(topic, partition, b.producer_id, b.producer_epoch, b.first_sequence, b.base_offset, b.end_offset)
            for b in batches]  # fmt: skip


def batch_keys(rows: Iterable[Row]) -> set[tuple[int, int, int]]:
    """(producer id, epoch, first sequence) of each row."""
    return {(int(r["producer_id"]), int(r["producer_epoch"]), int(r["first_sequence"])) for r in rows}


def partitions_json(partitions: Iterable[Partition]) -> str:
    return json.dumps(sorted([t, p] for t, p in partitions))


def groups_json(groups: Iterable[str]) -> str:
    return json.dumps(sorted(groups))


def state_row(state: TxnState) -> tuple[object, ...]:
    """The values of an UPSERT/INSERT in column order (COLUMNS, then version)."""
    return (
        state.transactional_id, state.producer_id, state.producer_epoch, state.state, state.timeout_ms,
        state.started_ms, partitions_json(state.partitions), groups_json(state.groups), state.version,
    )  # fmt: skip


def state_from_row(row: Row) -> TxnState:
    return TxnState(
        transactional_id=str(row["transactional_id"]), producer_id=int(row["producer_id"]),
        producer_epoch=int(row["producer_epoch"]), state=str(row["state"]), timeout_ms=int(row["timeout_ms"]),
        started_ms=int(row["started_ms"]),
        partitions=frozenset((str(t), int(p)) for t, p in json.loads(row["partitions"])),
        groups=frozenset(str(g) for g in json.loads(row["groups"])), version=int(row["version"]),
    )  # fmt: skip


def batch_from_row(row: Row) -> TxnBatch:
    end = row["end_offset"]
    return TxnBatch(int(row["producer_id"]), int(row["base_offset"]), None if end is None else int(end),
                    bool(row["aborted"]), int(row["producer_epoch"]), int(row["first_sequence"]))  # fmt: skip


def check_open(state: TxnState | None, transactional_id: str, producer_id: int, epoch: int, where: Partition) -> None:
    """KIP-890's first defence: a transactional batch is accepted only for a partition added
    to the producer's open transaction, at its current epoch."""
    if state is None:
        raise TransactionError(f"transactional id {transactional_id!r} is unknown", "unknown")
    state.check_producer(producer_id, epoch)
    if state.state != ONGOING or where not in state.partitions:
        raise TransactionError(
            f"partition {where[0]}/{where[1]} was not added to the transaction of {transactional_id!r}", "state"
        )


def check_offsets(state: TxnState | None, transactional_id: str, producer_id: int, epoch: int, group: str) -> None:
    """TxnOffsetCommit: the group must have been added (AddOffsetsToTxn) to the open transaction."""
    if state is None:
        raise TransactionError(f"transactional id {transactional_id!r} is unknown", "unknown")
    state.check_producer(producer_id, epoch)
    if state.state != ONGOING or group not in state.groups:
        raise TransactionError(f"group {group!r} was not added to the transaction of {transactional_id!r}", "state")


def ended(state: TxnState, commit: bool, new_epoch: int) -> TxnState:
    """The state after the open transaction was committed or aborted."""
    return TxnState(
        state.transactional_id, state.producer_id, new_epoch, COMPLETE_COMMIT if commit else COMPLETE_ABORT,
        state.timeout_ms, -1, frozenset(), frozenset(), state.version + 1,
    )  # fmt: skip


def check_version(transactional_id: str, stored: int | None, expected: int) -> None:
    """The compare-and-set: `expected` is the version the writer read (0: not stored)."""
    if (stored or 0) != expected:
        raise TransactionError(
            f"transaction {transactional_id!r} changed meanwhile (version {stored or 0}, expected {expected})",
            "concurrent",
        )


# "?" placeholders; the PostgreSQL store numbers them (registry_sql.numbered).
COLUMNS = "transactional_id, producer_id, producer_epoch, state, timeout_ms, started_ms, partitions, groups, version"
GET = f"SELECT {COLUMNS} FROM kafka_transactions WHERE transactional_id = ?"
ONGOING_SQL = f"SELECT {COLUMNS} FROM kafka_transactions WHERE state = 'Ongoing' ORDER BY transactional_id"
VERSION = "SELECT version FROM kafka_transactions WHERE transactional_id = ?"
UPSERT = (
    f"INSERT INTO kafka_transactions ({COLUMNS}, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {{now}})"
    " ON CONFLICT (transactional_id) DO UPDATE SET producer_id = excluded.producer_id,"
    " producer_epoch = excluded.producer_epoch, state = excluded.state, timeout_ms = excluded.timeout_ms,"
    " started_ms = excluded.started_ms, partitions = excluded.partitions, groups = excluded.groups,"
    " version = excluded.version, updated_at_ms = excluded.updated_at_ms"
)
OPEN_BATCH = (
    "INSERT INTO kafka_txn_batches (topic, partition_id, producer_id, producer_epoch, first_sequence, base_offset,"
    " end_offset, aborted) VALUES (?, ?, ?, ?, ?, ?, NULL, 0) ON CONFLICT DO NOTHING"
)
PLACE_BATCH = (
    "UPDATE kafka_txn_batches SET base_offset = ?, end_offset = ? WHERE topic = ? AND partition_id = ?"
    " AND producer_id = ? AND producer_epoch = ? AND first_sequence = ?"
)
# An idempotent batch its producer left behind unacknowledged by starting a new epoch
# (engine/kafka/unacked.py): kept as an aborted row at its offsets, so every read_committed
# reader skips it as it skips an aborted transaction's batch.
VOID_BATCH = (
    "INSERT INTO kafka_txn_batches (topic, partition_id, producer_id, producer_epoch, first_sequence, base_offset,"
    " end_offset, aborted) VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING"
)
UNPLACED = (
    "SELECT producer_id, producer_epoch, first_sequence FROM kafka_txn_batches WHERE topic = ? AND partition_id = ?"
    " AND end_offset IS NULL"
)
SETTLED = (
    "SELECT producer_id, producer_epoch, first_sequence FROM kafka_txn_batches WHERE topic = ? AND partition_id = ?"
    " AND (aborted = 1 OR end_offset IS NOT NULL)"
)
BATCHES = (
    "SELECT producer_id, producer_epoch, first_sequence, base_offset, end_offset, aborted FROM kafka_txn_batches"
    " WHERE topic = ?"
    " AND partition_id = ? AND (aborted = 0 OR end_offset IS NULL OR end_offset > ?) ORDER BY base_offset"
)
COMMIT_BATCHES = (
    "DELETE FROM kafka_txn_batches WHERE topic = ? AND partition_id = ? AND producer_id = ? AND aborted = 0"
)
ABORT_BATCHES = (
    "UPDATE kafka_txn_batches SET aborted = 1 WHERE topic = ? AND partition_id = ? AND producer_id = ? AND aborted = 0"
)
PUT_OFFSET = (
    "INSERT INTO kafka_txn_offsets (transactional_id, group_id, topic, partition_id, next_offset)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (transactional_id, group_id, topic, partition_id)"
    " DO UPDATE SET next_offset = excluded.next_offset"
)
# Offsets of topics deleted since are dropped (consumer_offsets refers to the partition).
MOVE_OFFSETS = (
    "INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset, committed_at_ms)"
    " SELECT o.group_id, o.topic, o.partition_id, o.next_offset, {now} FROM kafka_txn_offsets o"
    " JOIN partitions p ON p.topic = o.topic AND p.partition_id = o.partition_id WHERE o.transactional_id = ?"
    " ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset,"
    " committed_at_ms = excluded.committed_at_ms"
)
DROP_OFFSETS = "DELETE FROM kafka_txn_offsets WHERE transactional_id = ?"
DELETE_TOPIC = "DELETE FROM kafka_txn_batches WHERE topic = ?"
