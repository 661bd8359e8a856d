-- Service tokens for pipelines: the API's bearer credentials. Only the
-- SHA-256 of the secret is kept (the secret is 32 random bytes, so a fast
-- hash is enough); the grant is what the token may do on behalf of its
-- owner, never more than the owner holds at the time of use.
CREATE TABLE service_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    -- JSON: {"role": …, "scope": […]}
    grant_json TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    last_used_ms BIGINT,
    revoked_ms BIGINT,
    revoked_by TEXT
);
-- A name says which pipeline a token is for: unique among an owner's live ones.
CREATE UNIQUE INDEX service_tokens_owner_name ON service_tokens (owner, name) WHERE revoked_ms IS NULL;
