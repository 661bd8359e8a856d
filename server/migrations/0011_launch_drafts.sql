-- A launch form sent back with errors: the values stay here, under an id,
-- instead of in the URL the browser is sent to (a value may be large).
-- Only their sender reads them; swept after an hour.
CREATE TABLE launch_drafts (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    request TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
