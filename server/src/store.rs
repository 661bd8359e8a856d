//! Slipway's own state. SQLite for one machine, PostgreSQL for several
//! replicas; one code path through sqlx's `Any` driver, portable SQL only.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use app::model::{DeploymentEvent, Launch, LaunchStatus};
use sqlx::any::{AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};

mod accounts;
mod bindings;
mod drafts;
mod promotions;
mod requests;
mod try_answers;

pub use accounts::{Account, AccountSource, OidcFlow, SessionRecord};
pub use bindings::{BindingRecord, ManagedBy, Seeded};
pub use drafts::DraftForm;
pub use promotions::{ModelLock, NewPromotion, PromotionRecord};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    model_locks: std::sync::Arc<promotions::ModelLocks>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    /// `done`, `failed: …`, or `pending` while (or if never) carried out.
    pub outcome: String,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let sqlite_dir = sqlite_path(url)
            .and_then(|path| Path::new(path).parent())
            .filter(|dir| !dir.as_os_str().is_empty());
        if let Some(dir) = sqlite_dir {
            std::fs::create_dir_all(dir)?;
        }
        // SQLite takes one writer at a time; a single connection avoids
        // "database is locked" between our own connections.
        let max_connections = if sqlite_path(url).is_some() { 1 } else { 10 };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        let postgres = sqlite_path(url).is_none();
        Ok(Self {
            pool,
            model_locks: std::sync::Arc::new(promotions::ModelLocks::new(
                postgres,
                max_connections,
            )),
        })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// An action that is complete as it is recorded (a sign-in, an account change).
    pub async fn record_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<AuditEvent> {
        self.insert_event(actor, action, subject, detail, "done")
            .await
    }

    /// Records an action before it is carried out; `complete_event` adds
    /// its outcome. Returns the entry's id.
    pub async fn begin_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<String> {
        Ok(self
            .insert_event(actor, action, subject, detail, "pending")
            .await?
            .id)
    }

    pub async fn complete_event(&self, id: &str, outcome: &str) -> Result<()> {
        sqlx::query("UPDATE audit_events SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
        outcome: &str,
    ) -> Result<AuditEvent> {
        let event = AuditEvent {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: now_ms(),
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            detail: detail.into(),
            outcome: outcome.into(),
        };
        sqlx::query(
            "INSERT INTO audit_events (id, at_ms, actor, action, subject, detail, outcome)              VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&event.id)
        .bind(event.at_ms)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.subject)
        .bind(&event.detail)
        .bind(&event.outcome)
        .execute(&self.pool)
        .await?;
        Ok(event)
    }

    /// Entries matching `query` (dates already turned into a time range),
    /// newest first.
    pub async fn search_events(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        from_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, subject, detail, outcome FROM audit_events \
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR subject = $3) \
             AND at_ms >= $4 AND at_ms < $5 ORDER BY at_ms DESC, id DESC LIMIT $6",
        )
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(from_ms)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Newest first.
    pub async fn recent_events(
        &self,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, subject, detail, outcome FROM audit_events \
             WHERE ($1 IS NULL OR subject = $1) ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(subject)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}

fn event_from_row(row: &AnyRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
        outcome: row.try_get("outcome")?,
    })
}

const LAUNCH_COLUMNS: &str = "id, project, entry_point, params, profile, backend, experiment_id, run_id, \
     run_name, launched_by, status, reason, executor_ref, created_ms, updated_ms, finished_ms";

/// A launch as first recorded, before MLflow or an executor is involved.
#[derive(Debug, Clone)]
pub struct NewLaunch {
    pub submission: String,
    pub project: String,
    pub entry_point: String,
    pub params: BTreeMap<String, String>,
    pub profile: String,
    pub backend: String,
    pub run_name: String,
    pub launched_by: String,
}

