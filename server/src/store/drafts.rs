//! Forms sent back with errors, kept under an id for their sender: the
//! values stay on the server instead of in a redirect's URL.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// Which form a draft belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftForm {
    Launch,
    Deployment,
    LoadTest,
    /// A new service token's secret, shown once on the next page.
    TokenSecret,
    /// Why a form did not do what it asked, for the page it goes back to.
    Notice,
}

impl DraftForm {
    fn as_str(self) -> &'static str {
        match self {
            DraftForm::Launch => "launch",
            DraftForm::Deployment => "deployment",
            DraftForm::LoadTest => "load-test",
            DraftForm::TokenSecret => "token-secret",
            DraftForm::Notice => "notice",
        }
    }
}

impl Store {
    /// Keeps `body` for `user`; its id.
    pub async fn insert_draft(
        &self,
        user: &str,
        form: DraftForm,
        body: &impl Serialize,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let body = serde_json::to_string(body)
            .map_err(|err| Error::Internal(format!("a {} draft: {err}", form.as_str())))?;
        sqlx::query(
            "INSERT INTO form_drafts (id, user_name, form, body, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(user)
        .bind(form.as_str())
        .bind(body)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The draft `id` of `form`, if `user` sent it.
    pub async fn draft<T: DeserializeOwned>(
        &self,
        user: &str,
        form: DraftForm,
        id: &str,
    ) -> Result<Option<T>> {
        let row = sqlx::query(
            "SELECT body FROM form_drafts WHERE id = $1 AND user_name = $2 AND form = $3",
        )
        .bind(id)
        .bind(user)
        .bind(form.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => serde_json::from_str(&row.try_get::<String, _>("body")?)
                .map(Some)
                .map_err(|err| Error::Internal(format!("a {} draft: {err}", form.as_str()))),
            None => Ok(None),
        }
    }

    /// As `draft`, made after `since_ms`, and gone once read.
    pub async fn take_draft<T: DeserializeOwned>(
        &self,
        user: &str,
        form: DraftForm,
        id: &str,
        since_ms: i64,
    ) -> Result<Option<T>> {
        let body: Option<String> = sqlx::query_scalar(
            "DELETE FROM form_drafts WHERE id = $1 AND user_name = $2 AND form = $3 \
             AND created_ms >= $4 RETURNING body",
        )
        .bind(id)
        .bind(user)
        .bind(form.as_str())
        .bind(since_ms)
        .fetch_optional(&self.pool)
        .await?;
        body.map(|body| {
            serde_json::from_str(&body)
                .map_err(|err| Error::Internal(format!("a {} draft: {err}", form.as_str())))
        })
        .transpose()
    }

    /// Deletes drafts made before `before_ms`.
    pub async fn forget_drafts(&self, before_ms: i64) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM form_drafts WHERE created_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }
}
