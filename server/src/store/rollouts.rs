//! Canary rollouts: written before each change they make, ended with how.

use app::model::{CanaryAnalysis, CheckVerdict, Rollout, RolloutCheck, RolloutMode, RolloutState};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// The newest checks of a rollout its page and the API list.
pub const CHECKS_SHOWN: i64 = 50;

const COLUMNS: &str = "id, model, stable_version, canary_version, weight, state, started_by, \
                       started_ms, updated_ms, ended_ms, outcome, analysis, failed_checks, mode, \
                       approved_weight";

impl Store {
    /// Records a rollout as progressing. `false`: the deployment has an
    /// active one already.
    pub async fn begin_rollout(&self, rollout: &Rollout) -> Result<bool> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO rollouts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, '', $10, 0, $11, $12)"
        ))
        .bind(&rollout.id)
        .bind(&rollout.model)
        .bind(rollout.stable_version.as_deref())
        .bind(&rollout.canary_version)
        .bind(i64::from(rollout.weight))
        .bind(RolloutState::Progressing.as_str())
        .bind(&rollout.started_by)
        .bind(rollout.started_ms)
        .bind(rollout.started_ms)
        .bind(rollout.analysis.as_ref().map(analysis_json).transpose()?)
        .bind(rollout.mode.as_str())
        .bind(rollout.approved_weight.map(i64::from))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Every active rollout, by model.
    pub async fn active_rollouts(&self) -> Result<Vec<Rollout>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rollouts WHERE state IN ($1, $2) ORDER BY model"
        ))
        .bind(RolloutState::Progressing.as_str())
        .bind(RolloutState::Promoting.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// The newest rollouts of `model`, newest first.
    pub async fn rollouts(&self, model: &str, limit: i64) -> Result<Vec<Rollout>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rollouts WHERE model = $1 ORDER BY started_ms DESC, id LIMIT $2"
        ))
        .bind(model)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// Sets a progressing rollout's weight. `false`: it is no longer
    /// progressing.
    pub async fn set_rollout_weight(&self, id: &str, weight: u8) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE rollouts SET weight = $1, updated_ms = $2 WHERE id = $3 AND state = $4",
        )
        .bind(i64::from(weight))
        .bind(now_ms())
        .bind(id)
        .bind(RolloutState::Progressing.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a check of a progressing rollout at `weight`, counting it
    /// if it failed; the failed checks now. `None`: the rollout is no longer
    /// progressing at that weight (a person moved it meanwhile), and nothing
    /// was recorded.
    pub async fn record_check(&self, id: &str, check: &RolloutCheck) -> Result<Option<u32>> {
        let mut tx = self.pool.begin().await?;
        let failed = i64::from(check.verdict == CheckVerdict::Failed);
        let counted = sqlx::query(
            "UPDATE rollouts SET failed_checks = failed_checks + $1 \
             WHERE id = $2 AND state = $3 AND weight = $4 RETURNING failed_checks",
        )
        .bind(failed)
        .bind(id)
        .bind(RolloutState::Progressing.as_str())
        .bind(i64::from(check.weight))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(counted) = counted else {
            return Ok(None);
        };
        let failed_checks: i64 = counted.try_get("failed_checks")?;
        sqlx::query(
            "INSERT INTO rollout_checks (id, rollout_id, at_ms, weight, requests, success_percent, p99_ms, query_value, verdict, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(uuid::Uuid::now_v7().simple().to_string())
        .bind(id)
        .bind(check.at_ms)
        .bind(i64::from(check.weight))
        .bind(i64::try_from(check.requests).unwrap_or(i64::MAX))
        .bind(check.success_percent)
        .bind(check.p99_ms)
        .bind(check.query_value)
        .bind(check.verdict.as_str())
        .bind(&check.detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(u32::try_from(failed_checks).unwrap_or(u32::MAX)))
    }

    /// A rollout's checks, newest first.
    pub async fn rollout_checks(&self, id: &str, limit: i64) -> Result<Vec<RolloutCheck>> {
        let rows = sqlx::query(
            "SELECT at_ms, weight, requests, success_percent, p99_ms, query_value, verdict, detail \
             FROM rollout_checks WHERE rollout_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let verdict: String = row.try_get("verdict")?;
                let weight: i64 = row.try_get("weight")?;
                let requests: i64 = row.try_get("requests")?;
                Ok(RolloutCheck {
                    at_ms: row.try_get("at_ms")?,
                    weight: u8::try_from(weight).unwrap_or_default(),
                    requests: u64::try_from(requests).unwrap_or_default(),
                    success_percent: row.try_get("success_percent")?,
                    p99_ms: row.try_get("p99_ms")?,
                    query_value: row.try_get("query_value")?,
                    verdict: CheckVerdict::parse(&verdict).ok_or_else(|| {
                        Error::Internal(format!("unknown check verdict {verdict:?}"))
                    })?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Moves a rollout from `from` to `to`, with `outcome` (an end is
    /// stamped). `false`: it was no longer in `from`.
    pub async fn move_rollout(
        &self,
        id: &str,
        from: RolloutState,
        to: RolloutState,
        outcome: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE rollouts SET state = $1, outcome = $2, updated_ms = $3, ended_ms = $4 \
             WHERE id = $5 AND state = $6",
        )
        .bind(to.as_str())
        .bind(outcome)
        .bind(now)
        .bind((!to.is_active()).then_some(now))
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn rollout_from_row(row: &AnyRow) -> Result<Rollout> {
    let state: String = row.try_get("state")?;
    let weight: i64 = row.try_get("weight")?;
    Ok(Rollout {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        stable_version: row.try_get("stable_version")?,
        canary_version: row.try_get("canary_version")?,
        weight: u8::try_from(weight)
            .map_err(|_| Error::Internal(format!("a rollout's weight {weight}")))?,
        state: RolloutState::parse(&state)
            .ok_or_else(|| Error::Internal(format!("unknown rollout state {state:?}")))?,
        started_by: row.try_get("started_by")?,
        started_ms: row.try_get("started_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        outcome: row.try_get("outcome")?,
        analysis: row
            .try_get::<Option<String>, _>("analysis")?
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|err| Error::Internal(format!("a rollout's analysis: {err}")))
            })
            .transpose()?,
        failed_checks: u32::try_from(row.try_get::<i64, _>("failed_checks")?).unwrap_or_default(),
        mode: {
            let mode: String = row.try_get("mode")?;
            RolloutMode::parse(&mode)
                .ok_or_else(|| Error::Internal(format!("unknown rollout mode {mode:?}")))?
        },
        approved_weight: row
            .try_get::<Option<i64>, _>("approved_weight")?
            .and_then(|weight| u8::try_from(weight).ok()),
    })
}

fn analysis_json(analysis: &CanaryAnalysis) -> Result<String> {
    serde_json::to_string(analysis)
        .map_err(|err| Error::Internal(format!("a rollout's analysis: {err}")))
}