impl Store {
    /// Records a launch as `Submitted`. Returns `(launch, true)` when new, or
    /// the launch already recorded for this submission token and `false`.
    pub async fn insert_launch(&self, new: &NewLaunch) -> Result<(Launch, bool)> {
        if let Some(existing) = self.launch_by_submission(&new.submission).await? {
            return Ok((existing, false));
        }
        let now = now_ms();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let params = serde_json::to_string(&new.params).expect("string map serialises");
        let inserted = sqlx::query(
            "INSERT INTO launches (id, submission, project, entry_point, params, profile, backend, run_name, \
             launched_by, status, reason, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(&new.submission)
        .bind(&new.project)
        .bind(&new.entry_point)
        .bind(&params)
        .bind(&new.profile)
        .bind(&new.backend)
        .bind(&new.run_name)
        .bind(&new.launched_by)
        .bind(LaunchStatus::Submitted.as_str())
        .bind("")
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok((self.launch(&id).await?.expect("just inserted"), true)),
            // Two clicks at once: the unique token lets one insert win.
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                let existing = self.launch_by_submission(&new.submission).await?;
                Ok((existing.expect("the conflicting row exists"), false))
            }
            Err(err) => Err(err.into()),
        }
    }

    pub async fn set_launch_run(&self, id: &str, experiment_id: &str, run_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE launches SET experiment_id = $1, run_id = $2, updated_ms = $3 WHERE id = $4",
        )
        .bind(experiment_id)
        .bind(run_id)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_launch_executor_ref(&self, id: &str, executor_ref: &str) -> Result<()> {
        sqlx::query("UPDATE launches SET executor_ref = $1, updated_ms = $2 WHERE id = $3")
            .bind(executor_ref)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a launch to `status` unless it has already ended: the first
    /// terminal status wins, later reports of the same end change nothing.
    /// Returns the launch as it now is, and whether this call changed it.
    pub async fn update_launch_status(
        &self,
        id: &str,
        status: LaunchStatus,
        reason: &str,
    ) -> Result<Option<(Launch, bool)>> {
        let now = now_ms();
        let finished = status.is_terminal().then_some(now);
        let changed = sqlx::query(
            "UPDATE launches SET status = $1, reason = $2, updated_ms = $3, finished_ms = $4 \
             WHERE id = $5 AND status NOT IN ('succeeded', 'failed', 'cancelled') \
             AND (status <> $1 OR reason <> $2) AND NOT ($1 = 'pending' AND status = 'running')",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        Ok(self.launch(id).await?.map(|launch| (launch, changed)))
    }

    /// `submitted` → `pending` once the executor has the training, unless
    /// the executor has already reported something: its word is newer.
    /// Returns whether it changed.
    pub async fn mark_launch_started(&self, id: &str, reason: &str) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE launches SET status = 'pending', reason = $1, updated_ms = $2 \
             WHERE id = $3 AND status = 'submitted'",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    pub async fn launch(&self, id: &str) -> Result<Option<Launch>> {
        let row = sqlx::query(&format!(
            "SELECT {LAUNCH_COLUMNS} FROM launches WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| launch_from_row(&row)).transpose()
    }

    async fn launch_by_submission(&self, submission: &str) -> Result<Option<Launch>> {
        let row = sqlx::query(&format!(
            "SELECT {LAUNCH_COLUMNS} FROM launches WHERE submission = $1"
        ))
        .bind(submission)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| launch_from_row(&row)).transpose()
    }

    /// Newest first.
    pub async fn recent_launches(&self, limit: i64) -> Result<Vec<Launch>> {
        let rows = sqlx::query(&format!(
            "SELECT {LAUNCH_COLUMNS} FROM launches ORDER BY created_ms DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(launch_from_row).collect()
    }

    /// Launches that have not ended, e.g. to settle them after a restart.
    pub async fn unfinished_launches(&self, backend: &str) -> Result<Vec<Launch>> {
        let rows = sqlx::query(&format!(
            "SELECT {LAUNCH_COLUMNS} FROM launches WHERE backend = $1 \
             AND status NOT IN ('succeeded', 'failed', 'cancelled') ORDER BY created_ms"
        ))
        .bind(backend)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(launch_from_row).collect()
    }
}

impl Store {
    /// Remembers an accepted webhook delivery. `false`: its id was seen
    /// before (a replay). Deliveries past the replay window are forgotten.
    pub async fn record_delivery(&self, delivery: &crate::webhook::Delivery) -> Result<bool> {
        let now = now_ms();
        sqlx::query("DELETE FROM webhook_deliveries WHERE received_ms < $1")
            .bind(now - 2 * crate::webhook::MAX_AGE_SECS * 1000)
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

/// A cluster object Slipway created for a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingObject {
    pub target: String,
    pub namespace: String,
    pub name: String,
    pub model: String,
}

impl Store {
    /// Records an object before it is first applied. `false`: it was
    /// recorded before (so Slipway has created it at least once).
    pub async fn remember_serving_object(&self, object: &ServingObject) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO serving_objects (target, namespace, name, model, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, namespace, name) DO NOTHING",
        )
        .bind(&object.target)
        .bind(&object.namespace)
        .bind(&object.name)
        .bind(&object.model)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    pub async fn serving_objects(&self) -> Result<Vec<ServingObject>> {
        let rows = sqlx::query(
            "SELECT target, namespace, name, model FROM serving_objects ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ServingObject {
                    target: row.try_get("target")?,
                    namespace: row.try_get("namespace")?,
                    name: row.try_get("name")?,
                    model: row.try_get("model")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    pub async fn forget_serving_object(&self, object: &ServingObject) -> Result<()> {
        sqlx::query(
            "DELETE FROM serving_objects WHERE target = $1 AND namespace = $2 AND name = $3",
        )
        .bind(&object.target)
        .bind(&object.namespace)
        .bind(&object.name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What a deployment event a stopped Slipway left pending ends with.
const SETTLED_MESSAGE: &str =
    "Slipway stopped before this change finished; the status above is what serves now";

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
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO deployment_events (id, model, version, previous_version, cause, actor, started_ms, outcome, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', '')",
        )
        .bind(&id)
        .bind(model)
        .bind(version)
        .bind(previous_version)
        .bind(cause)
        .bind(actor)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Ends a deployment event: `serving` (ready now), `failed` or `removed`.
    pub async fn finish_deployment(&self, id: &str, outcome: &str, message: &str) -> Result<()> {
        let ready = (outcome == "serving").then(now_ms);
        sqlx::query(
            "UPDATE deployment_events SET outcome = $1, message = $2, ready_ms = $3 WHERE id = $4",
        )
        .bind(outcome)
        .bind(message)
        .bind(ready)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if outcome == "serving" {
            // What began before this and is still pending was left by a
            // Slipway that was killed: a later change serves now. (A change
            // still under way records its own end over this.)
            sqlx::query(
                "UPDATE deployment_events SET outcome = 'interrupted', message = $2 \
                 WHERE outcome = 'pending' \
                 AND model = (SELECT model FROM deployment_events WHERE id = $1) \
                 AND started_ms < (SELECT started_ms FROM deployment_events WHERE id = $1)",
            )
            .bind(id)
            .bind(SETTLED_MESSAGE)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Ends deployment events still `pending` that began before
    /// `started_before`: their deployer stopped (a crash, a restart) before
    /// it could say how they ended. The number ended.
    pub async fn settle_stale_deployments(&self, started_before: i64) -> Result<u64> {
        let settled = sqlx::query(
            "UPDATE deployment_events SET outcome = 'interrupted', message = $2 \
             WHERE outcome = 'pending' AND started_ms < $1",
        )
        .bind(started_before)
        .bind(SETTLED_MESSAGE)
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
                    outcome: row.try_get("outcome")?,
                    message: row.try_get("message")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}

fn launch_from_row(row: &AnyRow) -> Result<Launch> {
    let params: String = row.try_get("params")?;
    let status: String = row.try_get("status")?;
    Ok(Launch {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        entry_point: row.try_get("entry_point")?,
        params: serde_json::from_str(&params)
            .map_err(|err| Error::Internal(format!("launch params in the database: {err}")))?,
        profile: row.try_get("profile")?,
        backend: row.try_get("backend")?,
        experiment_id: row.try_get("experiment_id")?,
        run_id: row.try_get("run_id")?,
        run_name: row.try_get("run_name")?,
        launched_by: row.try_get("launched_by")?,
        status: LaunchStatus::parse(&status).ok_or_else(|| {
            Error::Internal(format!("unknown launch status {status:?} in the database"))
        })?,
        reason: row.try_get("reason")?,
        executor_ref: row.try_get("executor_ref")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        finished_ms: row.try_get("finished_ms")?,
    })
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

pub fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn sqlite_paths_are_found_in_the_url_forms_sqlx_accepts() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/s.db?mode=rwc"),
            Some("/var/lib/s.db")
        );
        assert_eq!(sqlite_path("sqlite://data/s.db"), Some("data/s.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
