//! The audit log's rows: who did what to which subject, and how it ended.

use app::model::AuditEntry;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_ms};
use crate::error::Result;

impl Store {
    /// An action that is complete as it is recorded (a sign-in, an account change).
    pub async fn record_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<AuditEntry> {
        let id = uuid::Uuid::new_v4().to_string();
        self.insert_event(&id, actor, action, subject, detail, "done")
            .await
    }

    /// Records an action before it is carried out; `complete_event` adds
    /// its outcome. Returns the entry's id.
    pub async fn begin_event(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.insert_event(&id, actor, action, subject, detail, "pending")
            .await?;
        Ok(id)
    }

    pub async fn complete_event(&self, id: &str, outcome: &str) -> Result<()> {
        sqlx::query("UPDATE audit_events SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Like `complete_event`, unless an outcome was written already.
    pub async fn complete_pending_event(&self, id: &str, outcome: &str) -> Result<()> {
        sqlx::query("UPDATE audit_events SET outcome = $1 WHERE id = $2 AND outcome = 'pending'")
            .bind(outcome)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets the outcome of every `action` entry about `subject`: how a
    /// long action (a training) ended, after its entry was written.
    pub async fn complete_events_of(
        &self,
        action: &str,
        subject: &str,
        outcome: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE audit_events SET outcome = $1 WHERE action = $2 AND subject = $3")
            .bind(outcome)
            .bind(action)
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_event(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
        outcome: &str,
    ) -> Result<AuditEntry> {
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            detail: detail.into(),
            outcome: outcome.into(),
        };
        sqlx::query(
            "INSERT INTO audit_events (id, at_ms, actor, action, subject, detail, outcome)              VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.subject)
        .bind(&entry.detail)
        .bind(&entry.outcome)
        .execute(&self.pool)
        .await?;
        Ok(entry)
    }

    /// Entries matching `query` (dates already turned into a time range),
    /// newest first.
    pub async fn search_events(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        from_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, action, subject, detail, outcome FROM audit_events \
             WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR subject = $3) \
             AND at_ms >= $4 AND at_ms < $5 ORDER BY at_ms DESC, id DESC LIMIT $6",
        )
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(from_ms)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Newest first.
    pub async fn recent_events(
        &self,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, action, subject, detail, outcome FROM audit_events \
             WHERE ($1 IS NULL OR subject = $1) ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(subject)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
        outcome: row.try_get("outcome")?,
    })
}
