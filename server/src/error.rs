use app::error::AppError;

use crate::mlflow::MlflowError;

/// Errors of the control plane. What users may see is decided in
/// `to_app_error`; everything else stays in the server log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal: {0}")]
    Internal(String),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// `app::access::authorize` refused; says why.
    #[error("{0}")]
    Forbidden(String),
    /// What the cluster or a local process refused or failed to do, in
    /// words for the person who asked (see `cluster::explain`): shown as is.
    #[error("{0}")]
    Backend(String),
}

impl From<app::access::Denied> for Error {
    fn from(denied: app::access::Denied) -> Self {
        Error::Forbidden(denied.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn to_app_error(&self) -> AppError {
        match self {
            Error::Mlflow(err) => err.to_app_error(),
            Error::Config(message) => AppError::InvalidInput(message.clone()),
            Error::Forbidden(reason) => AppError::Forbidden(reason.clone()),
            Error::Backend(message) => AppError::Unavailable(message.clone()),
            internal => {
                let reference = error_reference();
                tracing::error!(%reference, error = %internal, "internal error");
                AppError::Internal { reference }
            }
        }
    }
}

impl From<Error> for AppError {
    fn from(err: Error) -> Self {
        err.to_app_error()
    }
}

/// A short token that ties what a user sees to the full error in the log.
fn error_reference() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
