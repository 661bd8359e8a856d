//! Cluster objects Slipway created for deployments: what it may delete.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// A cluster object Slipway created for a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingObject {
    pub target: String,
    pub namespace: String,
    pub name: String,
    pub model: String,
}

impl Store {
    /// Records an object before it is first applied. `false`: it was
    /// recorded before (so Slipway has created it at least once).
    pub async fn remember_serving_object(&self, object: &ServingObject) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO serving_objects (target, namespace, name, model, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, namespace, name) DO NOTHING",
        )
        .bind(&object.target)
        .bind(&object.namespace)
        .bind(&object.name)
        .bind(&object.model)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    pub async fn serving_objects(&self) -> Result<Vec<ServingObject>> {
        let rows = sqlx::query(
            "SELECT target, namespace, name, model FROM serving_objects ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ServingObject {
                    target: row.try_get("target")?,
                    namespace: row.try_get("namespace")?,
                    name: row.try_get("name")?,
                    model: row.try_get("model")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    pub async fn forget_serving_object(&self, object: &ServingObject) -> Result<()> {
        sqlx::query(
            "DELETE FROM serving_objects WHERE target = $1 AND namespace = $2 AND name = $3",
        )
        .bind(&object.target)
        .bind(&object.namespace)
        .bind(&object.name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
