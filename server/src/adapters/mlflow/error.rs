//! How talking to MLflow fails.

#[derive(Debug, Clone, thiserror::Error)]
pub enum MlflowError {
    #[error("cannot reach MLflow at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// Reached, but no answer in time (a frozen or overloaded MLflow): not
    /// retried, the time is spent.
    #[error("MLflow at {url} is not answering: no answer within {seconds} s")]
    NoAnswer { url: String, seconds: u64 },
    #[error("MLflow at {url} answered {status} {code}: {message}")]
    Api {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from MLflow at {url} ({endpoint}): {detail}")]
    Decode {
        url: String,
        endpoint: String,
        detail: String,
    },
}

impl MlflowError {
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } => true,
            MlflowError::NoAnswer { .. } => false,
            MlflowError::Api { status, .. } => matches!(status, 502..=504),
            MlflowError::Decode { .. } => false,
        }
    }
}

/// Input that cannot become an MLflow filter or sort clause; said to the
/// person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(pub String);
