-- Every change of a model's Production version made through Slipway
-- (promote, rollback, approval), one at a time per model. Written
-- `marking` before MLflow is asked and completed after (`marked`,
-- `failed`), or `refused` when Production had moved from what the person
-- saw; a row a crash left `marking` is settled on the next start
-- (`marked` if MLflow has the change, else `interrupted`).
CREATE TABLE promotions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    cause TEXT NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    expected_version TEXT,
    actor TEXT NOT NULL,
    audit_id TEXT,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    -- Set when the reconciler records a deployment for this change, so
    -- the deployment is attributed to the person who asked for it.
    deployed_ms BIGINT
);

CREATE INDEX promotions_model ON promotions (model, created_ms);
CREATE INDEX promotions_state ON promotions (state);
