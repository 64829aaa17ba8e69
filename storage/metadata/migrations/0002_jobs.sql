-- Continuous-query jobs (DESIGN §8) and their exactly-once checkpoints. Portable like 0001:
-- TEXT / INTEGER / BIGINT only, JSON as TEXT, no reserved column names.

INSERT INTO counters (name, value) VALUES ('job_id', 0);

-- output_topic is not a foreign key: deleting a topic must not depend on which jobs write to
-- it, and a job whose output topic is gone fails its next checkpoint with TopicNotFoundError.
CREATE TABLE jobs (
    name          TEXT PRIMARY KEY,
    job_id        BIGINT NOT NULL UNIQUE,
    sql_text      TEXT NOT NULL,
    output_topic  TEXT NOT NULL,
    options       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Recent checkpoints of each job (older rows are pruned as new ones commit). The
-- primary key is also the last line of defence of "one checkpoint per seq": two writers that
-- somehow both passed the seq check could still not both insert it.
CREATE TABLE job_checkpoints (
    job           TEXT NOT NULL REFERENCES jobs (name),
    seq           BIGINT NOT NULL CHECK (seq > 0),
    state_key     TEXT,
    stats         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (job, seq)
);

-- Where the job resumes reading: one row per source partition, upserted by every checkpoint
-- that moved it (like consumer_offsets: a checkpoint writes only the partitions it read, and
-- dropping a source topic removes exactly its rows). Unlike consumer_offsets there is no foreign
-- key to partitions: its check would lock the source partition rows, and a checkpoint must not
-- make the producers committing into its sources wait. The checkpoint locks the source topic
-- rows instead (PostgreSQL), which is what keeps delete_topic out while it runs.
CREATE TABLE job_source_offsets (
    job          TEXT NOT NULL REFERENCES jobs (name),
    topic        TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset  BIGINT NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (job, topic, partition_id)
);
-- delete_topic removes every job's offsets for the topic.
CREATE INDEX job_source_offsets_by_topic ON job_source_offsets (topic, partition_id);
