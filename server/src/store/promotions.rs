//! Changes of a model's Production version, one at a time per model, each
//! a row written before MLflow is asked and completed after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::{Store, now_ms};
use crate::error::Result;

/// Serialises changes per model: in this process with a fair (first come,
/// first served) mutex, and across replicas with a PostgreSQL advisory
/// lock held on one connection, released when that connection closes (so
/// a replica that dies releases it). SQLite serves one replica only.
pub(super) struct ModelLocks {
    by_model: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// A held lock holds a connection; at most half the pool does, so the
    /// holders can always write their rows.
    connections: Arc<Semaphore>,
    postgres: bool,
}

impl ModelLocks {
    pub(super) fn new(postgres: bool, max_connections: u32) -> Self {
        Self {
            by_model: Mutex::default(),
            connections: Arc::new(Semaphore::new((max_connections / 2).max(1) as usize)),
            postgres,
        }
    }
}

/// Held while one change of `model` is carried out; dropping it lets the
/// next one in.
pub struct ModelLock {
    _in_process: OwnedMutexGuard<()>,
    /// PostgreSQL only: the connection that holds the advisory lock.
    advisory: Option<(PoolConnection<sqlx::Any>, OwnedSemaphorePermit)>,
    key: i64,
}

impl Drop for ModelLock {
    fn drop(&mut self) {
        if let Some((mut connection, permit)) = self.advisory.take() {
            let key = self.key;
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                // No runtime to unlock on: closing the connection unlocks.
                drop(connection.detach());
                return;
            };
            runtime.spawn(async move {
                let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut *connection)
                    .await;
                // Never back to the pool still locked: closed instead, the
                // session ends and PostgreSQL releases the lock.
                if unlocked.is_err() {
                    drop(connection.detach());
                }
                drop(permit);
            });
        }
    }
}

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
    /// marking, marked, failed, refused, interrupted.
    pub state: String,
    pub message: String,
    pub created_ms: i64,
}

/// How "expected nothing in Production" is kept, apart from "not given".
const EXPECTED_NOTHING: &str = "";

impl Store {
    /// Waits for the turn of `model`: changes of one model go one at a
    /// time, in order of arrival.
    pub async fn lock_model(&self, model: &str) -> Result<ModelLock> {
        let mutex = self
            .model_locks
            .by_model
            .lock()
            .expect("model locks")
            .entry(model.to_string())
            .or_default()
            .clone();
        let in_process = mutex.lock_owned().await;
        let key = lock_key(model);
        if !self.model_locks.postgres {
            return Ok(ModelLock {
                _in_process: in_process,
                advisory: None,
                key,
            });
        }
        let permit = self
            .model_locks
            .connections
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut connection = self.pool.acquire().await?;
        // Selected from, so the answer has a column type the `Any` driver
        // knows (the function itself returns `void`).
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_lock($1)) AS locked")
            .bind(key)
            .execute(&mut *connection)
            .await?;
        Ok(ModelLock {
            _in_process: in_process,
            advisory: Some((connection, permit)),
            key,
        })
    }

    /// Records a change about to be asked of MLflow (`marking`); its id.
    pub async fn begin_promotion(&self, promotion: &NewPromotion<'_>) -> Result<String> {
        self.insert_promotion(promotion, "marking", "").await
    }

    /// Records a change refused before MLflow was asked.
    pub async fn refuse_promotion(&self, promotion: &NewPromotion<'_>, why: &str) -> Result<()> {
        let id = self.insert_promotion(promotion, "refused", why).await?;
        self.finish_promotion(&id, "refused", why).await
    }

    async fn insert_promotion(
        &self,
        promotion: &NewPromotion<'_>,
        state: &str,
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
        .bind(state)
        .bind(message)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn finish_promotion(&self, id: &str, state: &str, message: &str) -> Result<()> {
        sqlx::query(
            "UPDATE promotions SET state = $1, message = $2, finished_ms = $3 WHERE id = $4",
        )
        .bind(state)
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
             created_ms FROM promotions WHERE state = 'marking' ORDER BY created_ms",
        )
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
    /// the first deployment recorded for it.
    pub async fn claim_promotion(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT id, cause, actor FROM promotions WHERE model = $1 AND version = $2 \
             AND state = 'marked' AND deployed_ms IS NULL ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(model)
        .bind(version)
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
        state: row.try_get("state")?,
        message: row.try_get("message")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// The advisory lock's key for `model`: the same on every replica.
fn lock_key(model: &str) -> i64 {
    let digest = Sha256::digest(format!("slipway model {model}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}
