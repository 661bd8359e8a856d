//! The replicas on this database, and what the leader last saw of each
//! deployment for those that do not reconcile.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{Error, Result};
use app::model::DeploymentView;

/// A deployment as the leader last saw it.
#[derive(Debug, Clone)]
pub struct PublishedView {
    pub view: DeploymentView,
    pub replica: String,
    pub observed_ms: i64,
}

impl Store {
    /// Says this process is alive, under the name it runs as.
    pub async fn heartbeat(&self, name: &str, started_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (instance, name, started_ms, seen_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance) DO UPDATE SET seen_ms = $4",
        )
        .bind(self.instance())
        .bind(name)
        .bind(started_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets replicas not seen since `before` (ms).
    pub async fn forget_replicas(&self, before: i64) -> Result<u64> {
        let forgotten = sqlx::query("DELETE FROM replicas WHERE seen_ms < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(forgotten.rows_affected())
    }

    /// Launches of `backend` whose start was under way in a process other
    /// than this one that has not been seen since `alive_since` (ms): they
    /// will never get their training.
    pub async fn launches_left_starting(
        &self,
        backend: &str,
        alive_since: i64,
    ) -> Result<Vec<app::model::Launch>> {
        let ended = super::launches::ended_statuses();
        let ids: Vec<String> = sqlx::query(&format!(
            "SELECT id FROM launches WHERE backend = $1 AND status NOT IN ({ended}) \
             AND executor_ref IS NULL AND replica <> $2 \
             AND replica NOT IN (SELECT instance FROM replicas WHERE seen_ms >= $3) \
             ORDER BY created_ms"
        ))
        .bind(backend)
        .bind(self.instance())
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<std::result::Result<_, _>>()?;
        let mut launches = Vec::with_capacity(ids.len());
        for id in ids {
            launches.extend(self.launch(&id).await?);
        }
        Ok(launches)
    }

    /// Replaces what was published of the deployments with `views`, as
    /// seen by `replica` now.
    pub async fn publish_views(&self, views: &[DeploymentView], replica: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM deployment_views")
            .execute(&mut *tx)
            .await?;
        for view in views {
            let json = serde_json::to_string(view).expect("a view serialises");
            sqlx::query(
                "INSERT INTO deployment_views (model, view, replica, observed_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&view.model)
            .bind(json)
            .bind(replica)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn published_views(&self) -> Result<Vec<PublishedView>> {
        let rows = sqlx::query("SELECT view, replica, observed_ms FROM deployment_views")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let view: String = row.try_get("view")?;
                Ok(PublishedView {
                    view: serde_json::from_str(&view).map_err(|err| {
                        Error::Internal(format!("a deployment view in the database: {err}"))
                    })?,
                    replica: row.try_get("replica")?,
                    observed_ms: row.try_get("observed_ms")?,
                })
            })
            .collect()
    }
}
