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

impl FromServerFnError for AppError {
    type Encoder = crate::codec::JsonTextEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::ServerFn(value)
    }
}

impl From<crate::access::Denied> for AppError {
    fn from(denied: crate::access::Denied) -> Self {
        AppError::Forbidden(denied.0)
    }
}
