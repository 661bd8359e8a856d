-- Four-eyes promotions. A request moves pending → approving → approved (or
-- failed), or pending → rejected / stale; each step is written before the
-- side effect it leads to. `evidence` is the JSON comparison the requester
-- saw, frozen.
CREATE TABLE promotion_requests (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_ms BIGINT NOT NULL,
    base_version TEXT,
    evidence TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    decided_ms BIGINT,
    comment TEXT NOT NULL,
    outcome TEXT NOT NULL
);

CREATE INDEX promotion_requests_model ON promotion_requests (model, state);
CREATE INDEX promotion_requests_requested ON promotion_requests (requested_ms);

-- An audit entry is written before the action it describes and completed
-- with its outcome; `pending` is an action that never reported back.
ALTER TABLE audit_events ADD COLUMN outcome TEXT NOT NULL DEFAULT 'done';
