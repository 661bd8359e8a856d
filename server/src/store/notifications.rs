//! Notification channels and the outbox of their deliveries: a row per
//! event and channel, written where the event happens, sent by the leader.

use app::model::{Notification, NotificationDelivery, NotificationEvent};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// A channel with what sending needs (its URL and secret).
#[derive(Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: String,
    pub events: Vec<NotificationEvent>,
    pub created_by: String,
    pub created_ms: i64,
}

// The URL and the secret are credentials (a Slack URL is its own token).
impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A delivery due now, with its channel.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: String,
    pub channel: Channel,
    pub notification: Notification,
    pub attempts: i64,
}

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

const CHANNEL_COLUMNS: &str =
    "c.id, c.name, c.kind, c.url, c.secret, c.events, c.created_by, c.created_ms";

impl Store {
    /// `false`: a channel of that name exists.
    pub async fn insert_channel(&self, channel: &Channel) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO notification_channels (id, name, kind, url, secret, events, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&channel.id)
        .bind(&channel.name)
        .bind(&channel.kind)
        .bind(&channel.url)
        .bind(&channel.secret)
        .bind(events_text(&channel.events))
        .bind(&channel.created_by)
        .bind(channel.created_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes a channel and what it had still to send; its name, if it existed.
    pub async fn delete_channel(&self, id: &str) -> Result<Option<String>> {
        let name: Option<String> =
            sqlx::query_scalar("DELETE FROM notification_channels WHERE id = $1 RETURNING name")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        sqlx::query("DELETE FROM notification_deliveries WHERE channel_id = $1 AND state = $2")
            .bind(id)
            .bind(PENDING)
            .execute(&self.pool)
            .await?;
        Ok(name)
    }

    /// By name.
    pub async fn channels(&self) -> Result<Vec<Channel>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels c ORDER BY c.name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(channel_from_row).collect()
    }

    /// Puts `notification` in the outbox of every channel that hears of
    /// its event; how many.
    pub async fn enqueue_notification(&self, notification: &Notification) -> Result<usize> {
        let channels = self.channels().await?;
        let payload = serde_json::to_string(notification)
            .map_err(|err| Error::Internal(format!("a notification: {err}")))?;
        let now = now_ms();
        let mut queued = 0;
        for channel in channels
            .iter()
            .filter(|channel| channel.events.contains(&notification.event))
        {
            sqlx::query(
                "INSERT INTO notification_deliveries \
                 (id, channel_id, event, payload, state, attempts, next_attempt_ms, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
            )
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(&channel.id)
            .bind(notification.event.as_str())
            .bind(&payload)
            .bind(PENDING)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Pending deliveries whose time has come, oldest first.
    pub async fn due_deliveries(&self, limit: i64) -> Result<Vec<DueDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT d.id AS delivery_id, d.payload, d.attempts, {CHANNEL_COLUMNS} \
             FROM notification_deliveries d JOIN notification_channels c ON c.id = d.channel_id \
             WHERE d.state = $1 AND d.next_attempt_ms <= $2 ORDER BY d.next_attempt_ms LIMIT $3"
        ))
        .bind(PENDING)
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DueDelivery {
                    id: row.try_get("delivery_id")?,
                    channel: channel_from_row(row)?,
                    notification: notification_from_row(row)?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Records one attempt: delivered, or to try again at `retry_at_ms`
    /// (`None`: given up).
    pub async fn record_delivery_attempt(
        &self,
        id: &str,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<()> {
        let now = now_ms();
        let (state, next, delivered) = match (error, retry_at_ms) {
            (None, _) => (DELIVERED, now, Some(now)),
            (Some(_), Some(at)) => (PENDING, at, None),
            (Some(_), None) => (FAILED, now, None),
        };
        // A delivered one keeps its last error: why it took several attempts.
        sqlx::query(
            "UPDATE notification_deliveries SET state = $1, attempts = attempts + 1, \
             next_attempt_ms = $2, last_error = COALESCE($3, last_error), delivered_ms = $4 \
             WHERE id = $5 AND state = $6",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(delivered)
        .bind(id)
        .bind(PENDING)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest deliveries, with their channel's name.
    pub async fn recent_deliveries(&self, limit: i64) -> Result<Vec<NotificationDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, c.name, d.event, d.payload, d.state, d.attempts, d.last_error, \
             d.created_ms, d.next_attempt_ms, d.delivered_ms \
             FROM notification_deliveries d JOIN notification_channels c ON c.id = d.channel_id \
             ORDER BY d.created_ms DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let notification = notification_from_row(row)?;
                Ok(NotificationDelivery {
                    id: row.try_get("id")?,
                    channel: row.try_get("name")?,
                    event: notification.event,
                    text: notification.text,
                    state: row.try_get("state")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    created_ms: row.try_get("created_ms")?,
                    next_attempt_ms: row.try_get("next_attempt_ms")?,
                    delivered_ms: row.try_get("delivered_ms")?,
                })
            })
            .collect()
    }

    /// Forgets deliveries that ended before `before_ms`.
    pub async fn forget_deliveries(&self, before_ms: i64) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM notification_deliveries WHERE state <> $1 AND created_ms < $2",
        )
        .bind(PENDING)
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}

fn events_text(events: &[NotificationEvent]) -> String {
    events
        .iter()
        .map(|event| event.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn notification_from_row(row: &AnyRow) -> Result<Notification> {
    let payload: String = row.try_get("payload")?;
    serde_json::from_str(&payload)
        .map_err(|err| Error::Internal(format!("a queued notification: {err}")))
}

fn channel_from_row(row: &AnyRow) -> Result<Channel> {
    let events: String = row.try_get("events")?;
    Ok(Channel {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        events: events
            .split(',')
            .filter_map(NotificationEvent::parse)
            .collect(),
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
    })
}
