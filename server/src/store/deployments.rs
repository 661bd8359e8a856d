//! Each deployment's history: one row per change of what serves it,
//! begun when the change starts and ended with how it came out.

use app::model::{DeploymentEvent, DeploymentOutcome, Notification, NotificationEvent};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::bindings::Edit;
use super::{Store, now_ms};
use crate::error::{Error, Result};

/// What a deployment event a stopped Slipway left pending ends with.
const SETTLED_MESSAGE: &str =
    "Slipway stopped before this change finished; the status above is what serves now";

/// The cause of changes made on the deployment's settings.
pub const SETTINGS_CAUSE: &str = "settings";

/// Ids ordered by creation (UUIDv7), so events begun in one millisecond
/// keep their order in the history.
fn event_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Store {
    /// Starts a deployment event (`pending`); returns its id.
    pub async fn begin_deployment(
        &self,
        model: &str,
        version: Option<&str>,
        previous_version: Option<&str>,
        cause: &str,
        actor: &str,
    ) -> Result<String> {
        let id = event_id();
        sqlx::query(
            "INSERT INTO deployment_events (id, model, version, previous_version, cause, actor, started_ms, outcome, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')",
        )
        .bind(&id)
        .bind(model)
        .bind(version)
        .bind(previous_version)
        .bind(cause)
        .bind(actor)
        .bind(now_ms())
        .bind(DeploymentOutcome::Pending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// A change of `model`'s settings, over as it is made: written on the
    /// connection that makes it, inside its transaction.
    pub(super) async fn record_settings_change(
        connection: &mut AnyConnection,
        model: &str,
        edit: Edit<'_>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO deployment_events (id, model, version, previous_version, cause, actor, started_ms, outcome, message) \
             VALUES ($1, $2, NULL, NULL, $3, $4, $5, $6, $7)",
        )
        .bind(event_id())
        .bind(model)
        .bind(SETTINGS_CAUSE)
        .bind(edit.by)
        .bind(now_ms())
        .bind(DeploymentOutcome::Changed.as_str())
        .bind(edit.detail)
        .execute(connection)
        .await?;
        Ok(())
    }

    /// Who made the newest change in `model`'s history, if that change was
    /// of its settings: what a pass carrying it out credits.
    pub async fn settings_changed_last_by(&self, model: &str) -> Result<Option<String>> {
        let newest = sqlx::query(
            "SELECT cause, actor FROM deployment_events WHERE model = $1 \
             ORDER BY started_ms DESC, id DESC LIMIT 1",
        )
        .bind(model)
        .fetch_optional(&self.pool)
        .await?;
        let Some(newest) = newest else {
            return Ok(None);
        };
        let cause: String = newest.try_get("cause")?;
        Ok((cause == SETTINGS_CAUSE)
            .then(|| newest.try_get("actor"))
            .transpose()?)
    }

    /// Ends a deployment event (`Serving`: ready now).
    pub async fn finish_deployment(
        &self,
        id: &str,
        outcome: DeploymentOutcome,
        message: &str,
    ) -> Result<()> {
        let ready = (outcome == DeploymentOutcome::Serving).then(now_ms);
        self.end_deployment(id, outcome, message, ready).await
    }

    /// Ends a deployment event as serving since `ready_ms`, when its
    /// target said it became ready.
    pub async fn finish_deployment_ready_at(
        &self,
        id: &str,
        ready_ms: i64,
        message: &str,
    ) -> Result<()> {
        self.end_deployment(id, DeploymentOutcome::Serving, message, Some(ready_ms))
            .await
    }

    async fn end_deployment(
        &self,
        id: &str,
        outcome: DeploymentOutcome,
        message: &str,
        ready: Option<i64>,
    ) -> Result<()> {
        let serving = outcome == DeploymentOutcome::Serving;
        let ended = sqlx::query(
            "UPDATE deployment_events SET outcome = $1, message = $2, ready_ms = $3 WHERE id = $4 \
             RETURNING model, version, previous_version, cause, actor",
        )
        .bind(outcome.as_str())
        .bind(message)
        .bind(ready)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = ended {
            self.notify_deployment(&row, outcome, message).await;
        }
        if serving {
            // What began before this and is still pending was left by a
            // Slipway that was killed: a later change serves now. (A change
            // still under way records its own end over this.)
            sqlx::query(
                "UPDATE deployment_events SET outcome = $3, message = $2 \
                 WHERE outcome = $4 \
                 AND model = (SELECT model FROM deployment_events WHERE id = $1) \
                 AND started_ms < (SELECT started_ms FROM deployment_events WHERE id = $1)",
            )
            .bind(id)
            .bind(SETTLED_MESSAGE)
            .bind(DeploymentOutcome::Interrupted.as_str())
            .bind(DeploymentOutcome::Pending.as_str())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Tells the channels of a new version serving, or of a failure, in
    /// the outbox; a failure to queue is logged, never the deployment's.
    async fn notify_deployment(&self, row: &AnyRow, outcome: DeploymentOutcome, message: &str) {
        let read = || -> std::result::Result<_, sqlx::Error> {
            Ok((
                row.try_get::<String, _>("model")?,
                row.try_get::<Option<String>, _>("version")?,
                row.try_get::<Option<String>, _>("previous_version")?,
                row.try_get::<String, _>("cause")?,
                row.try_get::<String, _>("actor")?,
            ))
        };
        let Ok((model, version, previous, cause, actor)) = read() else {
            return;
        };
        let shown = version
            .as_deref()
            .map(|v| format!(" v{v}"))
            .unwrap_or_default();
        let (event, text) = match outcome {
            // A restart finding what served still serving is no news.
            DeploymentOutcome::Serving if version.is_some() && version != previous => (
                NotificationEvent::DeploymentServing,
                format!("{model}{shown} serves now ({cause} by {actor})."),
            ),
            DeploymentOutcome::Failed => (
                NotificationEvent::DeploymentFailed,
                format!("{model}{shown} failed to deploy ({cause} by {actor}): {message}"),
            ),
            _ => return,
        };
        let notification = Notification {
            event,
            at_ms: now_ms(),
            text,
            link: app::routes::deployment_href(&model),
            model: Some(model),
            version,
            launch_id: None,
            request_id: None,
            run_id: None,
            actor: Some(actor),
        };
        if let Err(err) = self.enqueue_notification(&notification).await {
            tracing::warn!(error = %err, event = %notification.event, "queueing a notification");
        }
    }

    /// Ends deployment events still `pending` that began before
    /// `started_before`: their deployer stopped (a crash, a restart) before
    /// it could say how they ended. The number ended.
    pub async fn settle_stale_deployments(&self, started_before: i64) -> Result<u64> {
        let settled = sqlx::query(
            "UPDATE deployment_events SET outcome = $3, message = $2 \
             WHERE outcome = $4 AND started_ms < $1",
        )
        .bind(started_before)
        .bind(SETTLED_MESSAGE)
        .bind(DeploymentOutcome::Interrupted.as_str())
        .bind(DeploymentOutcome::Pending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(settled.rows_affected())
    }

    /// Newest first.
    pub async fn deployment_history(
        &self,
        model: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentEvent>> {
        let rows = sqlx::query(
            "SELECT id, model, version, previous_version, cause, actor, started_ms, ready_ms, outcome, message \
             FROM deployment_events WHERE model = $1 ORDER BY started_ms DESC, id DESC LIMIT $2",
        )
        .bind(model)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeploymentEvent {
                    id: row.try_get("id")?,
                    model: row.try_get("model")?,
                    version: row.try_get("version")?,
                    previous_version: row.try_get("previous_version")?,
                    cause: row.try_get("cause")?,
                    actor: row.try_get("actor")?,
                    started_ms: row.try_get("started_ms")?,
                    ready_ms: row.try_get("ready_ms")?,
                    outcome: {
                        let outcome: String = row.try_get("outcome")?;
                        DeploymentOutcome::parse(&outcome).ok_or_else(|| {
                            sqlx::Error::Decode(
                                format!("unknown deployment outcome {outcome:?}").into(),
                            )
                        })?
                    },
                    message: row.try_get("message")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}
