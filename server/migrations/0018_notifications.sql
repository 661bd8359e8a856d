-- Notifications out. A channel is where an admin wants to hear of events
-- (a generic webhook, HMAC-signed, or a Slack-compatible incoming webhook);
-- its URL and secret are credentials, never shown again once saved.
CREATE TABLE notification_channels (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- The events it hears, comma-separated (`launch.failed,promotion.requested`).
    events TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
-- One row per event and channel, written where the event happens (the
-- outbox): the action never waits for a receiver. The leader sends the due
-- ones and writes each attempt's result; `pending` rows outlive a crash.
CREATE TABLE notification_deliveries (
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    event TEXT NOT NULL,
    -- The event as JSON (what the webhook body carries).
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    delivered_ms BIGINT
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (state, next_attempt_ms);
CREATE INDEX notification_deliveries_recent ON notification_deliveries (created_ms);
