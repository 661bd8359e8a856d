-- The number a canary's query gate gave at each check (NULL: no query
-- gate, or it gave none).
ALTER TABLE rollout_checks ADD COLUMN query_value DOUBLE PRECISION;
