-- A request may hold a canary's start on a deployment that requires
-- approval (the rollout as asked for, JSON), started when it is approved.
ALTER TABLE promotion_requests ADD COLUMN rollout TEXT;
