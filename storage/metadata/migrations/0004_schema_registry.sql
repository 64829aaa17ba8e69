-- The schema registry (issue 13, Confluent's REST model). Portable like 0001.

-- Schema ids are global and never reused: the counter only grows, and a schema row is never
-- deleted (a permanently deleted subject version drops its version row only), so records
-- already written with an id can always be decoded.
INSERT INTO counters (name, value) VALUES ('registry_schema_id', 0);

-- One row per distinct (type, normalised text, references): `fingerprint` is the SHA-256 of
-- those, so the same schema registered under two subjects gets one id.
CREATE TABLE registry_schemas (
    schema_id     BIGINT PRIMARY KEY,
    fingerprint   TEXT NOT NULL UNIQUE,
    schema_type   TEXT NOT NULL,
    schema_text   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- A schema's references, in the order given: `name` is how the schema text names the
-- referenced schema, (ref_subject, ref_version) which subject version it is.
CREATE TABLE registry_references (
    schema_id   BIGINT NOT NULL REFERENCES registry_schemas (schema_id),
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    ref_subject TEXT NOT NULL,
    ref_version INTEGER NOT NULL,
    PRIMARY KEY (schema_id, position)
);
CREATE INDEX registry_references_target ON registry_references (ref_subject, ref_version);

-- Subject versions; `deleted` 1 = soft-deleted (kept, hidden unless asked for). Versions keep
-- counting past soft-deleted ones, as Confluent's do.
CREATE TABLE registry_versions (
    subject       TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version > 0),
    schema_id     BIGINT NOT NULL REFERENCES registry_schemas (schema_id),
    deleted       INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (subject, version)
);
CREATE INDEX registry_versions_schema ON registry_versions (schema_id);

-- Compatibility level and mode, global (subject '') and per subject; kind 'compatibility' or 'mode'.
CREATE TABLE registry_settings (
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (kind, subject)
);
