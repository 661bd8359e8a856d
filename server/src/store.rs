//! Slipway's own state. SQLite for one machine, PostgreSQL for several
//! replicas; one code path through sqlx's `Any` driver, portable SQL only.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let sqlite_dir = sqlite_path(url)
            .and_then(|path| Path::new(path).parent())
            .filter(|dir| !dir.as_os_str().is_empty());
        if let Some(dir) = sqlite_dir {
            std::fs::create_dir_all(dir)?;
        }
        // SQLite takes one writer at a time; a single connection avoids
        // "database is locked" between our own connections.
        let max_connections = if sqlite_path(url).is_some() { 1 } else { 10 };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn record_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<AuditEvent> {
        let event = AuditEvent {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: now_ms(),
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            detail: detail.into(),
        };
        sqlx::query(
            "INSERT INTO audit_events (id, at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.id)
        .bind(event.at_ms)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.subject)
        .bind(&event.detail)
        .execute(&self.pool)
        .await?;
        Ok(event)
    }

    /// Newest first.
    pub async fn recent_events(
        &self,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, subject, detail FROM audit_events \
             WHERE ($1 IS NULL OR subject = $1) ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(subject)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at_ms")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn sqlite_paths_are_found_in_the_url_forms_sqlx_accepts() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/s.db?mode=rwc"),
            Some("/var/lib/s.db")
        );
        assert_eq!(sqlite_path("sqlite://data/s.db"), Some("data/s.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
