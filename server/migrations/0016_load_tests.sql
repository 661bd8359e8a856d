-- Load tests of deployments. A row is written `running` before the first
-- request and completed with the numbers; `replica` is the process running
-- it, so a test whose process is gone is settled as interrupted. One test
-- per deployment at a time: the partial unique index refuses a second.
CREATE TABLE load_tests (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version TEXT,
    address TEXT NOT NULL,
    users INTEGER NOT NULL,
    rate INTEGER,
    duration_secs INTEGER NOT NULL,
    ramp_up_secs INTEGER NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    -- The numbers so far (written every second) or in all, as JSON: requests,
    -- errors, rate, percentiles, the first error and each second's.
    results TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    replica TEXT NOT NULL,
    -- The audit entry the test's end completes (an interrupted one too).
    audit_id TEXT NOT NULL
);
CREATE UNIQUE INDEX load_tests_one_running ON load_tests (model) WHERE state = 'running';
CREATE INDEX load_tests_by_model ON load_tests (model, started_ms);
