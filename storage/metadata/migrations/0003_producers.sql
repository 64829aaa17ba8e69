-- The Kafka idempotent producer (KIP-98, docs/DESIGN.md §10). Portable like 0001.

-- Producer ids come from the shared counter, so agents on one PostgreSQL never hand out the
-- same id, and an agent's restart never hands out one again.
INSERT INTO counters (name, value) VALUES ('producer_id', 0);

-- Per (partition, producer id): the producer's epoch and its last few batches (JSON list of
-- [first sequence, last sequence, base offset, record count], oldest first) as committed
-- segments hold them. Written in the transaction of the segment commit that covers those
-- batches, so the rows and the log never disagree; a new leader starts from them and adds
-- what its WAL replay re-appends. Not a foreign key: the topic's deletion removes them.
CREATE TABLE producer_states (
    topic          TEXT NOT NULL,
    partition_id   INTEGER NOT NULL,
    producer_id    BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    batches        TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id, producer_id)
);
