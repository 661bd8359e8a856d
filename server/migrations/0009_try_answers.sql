-- Try it requests and their answers, kept so the panel's POST can lead to
-- a page that shows them (on any replica). Only their sender reads them;
-- swept after an hour. `status` is NULL when no answer came, and `body`
-- then says why.
CREATE TABLE try_answers (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    model TEXT NOT NULL,
    input TEXT NOT NULL,
    status BIGINT,
    body TEXT NOT NULL,
    truncated BIGINT NOT NULL,
    latency_us BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
