-- Kafka transactions (issue 18, storage/metadata/transactions.py). Portable like 0001.

-- One row per transactional id: its producer id and epoch (InitProducerId bumps the epoch and
-- so fences older producers of the id), the transaction's state, the partitions and groups
-- added to the open transaction (JSON), and a version every write moves by one (the
-- compare-and-set of the coordinator that holds the lease kafka-txn/<id>).
CREATE TABLE kafka_transactions (
    transactional_id TEXT PRIMARY KEY,
    producer_id      BIGINT NOT NULL,
    producer_epoch   INTEGER NOT NULL,
    state            TEXT NOT NULL,
    timeout_ms       BIGINT NOT NULL,
    started_ms       BIGINT NOT NULL,
    partitions       TEXT NOT NULL,
    groups           TEXT NOT NULL,
    version          BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);

-- Every transactional batch written to a partition, registered before it is appended (with
-- a lower bound of its offsets, end_offset NULL) and placed after: an open row holds the
-- partition's last stable offset at its base; committing deletes the transaction's rows (the
-- records are then plain records), aborting keeps them as aborted = 1, the ranges that
-- read_committed readers skip. Not a foreign key: the topic's deletion removes them.
CREATE TABLE kafka_txn_batches (
    topic          TEXT NOT NULL,
    partition_id   INTEGER NOT NULL,
    producer_id    BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    base_offset    BIGINT NOT NULL,
    end_offset     BIGINT,
    aborted        INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_id, producer_id, producer_epoch, first_sequence)
);
CREATE INDEX kafka_txn_batches_by_offset ON kafka_txn_batches (topic, partition_id, base_offset);

-- Offsets sent with TxnOffsetCommit: moved into consumer_offsets in the same database
-- transaction that commits the records, dropped by an abort.
CREATE TABLE kafka_txn_offsets (
    transactional_id TEXT NOT NULL,
    group_id         TEXT NOT NULL,
    topic            TEXT NOT NULL,
    partition_id     INTEGER NOT NULL,
    next_offset      BIGINT NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic, partition_id)
);
