//! Changes of a model's Production version, one at a time per model, each
//! a row written before MLflow is asked and completed after.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::locks::ModelLock;
use super::{Store, now_ms};
use crate::error::{Error, Result};

/// A change of Production as asked for, before MLflow is asked.
#[derive(Debug, Clone)]
pub struct NewPromotion<'a> {
    pub model: &'a str,
    /// promote, rollback, approval.
    pub cause: &'a str,
    pub version: &'a str,
    /// Production in MLflow as the change begins.
    pub previous_version: Option<&'a str>,
    /// What the person saw as Production, when their request says.
    pub expected_version: Option<Option<&'a str>>,
    pub actor: &'a str,
    pub audit_id: Option<&'a str>,
}

/// A row of `promotions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRecord {
    pub id: String,
    pub model: String,
    pub cause: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub actor: String,
    pub audit_id: Option<String>,
    pub state: PromotionState,
    pub message: String,
    pub created_ms: i64,
}

app::text_enum! {
    /// Where a change of Production is: written `marking` before MLflow is
    /// asked, ended once it answered (or by the next start, after a crash).
    pub enum PromotionState {
        Marking => "marking",
        /// MLflow has it; the reconciler deploys it.
        Marked => "marked",
        Failed => "failed",
        /// Refused before MLflow was asked (Production had moved).
        Refused => "refused",
        /// Slipway stopped before MLflow confirmed it, and MLflow lacks it.
        Interrupted => "interrupted",
    }
}

/// How "expected nothing in Production" is kept, apart from "not given".
const EXPECTED_NOTHING: &str = "";

impl Store {
    /// Waits for the turn of `model`: changes of one model go one at a
    /// time, in order of arrival.
    pub async fn lock_model(&self, model: &str) -> Result<ModelLock> {
        self.model_locks.lock(&self.pool, model).await
    }

    /// Records a change about to be asked of MLflow (`marking`); its id.
    pub async fn begin_promotion(&self, promotion: &NewPromotion<'_>) -> Result<String> {
        self.insert_promotion(promotion, PromotionState::Marking, "")
            .await
    }

    /// Records a change refused before MLflow was asked.
    pub async fn refuse_promotion(&self, promotion: &NewPromotion<'_>, why: &str) -> Result<()> {
        let id = self
            .insert_promotion(promotion, PromotionState::Refused, why)
            .await?;
        self.finish_promotion(&id, PromotionState::Refused, why)
            .await
    }

    async fn insert_promotion(
        &self,
        promotion: &NewPromotion<'_>,
        state: PromotionState,
        message: &str,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let expected = promotion
            .expected_version
            .map(|expected| expected.unwrap_or(EXPECTED_NOTHING));
        sqlx::query(
            "INSERT INTO promotions (id, model, cause, version, previous_version, expected_version, \
             actor, audit_id, state, message, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(promotion.model)
        .bind(promotion.cause)
        .bind(promotion.version)
        .bind(promotion.previous_version)
        .bind(expected)
        .bind(promotion.actor)
        .bind(promotion.audit_id)
        .bind(state.as_str())
        .bind(message)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn finish_promotion(
        &self,
        id: &str,
        state: PromotionState,
        message: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE promotions SET state = $1, message = $2, finished_ms = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Changes left `marking`: by a crash, or (briefly) under way.
    pub async fn unfinished_promotions(&self) -> Result<Vec<PromotionRecord>> {
        let rows = sqlx::query(
            "SELECT id, model, cause, version, previous_version, actor, audit_id, state, message, \
             created_ms FROM promotions WHERE state = $1 ORDER BY created_ms",
        )
        .bind(PromotionState::Marking.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(promotion_from_row).collect()
    }

    /// The newest changes of `model`, newest first.
    pub async fn promotions(&self, model: &str, limit: i64) -> Result<Vec<PromotionRecord>> {
        let rows = sqlx::query(
            "SELECT id, model, cause, version, previous_version, actor, audit_id, state, message, \
             created_ms FROM promotions WHERE model = $1 ORDER BY created_ms DESC, id LIMIT $2",
        )
        .bind(model)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(promotion_from_row).collect()
    }

    /// Who asked for `version` of `model` to be Production, if that change
    /// has not been deployed yet: (cause, actor). Each change is claimed by
    /// the first deployment recorded for it. A change still `marking` counts:
    /// a pass (a poll) may see MLflow's answer before the row is completed.
    pub async fn claim_promotion(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT id, cause, actor FROM promotions WHERE model = $1 AND version = $2 \
             AND state IN ($3, $4) AND deployed_ms IS NULL ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(model)
        .bind(version)
        .bind(PromotionState::Marked.as_str())
        .bind(PromotionState::Marking.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        let claimed = sqlx::query(
            "UPDATE promotions SET deployed_ms = $1 WHERE id = $2 AND deployed_ms IS NULL",
        )
        .bind(now_ms())
        .bind(&id)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some((row.try_get("cause")?, row.try_get("actor")?)))
    }
}

fn promotion_from_row(row: &AnyRow) -> Result<PromotionRecord> {
    Ok(PromotionRecord {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        cause: row.try_get("cause")?,
        version: row.try_get("version")?,
        previous_version: row.try_get("previous_version")?,
        actor: row.try_get("actor")?,
        audit_id: row.try_get("audit_id")?,
        state: {
            let state: String = row.try_get("state")?;
            PromotionState::parse(&state).ok_or_else(|| {
                Error::Internal(format!("unknown promotion state {state:?} in the database"))
            })?
        },
        message: row.try_get("message")?,
        created_ms: row.try_get("created_ms")?,
    })
}
