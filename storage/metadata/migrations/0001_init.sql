-- Base schema. Every migration file runs unchanged on SQLite and PostgreSQL, so only portable
-- types are used (TEXT, INTEGER, BIGINT); JSON is stored as TEXT. Column names avoid words that
-- are reserved in either dialect ("partition", "group", "offset").

-- Named counters, incremented inside the transaction that uses them: a committed value is never
-- handed out again, even after the row that used it is deleted (topic ids; job ids later).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('topic_id', 0);

CREATE TABLE topics (
    name          TEXT PRIMARY KEY,
    topic_id      BIGINT NOT NULL UNIQUE,
    partitions    INTEGER NOT NULL CHECK (partitions > 0),
    config        TEXT NOT NULL,
    value_schema  TEXT,
    created_at_ms BIGINT NOT NULL
);

-- end_offset is the durable end: one past the last record of the last committed segment.
CREATE TABLE partitions (
    topic        TEXT NOT NULL REFERENCES topics (name),
    partition_id INTEGER NOT NULL,
    end_offset   BIGINT NOT NULL DEFAULT 0 CHECK (end_offset >= 0),
    PRIMARY KEY (topic, partition_id)
);

CREATE TABLE segments (
    topic         TEXT NOT NULL,
    partition_id  INTEGER NOT NULL,
    base_offset   BIGINT NOT NULL,
    end_offset    BIGINT NOT NULL,
    min_timestamp BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    object_key    TEXT NOT NULL,
    epoch         BIGINT NOT NULL,
    footer_length BIGINT NOT NULL,
    footer_crc    BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (topic, partition_id, base_offset),
    FOREIGN KEY (topic, partition_id) REFERENCES partitions (topic, partition_id),
    CHECK (end_offset > base_offset)
);
-- Range reads ask for segments whose end lies past a start offset.
CREATE INDEX segments_by_end ON segments (topic, partition_id, end_offset);

CREATE TABLE consumer_offsets (
    group_id        TEXT NOT NULL,
    topic           TEXT NOT NULL,
    partition_id    INTEGER NOT NULL,
    next_offset     BIGINT NOT NULL CHECK (next_offset >= 0),
    committed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic, partition_id),
    FOREIGN KEY (topic, partition_id) REFERENCES partitions (topic, partition_id)
);
-- delete_topic removes every group's offsets for the topic.
CREATE INDEX consumer_offsets_by_topic ON consumer_offsets (topic, partition_id);

-- One row per leased resource (partition/<topic>/<n>, job/<name>). The epoch only grows while
-- the row exists: taking a free or expired lease increments it, renewing never does.
CREATE TABLE leases (
    resource      TEXT PRIMARY KEY,
    holder        TEXT NOT NULL,
    epoch         BIGINT NOT NULL CHECK (epoch > 0),
    expires_at_ms BIGINT NOT NULL
);
