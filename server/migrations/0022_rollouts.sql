-- Canary rollouts: a second version of a deployment taking a share of its
-- traffic. Each change (a weight, promoting, the end) is written before it
-- is carried out, and passes serve what the row says, so a crash leaves a
-- state the next start serves from, never a split without one. One active
-- rollout per deployment: the partial unique index refuses a second.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    stable_version TEXT,
    canary_version TEXT NOT NULL,
    weight INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    outcome TEXT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (model) WHERE state IN ('progressing', 'promoting');
CREATE INDEX rollouts_by_model ON rollouts (model, started_ms);
