//! Requests a second person decides (four eyes): promotions, and
//! deployment settings changes and canary starts that need one.

use app::model::{NewRollout, PromotionPreview, PromotionRequest, RequestState, SettingsChange};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

const REQUEST_COLUMNS: &str = "id, model, version, reason, requested_by, requested_ms, base_version, \
     evidence, state, decided_by, decided_ms, comment, outcome, settings, rollout";

/// A request as it is asked for.
pub struct NewRequest<'a> {
    pub model: &'a str,
    /// The version it would make serve; empty: none.
    pub version: &'a str,
    pub reason: &'a str,
    pub requested_by: &'a str,
    pub base_version: Option<&'a str>,
    pub evidence: Option<&'a PromotionPreview>,
    /// A settings change instead of a promotion.
    pub settings: Option<&'a SettingsChange>,
    /// A canary's start instead of a promotion.
    pub rollout: Option<&'a NewRollout>,
}

impl Store {
    pub async fn insert_promotion_request(&self, new: &NewRequest<'_>) -> Result<PromotionRequest> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(&format!(
            "INSERT INTO promotion_requests ({REQUEST_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, '', '', $10, $11)"
        ))
        .bind(&id)
        .bind(new.model)
        .bind(new.version)
        .bind(new.reason)
        .bind(new.requested_by)
        .bind(now_ms())
        .bind(new.base_version)
        .bind(serde_json::to_string(&new.evidence).expect("evidence serialises"))
        .bind(RequestState::Pending.as_str())
        .bind(
            new.settings
                .map(|settings| serde_json::to_string(settings).expect("settings serialise")),
        )
        .bind(
            new.rollout
                .map(|rollout| serde_json::to_string(rollout).expect("a rollout serialises")),
        )
        .execute(&self.pool)
        .await?;
        Ok(self.promotion_request(&id).await?.expect("just inserted"))
    }

    pub async fn promotion_request(&self, id: &str) -> Result<Option<PromotionRequest>> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM promotion_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| request_from_row(&row)).transpose()
    }

    /// Newest first; `model` narrows to one model, `pending_only` to those
    /// waiting for a decision.
    pub async fn promotion_requests(
        &self,
        model: Option<&str>,
        pending_only: bool,
        limit: i64,
    ) -> Result<Vec<PromotionRequest>> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM promotion_requests \
             WHERE ($1 IS NULL OR model = $1) AND ($2 = 0 OR state = $4) \
             ORDER BY requested_ms DESC, id DESC LIMIT $3"
        ))
        .bind(model)
        .bind(i64::from(pending_only))
        .bind(limit)
        .bind(RequestState::Pending.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Moves a request from `from` to `to`, recording who decided and why.
    /// `false`: it was no longer in `from` (someone else decided first).
    pub async fn decide_promotion_request(
        &self,
        id: &str,
        from: RequestState,
        to: RequestState,
        decided_by: &str,
        comment: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE promotion_requests SET state = $1, decided_by = $2, decided_ms = $3, comment = $4 \
             WHERE id = $5 AND state = $6",
        )
        .bind(to.as_str())
        .bind(decided_by)
        .bind(now_ms())
        .bind(comment)
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Completes an `approving` request with what the promotion did.
    pub async fn finish_promotion_request(
        &self,
        id: &str,
        to: RequestState,
        outcome: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE promotion_requests SET state = $1, outcome = $2 WHERE id = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(outcome)
        .bind(id)
        .bind(RequestState::Approving.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn request_from_row(row: &AnyRow) -> Result<PromotionRequest> {
    let evidence: String = row.try_get("evidence")?;
    let settings: Option<String> = row.try_get("settings")?;
    let rollout: Option<String> = row.try_get("rollout")?;
    let state: String = row.try_get("state")?;
    Ok(PromotionRequest {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        version: row.try_get("version")?,
        reason: row.try_get("reason")?,
        requested_by: row.try_get("requested_by")?,
        requested_ms: row.try_get("requested_ms")?,
        base_version: row.try_get("base_version")?,
        evidence: serde_json::from_str(&evidence)
            .map_err(|err| Error::Internal(format!("evidence of a promotion request: {err}")))?,
        settings: settings
            .map(|settings| serde_json::from_str(&settings))
            .transpose()
            .map_err(|err| Error::Internal(format!("settings of a request: {err}")))?,
        rollout: rollout
            .map(|rollout| serde_json::from_str(&rollout))
            .transpose()
            .map_err(|err| Error::Internal(format!("the rollout of a request: {err}")))?,
        state: RequestState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("unknown request state {state:?}")))?,
        decided_by: row.try_get("decided_by")?,
        decided_ms: row.try_get("decided_ms")?,
        comment: row.try_get("comment")?,
        outcome: row.try_get("outcome")?,
    })
}
