//! MLflow webhook deliveries accepted, remembered to refuse replays.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

/// An accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub entity: String,
    pub action: String,
    /// The registered model it concerns.
    pub model: String,
}

impl Store {
    /// Remembers an accepted webhook delivery. `false`: its id was seen
    /// before (a replay). Deliveries older than `kept_ms` (twice the oldest
    /// a delivery may be) are forgotten.
    pub async fn record_delivery(&self, delivery: &Delivery, kept_ms: i64) -> Result<bool> {
        let now = now_ms();
        sqlx::query("DELETE FROM webhook_deliveries WHERE received_ms < $1")
            .bind(now - kept_ms)
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, received_ms, entity, action, model) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&delivery.id)
        .bind(now)
        .bind(&delivery.entity)
        .bind(&delivery.action)
        .bind(&delivery.model)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Accepted deliveries about this registered model still remembered.
    pub async fn deliveries_for(&self, model: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE model = $1")
            .bind(model)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
