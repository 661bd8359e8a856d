//! Service tokens: the hash of each secret, its grant, and when it was
//! made, last used, and revoked.

use app::access::Grant;
use app::model::ServiceToken;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

const COLUMNS: &str =
    "id, name, owner, grant_json, created_ms, expires_ms, last_used_ms, revoked_ms";

impl Store {
    /// `false`: the owner has a live token of that name already.
    pub async fn insert_token(&self, token: &ServiceToken, secret_hash: &str) -> Result<bool> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO service_tokens ({COLUMNS}, secret_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.owner)
        .bind(grant_json(&token.grant))
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .bind(token.last_used_ms)
        .bind(token.revoked_ms)
        .bind(secret_hash)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// The token whose secret hashes to `secret_hash`, revoked or not.
    pub async fn token_by_secret(&self, secret_hash: &str) -> Result<Option<ServiceToken>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM service_tokens WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub async fn token(&self, id: &str) -> Result<Option<ServiceToken>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM service_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    /// Newest first; `owner` `None`: everyone's.
    pub async fn tokens(&self, owner: Option<&str>) -> Result<Vec<ServiceToken>> {
        let rows =
            match owner {
                Some(owner) => sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM service_tokens WHERE owner = $1 ORDER BY created_ms DESC"
                ))
                .bind(owner)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM service_tokens ORDER BY created_ms DESC"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(token_from_row).collect()
    }

    /// `false`: it was revoked already (or does not exist).
    pub async fn revoke_token(&self, id: &str, by: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE service_tokens SET revoked_ms = $1, revoked_by = $2 \
             WHERE id = $3 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn touch_token(&self, id: &str, at_ms: i64) -> Result<()> {
        sqlx::query("UPDATE service_tokens SET last_used_ms = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn grant_json(grant: &Grant) -> String {
    serde_json::to_string(grant).expect("a grant serialises")
}

fn token_from_row(row: &AnyRow) -> Result<ServiceToken> {
    let grant: String = row.try_get("grant_json")?;
    Ok(ServiceToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        grant: serde_json::from_str(&grant)
            .map_err(|err| Error::Internal(format!("a token's grant: {err}")))?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}
