//! Launch forms sent back with errors, kept under an id for their sender.

use app::model::LaunchRequest;
use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{Error, Result};

impl Store {
    /// Keeps `request` for `user`; its id.
    pub async fn insert_launch_draft(&self, user: &str, request: &LaunchRequest) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO launch_drafts (id, user_name, request, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(user)
        .bind(serde_json::to_string(request).map_err(|err| Error::Internal(format!("a launch draft: {err}")))?)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The draft `id`, if `user` sent it.
    pub async fn launch_draft(&self, user: &str, id: &str) -> Result<Option<LaunchRequest>> {
        let row = sqlx::query("SELECT request FROM launch_drafts WHERE id = $1 AND user_name = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => serde_json::from_str(&row.try_get::<String, _>("request")?)
                .map(Some)
                .map_err(|err| Error::Internal(format!("a launch draft: {err}"))),
            None => Ok(None),
        }
    }

    /// Deletes drafts made before `before_ms`.
    pub async fn forget_launch_drafts(&self, before_ms: i64) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM launch_drafts WHERE created_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}
