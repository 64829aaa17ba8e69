-- SCRAM credentials of API keys (issue 15, Kafka SASL/SCRAM-SHA-256 and -512; RFC 5802).
-- SCRAM cannot check a secret against the scrypt hash of 0007: the server must hold, per
-- mechanism, the salt and iteration count it sends the client and StoredKey = H(ClientKey)
-- and ServerKey derived from the secret. They are computed once, when the key is created
-- (the only moment the secret is known), in the same transaction as the key's row. Like the
-- scrypt hash they are not the secret (StoredKey only verifies a proof; it cannot produce one)
-- and may travel in metadata snapshots. Base64 text, so snapshots carry them as strings.
CREATE TABLE auth_scram_credentials (
    key_id TEXT NOT NULL REFERENCES auth_keys (key_id),
    mechanism TEXT NOT NULL CHECK (mechanism IN ('SCRAM-SHA-256', 'SCRAM-SHA-512')),
    salt TEXT NOT NULL,
    iterations INTEGER NOT NULL CHECK (iterations >= 4096),
    stored_key TEXT NOT NULL,
    server_key TEXT NOT NULL,
    PRIMARY KEY (key_id, mechanism)
);
