//! The server's one error type. The first variants are what a person can
//! act on, worded for them; the rest are internals, which users see only
//! as a reference to the log (`web::errors` decides, at the edge).

use app::model::FieldErrors;

use crate::adapters::mlflow::{BadFilter, MlflowError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was asked for does not exist (a model, a launch, a request).
    #[error("{0}")]
    NotFound(String),
    /// The state changed since the person looked (Production moved, the
    /// form was changed by someone else, a request was decided).
    #[error("{0}")]
    Conflict(String),
    /// What was sent is wrong, and nothing was done.
    #[error("{0}")]
    Invalid(Invalid),
    /// No session.
    #[error("Sign-in required")]
    Unauthenticated,
    /// `app::access::authorize` refused; says why.
    #[error("{0}")]
    Forbidden(String),
    /// What the cluster, a local process or a model server refused or
    /// failed to do, in words for the person who asked (see
    /// `adapters::cluster::explain`).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Mlflow(#[from] MlflowError),

    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("internal: {0}")]
    Internal(String),
}

/// What is wrong with what was sent: problems with the whole of it, and
/// problems of single fields (a form's field name → what is wrong).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalid {
    pub problems: Vec<String>,
    pub fields: FieldErrors,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields = self
            .fields
            .iter()
            .map(|(field, problem)| format!("{field}: {problem}"));
        let all: Vec<String> = self.problems.iter().cloned().chain(fields).collect();
        f.write_str(&all.join("; "))
    }
}

impl Error {
    /// Invalid input, in one sentence.
    pub fn invalid(problem: impl Into<String>) -> Self {
        Error::Invalid(Invalid {
            problems: vec![problem.into()],
            fields: FieldErrors::new(),
        })
    }
}

impl From<BadFilter> for Error {
    fn from(bad: BadFilter) -> Self {
        Error::invalid(bad.0)
    }
}

impl From<app::access::Denied> for Error {
    fn from(denied: app::access::Denied) -> Self {
        Error::Forbidden(denied.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
