-- Retention (issue 14, docs/DESIGN.md §4): where each partition's log now begins. Retention
-- removes whole segments from the front and moves this past them in the same transaction;
-- it only ever grows, and it is kept here rather than derived from the first segment row so it
-- stays right when every segment below it is gone (and compaction may drop whole segments of
-- superseded records without moving it). Reads below it are refused (OFFSET_OUT_OF_RANGE);
-- Kafka's `earliest` answers it.
ALTER TABLE partitions ADD COLUMN log_start_offset BIGINT NOT NULL DEFAULT 0 CHECK (log_start_offset >= 0);
-- When the compactor last finished a pass over the partition (epoch ms, database clock); NULL:
-- never. Shown by DESCRIBE TOPIC / `streamhouse topic describe` / describe_topic.
ALTER TABLE partitions ADD COLUMN last_compacted_ms BIGINT;
