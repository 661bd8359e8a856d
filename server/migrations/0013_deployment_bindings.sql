-- Which model is served where: the catalog file's bindings (seeded at
-- start-up, `managed_by` = 'catalog') and those made in the app ('app').
-- `spec` is the binding as JSON, in the catalog's own terms. `revision`
-- grows with every change, so an edit made from a stale form is refused.
CREATE TABLE deployment_bindings (
    model TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    managed_by TEXT NOT NULL,
    revision BIGINT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_ms BIGINT NOT NULL
);
