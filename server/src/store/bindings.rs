//! Deployment bindings: which model is served where. The catalog file's
//! are seeded at start-up and belong to the file; the app's are made,
//! changed and deleted by people. Every change raises the row's revision,
//! so a change made from a stale form is refused, not merged.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, now_ms};
use crate::catalog::DeploymentBinding;
use crate::error::{Error, Result};

/// Who owns a binding: the catalog file (changed by editing it and
/// restarting) or the app (changed from its pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedBy {
    Catalog,
    App,
}

impl ManagedBy {
    fn as_str(self) -> &'static str {
        match self {
            ManagedBy::Catalog => "catalog",
            ManagedBy::App => "app",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    pub binding: DeploymentBinding,
    pub managed_by: ManagedBy,
    pub revision: i64,
    pub changed_by: String,
    pub changed_ms: i64,
}

/// What seeding from the catalog changed, per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    Added,
    Changed,
    Removed,
}

/// A person's change of a binding: who (as the history shows them) and
/// what, in words. It enters the deployment's history in the binding's own
/// transaction, so a pass that sees the change also sees who made it.
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    pub by: &'a str,
    pub detail: &'a str,
}

const COLUMNS: &str = "model, spec, managed_by, revision, changed_by, changed_ms";

impl Store {
    /// Every binding, by model name.
    pub async fn bindings(&self) -> Result<Vec<BindingRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployment_bindings ORDER BY model"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(binding_record).collect()
    }

    pub async fn binding(&self, model: &str) -> Result<Option<BindingRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployment_bindings WHERE model = $1"
        ))
        .bind(model)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(binding_record).transpose()
    }

    /// Makes the catalog file's bindings the file-managed ones: new ones
    /// added, changed ones (and app-made ones of a model the file now binds)
    /// replaced, file-managed ones the file no longer has removed. Replicas
    /// starting with the same file agree, so running it twice changes nothing.
    pub async fn seed_bindings(
        &self,
        catalog: &[DeploymentBinding],
    ) -> Result<Vec<(String, Seeded)>> {
        let mut changes = Vec::new();
        for binding in catalog {
            let spec = spec_json(binding)?;
            let existing = self.binding(&binding.model).await?;
            let seeded = match &existing {
                None => Seeded::Added,
                Some(record)
                    if record.managed_by == ManagedBy::Catalog && record.binding == *binding =>
                {
                    continue;
                }
                Some(_) => Seeded::Changed,
            };
            // An upsert: another replica may seed the same row at once.
            sqlx::query(
                "INSERT INTO deployment_bindings (model, spec, managed_by, revision, changed_by, changed_ms) \
                 VALUES ($1, $2, 'catalog', 1, 'catalog', $3) \
                 ON CONFLICT (model) DO UPDATE SET spec = excluded.spec, managed_by = 'catalog', \
                 revision = deployment_bindings.revision + 1, changed_by = 'catalog', changed_ms = excluded.changed_ms \
                 WHERE deployment_bindings.spec <> excluded.spec OR deployment_bindings.managed_by <> 'catalog'",
            )
            .bind(&binding.model)
            .bind(spec)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
            let mut connection = self.pool.acquire().await?;
            remember_approval(&mut connection, binding).await?;
            changes.push((binding.model.clone(), seeded));
        }
        for record in self.bindings().await? {
            let in_file = catalog
                .iter()
                .any(|binding| binding.model == record.binding.model);
            if record.managed_by == ManagedBy::Catalog && !in_file {
                sqlx::query(
                    "DELETE FROM deployment_bindings WHERE model = $1 AND managed_by = 'catalog'",
                )
                .bind(&record.binding.model)
                .execute(&self.pool)
                .await?;
                changes.push((record.binding.model, Seeded::Removed));
            }
        }
        Ok(changes)
    }

    /// Adds an app-managed binding; false if the model is bound already.
    pub async fn insert_binding(
        &self,
        binding: &DeploymentBinding,
        edit: Edit<'_>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deployment_bindings (model, spec, managed_by, revision, changed_by, changed_ms) \
             VALUES ($1, $2, $3, 1, $4, $5)",
        )
        .bind(&binding.model)
        .bind(spec_json(binding)?)
        .bind(ManagedBy::App.as_str())
        .bind(edit.by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                edited(tx, binding, edit).await?;
                Ok(true)
            }
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces an app-managed binding if it is still at `revision`; false
    /// if it changed meanwhile, is gone, or belongs to the catalog file.
    pub async fn update_binding(
        &self,
        binding: &DeploymentBinding,
        revision: i64,
        edit: Edit<'_>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE deployment_bindings SET spec = $1, revision = revision + 1, changed_by = $2, changed_ms = $3 \
             WHERE model = $4 AND revision = $5 AND managed_by = $6",
        )
        .bind(spec_json(binding)?)
        .bind(edit.by)
        .bind(now_ms())
        .bind(&binding.model)
        .bind(revision)
        .bind(ManagedBy::App.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        edited(tx, binding, edit).await?;
        Ok(true)
    }

    /// Whether `model`'s deployment requires approval, or, with none, its
    /// last one did: what a new deployment of it is held to.
    pub async fn approval_required(&self, model: &str) -> Result<bool> {
        if let Some(record) = self.binding(model).await? {
            return Ok(record.binding.requires_approval);
        }
        let row = sqlx::query("SELECT model FROM approval_required WHERE model = $1")
            .bind(model)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Deletes an app-managed binding if it is still at `revision`; false
    /// otherwise (as `update_binding`).
    pub async fn delete_binding(&self, model: &str, revision: i64, edit: Edit<'_>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM deployment_bindings WHERE model = $1 AND revision = $2 AND managed_by = $3",
        )
        .bind(model)
        .bind(revision)
        .bind(ManagedBy::App.as_str())
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() != 1 {
            return Ok(false);
        }
        Store::record_settings_change(&mut tx, model, edit).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Completes an insert or update: whether it requires approval is kept
/// beyond a deletion, and the change enters the history, all at once.
async fn edited(
    mut tx: Transaction<'static, Any>,
    binding: &DeploymentBinding,
    edit: Edit<'_>,
) -> Result<()> {
    remember_approval(&mut tx, binding).await?;
    Store::record_settings_change(&mut tx, &binding.model, edit).await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps whether the binding requires approval beyond its deletion.
async fn remember_approval(
    connection: &mut AnyConnection,
    binding: &DeploymentBinding,
) -> Result<()> {
    let query = if binding.requires_approval {
        sqlx::query(
            "INSERT INTO approval_required (model, since_ms) VALUES ($1, $2) \
             ON CONFLICT (model) DO NOTHING",
        )
        .bind(&binding.model)
        .bind(now_ms())
    } else {
        sqlx::query("DELETE FROM approval_required WHERE model = $1").bind(&binding.model)
    };
    query.execute(connection).await?;
    Ok(())
}

fn spec_json(binding: &DeploymentBinding) -> Result<String> {
    serde_json::to_string(binding)
        .map_err(|err| Error::Internal(format!("the binding of {}: {err}", binding.model)))
}

fn binding_record(row: &AnyRow) -> Result<BindingRecord> {
    let model: String = row.try_get("model")?;
    let spec: String = row.try_get("spec")?;
    let binding = serde_json::from_str(&spec)
        .map_err(|err| Error::Internal(format!("the stored binding of {model}: {err}")))?;
    let managed_by = match row.try_get::<String, _>("managed_by")?.as_str() {
        "catalog" => ManagedBy::Catalog,
        _ => ManagedBy::App,
    };
    Ok(BindingRecord {
        binding,
        managed_by,
        revision: row.try_get("revision")?,
        changed_by: row.try_get("changed_by")?,
        changed_ms: row.try_get("changed_ms")?,
    })
}
