//! Launches: recorded before MLflow or an executor is involved, moved
//! forward as they report, never out of an end state.

use std::collections::BTreeMap;

use app::model::{Launch, LaunchStatus};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

const LAUNCH_COLUMNS: &str = "id, project, entry_point, params, profile, backend, experiment_id, run_id, \
     run_name, env_manager, launched_by, status, reason, executor_ref, created_ms, updated_ms, finished_ms, \
     git_commit";

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
    pub env_manager: String,
    pub launched_by: String,
    pub git_commit: Option<String>,
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
             env_manager, launched_by, status, reason, created_ms, updated_ms, replica, git_commit) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&id)
        .bind(&new.submission)
        .bind(&new.project)
        .bind(&new.entry_point)
        .bind(&params)
        .bind(&new.profile)
        .bind(&new.backend)
        .bind(&new.run_name)
        .bind(&new.env_manager)
        .bind(&new.launched_by)
        .bind(LaunchStatus::Submitted.as_str())
        .bind("")
        .bind(now)
        .bind(now)
        .bind(self.instance())
        .bind(new.git_commit.as_deref())
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
        let changed = sqlx::query(&format!(
            "UPDATE launches SET status = $1, reason = $2, updated_ms = $3, finished_ms = $4 \
             WHERE id = $5 AND status NOT IN ({}) \
             AND (status <> $1 OR reason <> $2) AND NOT ($1 = $6 AND status = $7)",
            ended_statuses()
        ))
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(finished)
        .bind(id)
        // Never back from running to pending.
        .bind(LaunchStatus::Pending.as_str())
        .bind(LaunchStatus::Running.as_str())
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
            "UPDATE launches SET status = $4, reason = $1, updated_ms = $2 \
             WHERE id = $3 AND status = $5",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .bind(LaunchStatus::Pending.as_str())
        .bind(LaunchStatus::Submitted.as_str())
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
             AND status NOT IN ({}) ORDER BY created_ms",
            ended_statuses()
        ))
        .bind(backend)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(launch_from_row).collect()
    }

    /// Launches of `backend` whose start was under way in a process other
    /// than this one that has not been seen since `alive_since` (ms): they
    /// will never get their training.
    pub async fn launches_left_starting(
        &self,
        backend: &str,
        alive_since: i64,
    ) -> Result<Vec<Launch>> {
        let rows = sqlx::query(&format!(
            "SELECT {LAUNCH_COLUMNS} FROM launches WHERE backend = $1 \
             AND status NOT IN ({}) AND executor_ref IS NULL AND replica <> $2 \
             AND replica NOT IN (SELECT instance FROM replicas WHERE seen_ms >= $3) \
             ORDER BY created_ms",
            ended_statuses()
        ))
        .bind(backend)
        .bind(self.instance())
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(launch_from_row).collect()
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
        env_manager: row.try_get("env_manager")?,
        launched_by: row.try_get("launched_by")?,
        status: LaunchStatus::parse(&status).ok_or_else(|| {
            Error::Internal(format!("unknown launch status {status:?} in the database"))
        })?,
        reason: row.try_get("reason")?,
        executor_ref: row.try_get("executor_ref")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        git_commit: row.try_get("git_commit")?,
    })
}

/// The statuses a launch never leaves, as an SQL list of literals (the
/// enum's own text, never input).
fn ended_statuses() -> String {
    LaunchStatus::ALL
        .iter()
        .filter(|status| status.is_terminal())
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
