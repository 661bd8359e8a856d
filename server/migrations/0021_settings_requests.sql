-- A request may hold a deployment's settings change instead of a promotion
-- (a new deployment that would serve a version its marker already marks,
-- approval turned off): the change as JSON, saved when it is approved.
-- `evidence` may now be JSON null: the change makes no version serve.
ALTER TABLE promotion_requests ADD COLUMN settings TEXT;

-- Models whose deployment last required approval. Kept when the deployment
-- is deleted, so making it again without approval needs a second person
-- as turning approval off does.
CREATE TABLE approval_required (
    model TEXT PRIMARY KEY,
    since_ms BIGINT NOT NULL
);
