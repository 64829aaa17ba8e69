-- Objects to delete after a grace period (docs/DESIGN.md §4): segments a swap replaced (small-
-- segment merging now; retention and compaction reuse it). Recorded in the transaction that
-- removes their rows, so an object is never forgotten once nothing references it, and deleted
-- only after `delete_after_ms` (database clock), so readers that listed the old segments before
-- the swap finish their reads. Portable like 0001. Not keyed to topics: a topic's deletion must
-- not drop the record of objects still to delete.
CREATE TABLE deferred_deletions (
    object_key      TEXT PRIMARY KEY,
    topic           TEXT NOT NULL,
    partition_id    INTEGER NOT NULL,
    delete_after_ms BIGINT NOT NULL,
    recorded_at_ms  BIGINT NOT NULL
);
-- The deleter asks for the rows whose grace has passed.
CREATE INDEX deferred_deletions_due ON deferred_deletions (delete_after_ms);
