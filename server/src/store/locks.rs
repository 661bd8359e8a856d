//! One change of a model at a time, across replicas too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use sqlx::pool::PoolConnection;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

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

    /// Waits for the turn of `model`: changes of one model go one at a
    /// time, in order of arrival.
    pub(super) async fn lock(&self, pool: &AnyPool, model: &str) -> Result<ModelLock> {
        let mutex = self
            .by_model
            .lock()
            .expect("model locks")
            .entry(model.to_string())
            .or_default()
            .clone();
        let in_process = mutex.lock_owned().await;
        let key = lock_key(model);
        if !self.postgres {
            return Ok(ModelLock {
                _in_process: in_process,
                advisory: None,
                key,
            });
        }
        let permit = self
            .connections
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut connection = pool.acquire().await?;
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

/// The advisory lock's key for `model`: the same on every replica.
fn lock_key(model: &str) -> i64 {
    let digest = Sha256::digest(format!("slipway model {model}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}
