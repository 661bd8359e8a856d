-- A request may hold a canary's start on a deployment that requires
-- approval (the rollout as asked for, JSON), started when it is approved.
ALTER TABLE promotion_requests ADD COLUMN rollout TEXT;
-- The largest share an approver allowed a canary started that way (NULL:
-- none was needed); a larger one is a new request.
ALTER TABLE rollouts ADD COLUMN approved_weight INTEGER;
