-- Several replicas on one database. Each process writes its row every few
-- seconds; a row not seen for a while is a replica that is gone, and what
-- it left half done may be settled by the leader.
CREATE TABLE replicas (
    instance TEXT PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
-- The process that started a launch: its start is settled as interrupted
-- only once that process is gone. Launches recorded before say nothing.
ALTER TABLE launches ADD COLUMN replica TEXT NOT NULL DEFAULT '';
-- What the leader last saw of each deployment, for the replicas that do
-- not reconcile: `view` is the page's view as JSON, `replica` the leader.
CREATE TABLE deployment_views (
    model TEXT PRIMARY KEY,
    view TEXT NOT NULL,
    replica TEXT NOT NULL
);
