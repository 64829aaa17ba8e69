-- An idempotent producer's acks=all batches whose leader committed them and could not answer
-- (the client had closed the connection): engine/kafka/unacked.py. Kept so that whichever agent
-- leads the partition when the producer starts a new epoch voids them (issue 19, finding 6);
-- deleted when such a batch is answered after all (a retry) or voided. Inserted only by the
-- partition's leader at its lease epoch (fenced), so a new leader that loads them at take-over
-- sees every row it will ever find. Not a foreign key: the topic's deletion removes them.
CREATE TABLE kafka_unanswered (
    topic          TEXT NOT NULL,
    partition_id   INTEGER NOT NULL,
    producer_id    BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence  INTEGER NOT NULL,
    base_offset    BIGINT NOT NULL,
    record_count   INTEGER NOT NULL,
    PRIMARY KEY (topic, partition_id, producer_id, producer_epoch, first_sequence)
);
