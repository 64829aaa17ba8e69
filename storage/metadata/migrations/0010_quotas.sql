-- Rate quotas per organisation (issue 15, engine/auth/quota.py): per-second limits an agent
-- enforces with a token bucket per org. NULL is "the server's default" (serve --quota-* flags,
-- unlimited unless given). One row per org at most; `auth quota set` replaces it.
CREATE TABLE auth_quotas (
    org TEXT PRIMARY KEY REFERENCES auth_orgs (name),
    produce_bytes_per_s DOUBLE PRECISION CHECK (produce_bytes_per_s > 0),
    fetch_bytes_per_s DOUBLE PRECISION CHECK (fetch_bytes_per_s > 0),
    requests_per_s DOUBLE PRECISION CHECK (requests_per_s > 0),
    updated_at_ms BIGINT NOT NULL
);
