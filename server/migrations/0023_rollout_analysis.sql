-- A canary's gates and schedule (JSON; NULL: people decide), its failed
-- checks so far, and every check with the numbers it judged, so an abort
-- the analysis made shows what failed it.
ALTER TABLE rollouts ADD COLUMN analysis TEXT;
ALTER TABLE rollouts ADD COLUMN failed_checks INTEGER NOT NULL DEFAULT 0;
CREATE TABLE rollout_checks (
    id TEXT PRIMARY KEY,
    rollout_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    weight INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    success_percent DOUBLE PRECISION,
    p99_ms DOUBLE PRECISION,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX rollout_checks_by_rollout ON rollout_checks (rollout_id, at_ms);
