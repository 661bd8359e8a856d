-- One row per launch of a training. `submission` is the form's token: a
-- second POST of the same form finds the first launch instead of a new one.
CREATE TABLE launches (
    id TEXT PRIMARY KEY,
    submission TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    entry_point TEXT NOT NULL,
    params TEXT NOT NULL,
    profile TEXT NOT NULL,
    backend TEXT NOT NULL,
    experiment_id TEXT,
    run_id TEXT,
    run_name TEXT NOT NULL,
    launched_by TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    executor_ref TEXT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    finished_ms BIGINT
);

CREATE INDEX launches_created ON launches (created_ms);
CREATE INDEX launches_status ON launches (status);
