//! The audit log as the use cases write it: an action that is over as it
//! is recorded, or one recorded before its side effect and completed with
//! its outcome after, so that a crash in between leaves `pending`, never
//! nothing.

use std::fmt::Display;

use app::model::AuditAction;

use crate::error::Result;
use crate::store::Store;

/// How an audit entry ended, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Begun and not (yet) reported back.
    Pending,
    Done,
    /// Done, with what came of it (`done: v3`).
    DoneWith(String),
    Failed(String),
}

impl Outcome {
    pub fn failed(why: impl Display) -> Self {
        Outcome::Failed(why.to_string())
    }

    /// The one text form the log keeps.
    pub fn text(&self) -> String {
        match self {
            Outcome::Pending => "pending".into(),
            Outcome::Done => "done".into(),
            Outcome::DoneWith(note) => format!("done: {note}"),
            Outcome::Failed(why) => format!("failed: {why}"),
        }
    }

    /// Whether an entry's text says the action was carried out.
    pub fn is_done(text: &str) -> bool {
        text == "done" || text.starts_with("done: ")
    }
}

/// Who did what to which subject (`model:…`, `launch:…`, `user:…`).
#[derive(Clone)]
pub struct Audit {
    store: Store,
}

/// An entry written before its action: `complete` it with the outcome.
#[must_use = "an entry left pending says the action never reported back"]
pub struct Begun {
    id: String,
    store: Store,
}

impl Audit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// An action that is complete as it is recorded.
    pub async fn record(
        &self,
        actor: &str,
        action: AuditAction,
        subject: &str,
        detail: &str,
    ) -> Result<()> {
        self.store
            .record_event(actor, action.as_str(), subject, detail)
            .await
            .map(drop)
    }

    /// The final outcome of every `action` entry about `subject`: how an
    /// action that outlives its request (a training) ended.
    pub async fn settle(&self, action: AuditAction, subject: &str, outcome: Outcome) -> Result<()> {
        self.store
            .complete_events_of(action.as_str(), subject, &outcome.text())
            .await
    }

    /// Records an action before it is carried out.
    pub async fn begin(
        &self,
        actor: &str,
        action: AuditAction,
        subject: &str,
        detail: &str,
    ) -> Result<Begun> {
        let id = self
            .store
            .begin_event(actor, action.as_str(), subject, detail)
            .await?;
        Ok(Begun {
            id,
            store: self.store.clone(),
        })
    }
}

impl Begun {
    /// The entry's id, for a journal row that settles it after a crash.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn complete(self, outcome: Outcome) -> Result<()> {
        self.store.complete_event(&self.id, &outcome.text()).await
    }

    /// Completes unless the outcome was written meanwhile (by `settle`).
    pub async fn complete_unless_settled(self, outcome: Outcome) -> Result<()> {
        self.store
            .complete_pending_event(&self.id, &outcome.text())
            .await
    }

    /// Completes with the action's own result (`done`, or `failed: why`)
    /// and hands that result back.
    pub async fn finish<T>(self, result: Result<T>) -> Result<T> {
        let outcome = match &result {
            Ok(_) => Outcome::Done,
            Err(err) => Outcome::failed(err),
        };
        self.complete(outcome).await?;
        result
    }
}

/// An entry begun earlier (by id), completed now: a crash's leftovers.
pub async fn complete_by_id(store: &Store, id: &str, outcome: Outcome) -> Result<()> {
    store.complete_event(id, &outcome.text()).await
}
