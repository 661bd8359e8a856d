//! Where the server's errors become what a user sees: an `AppError` (for
//! pages and server functions) or an HTTP response. Internals are logged
//! under a short reference and only the reference is sent.

use app::error::AppError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::adapters::mlflow::MlflowError;
use crate::error::Error;

impl From<Error> for AppError {
    fn from(err: Error) -> Self {
        match err {
            Error::NotFound(message) => AppError::NotFound(message),
            Error::Conflict(message) => AppError::Conflict(message),
            Error::Invalid(invalid) => AppError::InvalidInput(invalid.to_string()),
            Error::Unauthenticated => AppError::Unauthenticated,
            Error::Forbidden(reason) => AppError::Forbidden(reason),
            Error::Unavailable(message) => AppError::Unavailable(message),
            Error::Mlflow(err) => mlflow_error(err),
            Error::Config(message) => AppError::InvalidInput(message),
            internal => {
                let reference = error_reference();
                tracing::error!(%reference, error = %internal, "internal error");
                AppError::Internal { reference }
            }
        }
    }
}

/// What users see of an MLflow failure: which MLflow, and what it said.
fn mlflow_error(err: MlflowError) -> AppError {
    match err {
        MlflowError::Unreachable { url, detail } => AppError::MlflowUnreachable { url, detail },
        MlflowError::NoAnswer { url, seconds } => AppError::MlflowUnreachable {
            url,
            detail: format!("it is not answering (nothing within {seconds} s)"),
        },
        MlflowError::Api {
            url,
            status,
            code,
            message,
        } => AppError::Mlflow {
            url,
            status,
            code,
            message,
        },
        MlflowError::Decode {
            url,
            endpoint,
            detail,
        } => AppError::Mlflow {
            url,
            status: 200,
            code: "UNEXPECTED_RESPONSE".into(),
            message: format!("{endpoint}: {detail}"),
        },
    }
}

/// A plain-text answer with the error's status: what a form or a download
/// answers when it cannot go back to a page.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let shown = AppError::from(self);
        (status_of(&shown), shown.to_string()).into_response()
    }
}

/// The HTTP status that goes with an error shown to a user.
pub fn status_of(error: &AppError) -> StatusCode {
    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A short token that ties what a user sees to the full error in the log.
fn error_reference() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
