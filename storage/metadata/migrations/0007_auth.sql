-- Identities and API keys (issue 15, engine/auth/): organisations (tenants), their principals
-- and the principals' API keys. A key's secret is never stored: only a salted slow hash of it
-- (scrypt, its parameters in the same text as "scrypt$n$r$p$salt$hash", so they can be raised
-- later while old keys still verify). Metadata snapshots export these tables as they are, which
-- is therefore only ids, names, flags, times and hashes.
CREATE TABLE auth_orgs (
    name TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);
-- A principal is who a key speaks for; `admin` (0/1) may manage orgs and keys through the SDK.
-- The ACL slice attaches its grants to (org, name).
CREATE TABLE auth_principals (
    org TEXT NOT NULL REFERENCES auth_orgs (name),
    name TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (org, name)
);
-- Rows are never deleted: a revoked key keeps its row (revoked_at_ms), so its id is never
-- handed out again and `auth list` still shows it.
CREATE TABLE auth_keys (
    key_id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    principal TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    FOREIGN KEY (org, principal) REFERENCES auth_principals (org, name)
);
CREATE INDEX auth_keys_by_principal ON auth_keys (org, principal);
