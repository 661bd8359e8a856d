-- Every change of what serves a bound model: the version, the one before,
-- why (promote, rollback, webhook, poll, drift, startup), who, and how it
-- ended. What serves now is read from the target itself, not from here.
CREATE TABLE deployment_events (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version TEXT,
    previous_version TEXT,
    cause TEXT NOT NULL,
    actor TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ready_ms BIGINT,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL
);

CREATE INDEX deployment_events_model ON deployment_events (model, started_ms);
