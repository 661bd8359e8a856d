//! Accounts and sessions.

use app::access::Grant;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// Where an account's identity is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSource {
    /// A password kept (hashed) here.
    Local,
    /// The OpenID Connect provider; grants come from its groups.
    Oidc,
}

impl AccountSource {
    fn as_str(self) -> &'static str {
        match self {
            AccountSource::Local => "local",
            AccountSource::Oidc => "oidc",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "oidc" {
            AccountSource::Oidc
        } else {
            AccountSource::Local
        }
    }
}

#[derive(Clone)]
pub struct Account {
    pub name: String,
    /// argon2 PHC string; `None` for single sign-on accounts.
    pub password_hash: Option<String>,
    pub grants: Vec<Grant>,
    pub source: AccountSource,
    pub disabled: bool,
    pub created_ms: i64,
}

// The hash is not the password, but it is still no one's business.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("grants", &self.grants)
            .field("source", &self.source)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A live session and the account behind it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub account: Account,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

const ACCOUNT_COLUMNS: &str =
    "u.name, u.password_hash, u.grants, u.source, u.disabled, u.created_ms";

impl Store {
    /// Creates an account; `false` when the name is taken.
    pub async fn create_account(&self, account: &Account) -> Result<bool> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO users (name, password_hash, grants, source, disabled, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&account.name)
        .bind(account.password_hash.as_deref())
        .bind(grants_json(&account.grants))
        .bind(account.source.as_str())
        .bind(i64::from(account.disabled))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn account(&self, name: &str) -> Result<Option<Account>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM users u WHERE u.name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| account_from_row(&row)).transpose()
    }

    /// By name.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM users u ORDER BY u.name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// `false` when there is no such account.
    pub async fn set_account_grants(&self, name: &str, grants: &[Grant]) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET grants = $1, updated_ms = $2 WHERE name = $3")
            .bind(grants_json(grants))
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disabling also ends the account's sessions. `false`: no such account.
    pub async fn set_account_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET disabled = $1, updated_ms = $2 WHERE name = $3")
            .bind(i64::from(disabled))
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if disabled {
            self.end_sessions_of(name).await?;
        }
        Ok(done.rows_affected() > 0)
    }

    /// A new password ends the account's sessions. `false`: no such account.
    pub async fn set_account_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1, updated_ms = $2 WHERE name = $3")
                .bind(password_hash)
                .bind(now_ms())
                .bind(name)
                .execute(&self.pool)
                .await?;
        self.end_sessions_of(name).await?;
        Ok(done.rows_affected() > 0)
    }

    /// A single sign-on account as its provider describes it now: created on
    /// first login, its grants replaced on every later one. A disabled account
    /// stays disabled.
    /// The single sign-on account of the provider's person (`issuer`,
    /// `subject`) with `grants` now: found by that person, whatever the
    /// name claim says today; else made under `name`, or bound to the
    /// account of that name made before accounts recorded their person.
    /// A name held by a local account or by another person is refused.
    pub async fn upsert_sso_account(
        &self,
        issuer: &str,
        subject: &str,
        name: &str,
        grants: &[Grant],
    ) -> Result<std::result::Result<Account, String>> {
        // Twice at most: a first sign-in of the same person racing this one.
        for _ in 0..2 {
            if let Some(known) = self.sso_account_name(issuer, subject).await? {
                self.set_account_grants(&known, grants).await?;
                return Ok(Ok(self.account(&known).await?.expect("just found")));
            }
            let now = now_ms();
            let inserted = sqlx::query(
                "INSERT INTO users (name, password_hash, grants, source, disabled, created_ms, updated_ms, \
                 oidc_issuer, oidc_subject) VALUES ($1, NULL, $2, $3, 0, $4, $4, $5, $6)",
            )
            .bind(name)
            .bind(grants_json(grants))
            .bind(AccountSource::Oidc.as_str())
            .bind(now)
            .bind(issuer)
            .bind(subject)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => return Ok(Ok(self.account(name).await?.expect("just made"))),
                Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {}
                Err(err) => return Err(err.into()),
            }
            let Some(existing) = self.account(name).await? else {
                continue;
            };
            if existing.source != AccountSource::Oidc {
                return Ok(Err(format!(
                    "{name} is a local account; single sign-on cannot take it over"
                )));
            }
            let bound = sqlx::query(
                "UPDATE users SET oidc_issuer = $1, oidc_subject = $2, grants = $3, updated_ms = $4 \
                 WHERE name = $5 AND oidc_subject IS NULL",
            )
            .bind(issuer)
            .bind(subject)
            .bind(grants_json(grants))
            .bind(now)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if bound == 1 {
                return Ok(Ok(self.account(name).await?.expect("just bound")));
            }
            if self.sso_account_name(issuer, subject).await?.is_none() {
                return Ok(Err(format!(
                    "the name {name} belongs to another person's single sign-on account \
                     (another subject at the provider); an admin must tell them apart"
                )));
            }
        }
        Err(Error::Internal(format!(
            "single sign-on account {name} changed under two sign-ins at once"
        )))
    }

    /// The name of the single sign-on account of (`issuer`, `subject`).
    pub async fn sso_account_name(&self, issuer: &str, subject: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT name FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2")
                .bind(issuer)
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|row| row.try_get("name")).transpose()?)
    }

    pub async fn create_session(&self, token_hash: &str, user_name: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_name, created_ms, last_seen_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_name)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS}, s.created_ms AS session_created_ms, s.last_seen_ms \
             FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionRecord {
                account: account_from_row(&row)?,
                created_ms: row.try_get("session_created_ms")?,
                last_seen_ms: row.try_get("last_seen_ms")?,
            })
        })
        .transpose()
    }

    pub async fn touch_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_ms = $1 WHERE token_hash = $2")
            .bind(now_ms())
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn end_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn end_sessions_of(&self, user_name: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(user_name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes sessions idle since `idle_before` or created before `created_before`.
    pub async fn end_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen_ms < $1 OR created_ms < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn grants_json(grants: &[Grant]) -> String {
    serde_json::to_string(grants).expect("grants serialise")
}

fn account_from_row(row: &AnyRow) -> Result<Account> {
    let grants: String = row.try_get("grants")?;
    let source: String = row.try_get("source")?;
    let disabled: i64 = row.try_get("disabled")?;
    Ok(Account {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        grants: serde_json::from_str(&grants)
            .map_err(|err| Error::Internal(format!("grants of an account: {err}")))?,
        source: AccountSource::parse(&source),
        disabled: disabled != 0,
        created_ms: row.try_get("created_ms")?,
    })
}

/// A single sign-on login between the redirect and the callback.
pub struct OidcFlow {
    pub pkce_verifier: String,
    pub nonce: String,
    pub next: String,
}

/// How long a login may take at the provider.
const OIDC_FLOW_MS: i64 = 10 * 60 * 1000;

impl Store {
    pub async fn start_oidc_flow(&self, state_hash: &str, flow: &OidcFlow) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM oidc_flows WHERE created_ms < $1")
            .bind(now - OIDC_FLOW_MS)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_flows (state_hash, pkce_verifier, nonce, next, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state_hash)
        .bind(&flow.pkce_verifier)
        .bind(&flow.nonce)
        .bind(&flow.next)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The flow, once: it is deleted as it is read.
    pub async fn take_oidc_flow(&self, state_hash: &str) -> Result<Option<OidcFlow>> {
        let row = sqlx::query(
            "SELECT pkce_verifier, nonce, next, created_ms FROM oidc_flows WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?;
        let deleted = sqlx::query("DELETE FROM oidc_flows WHERE state_hash = $1")
            .bind(state_hash)
            .execute(&self.pool)
            .await?;
        let Some(row) = row.filter(|_| deleted.rows_affected() == 1) else {
            return Ok(None);
        };
        let created_ms: i64 = row.try_get("created_ms")?;
        if now_ms() - created_ms > OIDC_FLOW_MS {
            return Ok(None);
        }
        Ok(Some(OidcFlow {
            pkce_verifier: row.try_get("pkce_verifier")?,
            nonce: row.try_get("nonce")?,
            next: row.try_get("next")?,
        }))
    }
}
