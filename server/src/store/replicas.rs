//! The replicas on this database, and what the leader last saw of each
//! deployment for those that do not reconcile.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{Error, Result};
use app::model::DeploymentView;

/// A deployment as the leader last saw it, and which replica that was.
#[derive(Debug, Clone)]
pub struct PublishedView {
    pub view: DeploymentView,
    pub replica: String,
}

impl Store {
    /// Says this process is alive.
    pub async fn heartbeat(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO replicas (instance, seen_ms) VALUES ($1, $2) \
             ON CONFLICT (instance) DO UPDATE SET seen_ms = $2",
        )
        .bind(self.instance())
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

    /// Replaces what was published of the deployments with `views`, as
    /// seen by `replica`.
    pub async fn publish_views(&self, views: &[DeploymentView], replica: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM deployment_views")
            .execute(&mut *tx)
            .await?;
        for view in views {
            let json = serde_json::to_string(view).expect("a view serialises");
            sqlx::query("INSERT INTO deployment_views (model, view, replica) VALUES ($1, $2, $3)")
                .bind(&view.model)
                .bind(json)
                .bind(replica)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn published_views(&self) -> Result<Vec<PublishedView>> {
        let rows = sqlx::query("SELECT view, replica FROM deployment_views")
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
                })
            })
            .collect()
    }
}
