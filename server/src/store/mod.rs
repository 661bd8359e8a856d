//! Slipway's own state. SQLite for one machine, PostgreSQL for several
//! replicas; one code path through sqlx's `Any` driver, portable SQL only.
//! Each file holds one table's rows (or a few that belong together).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};

use crate::error::Result;

pub mod accounts;
pub mod audit;
pub mod bindings;
pub mod deliveries;
pub mod deployments;
pub mod drafts;
pub mod launches;
pub mod load_tests;
pub mod locks;
pub mod notifications;
pub mod promotions;
pub mod replicas;
pub mod requests;
pub mod rollouts;
pub mod serving_objects;
pub mod tokens;
pub mod try_answers;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    model_locks: std::sync::Arc<locks::ModelLocks>,
    /// This process among the replicas on the database: what it starts is
    /// recorded as its own, and settled only once it is gone.
    instance: std::sync::Arc<str>,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let sqlite_dir = sqlite_path(url)
            .and_then(|path| Path::new(path).parent())
            .filter(|dir| !dir.as_os_str().is_empty());
        if let Some(dir) = sqlite_dir {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
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
        if let Some(path) = sqlite_path(url) {
            keep_private(path)?;
        }
        let postgres = sqlite_path(url).is_none();
        Ok(Self {
            pool,
            model_locks: std::sync::Arc::new(locks::ModelLocks::new(postgres, max_connections)),
            instance: uuid::Uuid::new_v4().simple().to_string().into(),
        })
    }

    /// This process's id among the replicas (new at every start).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The database file (sessions, tokens' hashes, channels' secrets) is its
/// owner's alone, with its journal files.
fn keep_private(path: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for file in [
        path.to_string(),
        format!("{path}-wal"),
        format!("{path}-shm"),
        format!("{path}-journal"),
    ] {
        if std::path::Path::new(&file).exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

pub fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
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
