-- Accounts and their sessions. `grants` is JSON: [{"role": "...", "scope": ["pattern", ...]}].
-- Local accounts have an argon2 `password_hash`; single sign-on accounts
-- (`source` = 'oidc') have none and get their grants from their groups at
-- each login. `disabled` is 0 or 1 (portable between SQLite and PostgreSQL).
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    grants TEXT NOT NULL,
    source TEXT NOT NULL,
    disabled INTEGER NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- A session is known by the SHA-256 of its cookie's token, so the table
-- alone cannot be used to sign in.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_last_seen ON sessions (last_seen_ms);
