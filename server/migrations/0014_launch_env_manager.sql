-- How a launch's Python was set up, so "launch again" repeats the choice.
-- Launches recorded before this column say nothing ('').
ALTER TABLE launches ADD COLUMN env_manager TEXT NOT NULL DEFAULT '';
