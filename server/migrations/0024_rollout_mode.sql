-- A rollout's second version answers its share (`canary`) or gets a copy
-- of it while the stable version answers (`shadow`).
ALTER TABLE rollouts ADD COLUMN mode TEXT NOT NULL DEFAULT 'canary';
