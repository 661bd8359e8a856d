//! Try it requests and their answers, for the page the panel's POST leads to.

use app::model::{Prediction, TryAnswer};
use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

impl Store {
    /// Keeps what `user` sent and got back; its id.
    pub async fn insert_try_answer(&self, user: &str, answer: &TryAnswer) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (status, body, truncated, latency_us) = match &answer.outcome {
            Ok(prediction) => (
                Some(i64::from(prediction.status)),
                prediction.body.as_str(),
                prediction.truncated,
                (prediction.latency_ms * 1000.0) as i64,
            ),
            Err(why) => (None, why.as_str(), false, 0),
        };
        sqlx::query(
            "INSERT INTO try_answers \
             (id, user_name, model, input, status, body, truncated, latency_us, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(user)
        .bind(&answer.model)
        .bind(&answer.input)
        .bind(status)
        .bind(body)
        .bind(i64::from(truncated))
        .bind(latency_us)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The answer `id`, if `user` sent it.
    pub async fn try_answer(&self, user: &str, id: &str) -> Result<Option<TryAnswer>> {
        let row = sqlx::query(
            "SELECT model, input, status, body, truncated, latency_us FROM try_answers \
             WHERE id = $1 AND user_name = $2",
        )
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let body: String = row.try_get("body")?;
        let outcome = match row.try_get::<Option<i64>, _>("status")? {
            Some(status) => Ok(Prediction {
                status: u16::try_from(status).unwrap_or_default(),
                body,
                truncated: row.try_get::<i64, _>("truncated")? != 0,
                latency_ms: row.try_get::<i64, _>("latency_us")? as f64 / 1000.0,
            }),
            None => Err(body),
        };
        Ok(Some(TryAnswer {
            model: row.try_get("model")?,
            input: row.try_get("input")?,
            outcome,
        }))
    }

    /// Deletes answers kept since before `created_before`.
    pub async fn forget_try_answers(&self, created_before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM try_answers WHERE created_ms < $1")
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
