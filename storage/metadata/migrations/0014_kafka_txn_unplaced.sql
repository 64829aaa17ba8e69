-- Transactional batches still waiting for their offsets (issue 18): every segment commit that holds
-- producer batches asks for them (transactions.UNPLACED), and aborted rows are kept, so without
-- this partial index that read would scan all of a partition's aborted rows, a set that only grows.
CREATE INDEX kafka_txn_batches_unplaced ON kafka_txn_batches (topic, partition_id) WHERE end_offset IS NULL;
