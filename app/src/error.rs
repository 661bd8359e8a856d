//! The error users see. Server functions return it, the UI renders it. It
//! carries what helps a user act (which server, what it said) and never
//! internals: those are logged on the server under a reference.

use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Cannot reach MLflow at {url}: {detail}")]
    MlflowUnreachable { url: String, detail: String },
    #[error("MLflow at {url} answered {status} {code}: {message}")]
    Mlflow {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    /// The state changed since the person looked (Production moved).
    #[error("{0}")]
    Conflict(String),
    /// A service Slipway depends on (an executor, the cluster) refused or failed.
    #[error("{0}")]
    Unavailable(String),
    #[error("Sign-in required")]
    Unauthenticated,
    /// Signed in, but the role does not allow it; says which role would.
    #[error("{0}")]
    Forbidden(String),
    #[error("Internal error (reference {reference}); the server log has the details")]
    Internal { reference: String },
    #[error("{0}")]
    ServerFn(ServerFnErrorErr),
}

impl AppError {
    /// The HTTP status that goes with this error, shown to a user: on a
    /// page, in a form's answer, or from an API call.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden(_) => 403,
            AppError::InvalidInput(_) => 400,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            // What MLflow says of the request itself holds for this one.
            AppError::Mlflow { status: 400, .. } => 400,
            AppError::Mlflow { status: 404, .. } => 404,
            AppError::MlflowUnreachable { .. }
            | AppError::Mlflow { .. }
            | AppError::Unavailable(_) => 502,
            AppError::Internal { .. } | AppError::ServerFn(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = crate::codec::JsonTextEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::ServerFn(value)
    }
}
