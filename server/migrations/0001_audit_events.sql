-- Who did what, when: launches, promotions and rollbacks write here.
-- Portable SQL: the same file runs on SQLite and PostgreSQL.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE INDEX audit_events_at ON audit_events (at_ms);
