-- MLflow webhook deliveries already accepted, by MLflow's delivery id: a
-- second delivery with the same id is a replay. Rows older than the
-- timestamp window are pruned; older deliveries are refused as stale anyway.
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    received_ms BIGINT NOT NULL,
    entity TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT NOT NULL
);

CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_ms);
