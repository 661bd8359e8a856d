//! Typed client for MLflow's REST API (`/api/2.0/mlflow/…`).
//!
//! MLflow omits empty lists from its answers (`{}` rather than
//! `{"experiments": []}`), so every list field defaults. Reads are retried on
//! connection failures and gateway errors; nothing else is.

use std::time::Duration;

use app::error::AppError;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use url::Url;

use crate::config::MlflowAuth;

const READ_ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    #[error("cannot reach MLflow at {url}: {detail}")]
    Unreachable { url: String, detail: String },
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
    pub fn to_app_error(&self) -> AppError {
        match self {
            MlflowError::Unreachable { url, detail } => AppError::MlflowUnreachable {
                url: url.clone(),
                detail: detail.clone(),
            },
            MlflowError::Api {
                url,
                status,
                code,
                message,
            } => AppError::Mlflow {
                url: url.clone(),
                status: *status,
                code: code.clone(),
                message: message.clone(),
            },
            MlflowError::Decode {
                url,
                endpoint,
                detail,
            } => AppError::Mlflow {
                url: url.clone(),
                status: 200,
                code: "UNEXPECTED_RESPONSE".into(),
                message: format!("{endpoint}: {detail}"),
            },
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } => true,
            MlflowError::Api { status, .. } => matches!(status, 502..=504),
            MlflowError::Decode { .. } => false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    #[serde(default)]
    pub artifact_location: String,
    #[serde(default)]
    pub lifecycle_stage: String,
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchExperimentsResponse {
    #[serde(default)]
    pub experiments: Vec<Experiment>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchExperiments {
    pub max_results: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    error_code: Option<String>,
    message: Option<String>,
}

#[derive(Clone)]
pub struct MlflowClient {
    /// Always ends in `/`, so joining keeps a path prefix such as `/mlflow/`.
    base: Url,
    http: reqwest::Client,
    auth: MlflowAuth,
}

impl MlflowClient {
    pub fn new(base: &Url, auth: MlflowAuth, timeout: Duration) -> reqwest::Result<Self> {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { base, http, auth })
    }

    /// The server's address as users know it (no trailing slash).
    pub fn url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    pub async fn health(&self) -> Result<(), MlflowError> {
        let url = self.endpoint("health");
        let request = self.authorize(self.http.get(url)).timeout(HEALTH_TIMEOUT);
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        self.check_status(response).await.map(|_| ())
    }

    pub async fn search_experiments(
        &self,
        request: &SearchExperiments,
    ) -> Result<SearchExperimentsResponse, MlflowError> {
        self.read(
            Method::POST,
            "api/2.0/mlflow/experiments/search",
            Some(request),
        )
        .await
    }

    /// A read: safe to repeat, so transient failures are retried.
    async fn read<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, MlflowError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut attempt = 1;
        loop {
            match self.call(method.clone(), path, body).await {
                Err(err) if err.is_retryable() && attempt < READ_ATTEMPTS => {
                    tracing::debug!(%err, attempt, path, "retrying MLflow read");
                    tokio::time::sleep(RETRY_BACKOFF * attempt).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn call<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, MlflowError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let mut request = self.authorize(self.http.request(method, self.endpoint(path)));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        let response = self.check_status(response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|err| self.unreachable(&err))?;
        serde_json::from_slice(&bytes).map_err(|err| MlflowError::Decode {
            url: self.url(),
            endpoint: path.to_string(),
            detail: err.to_string(),
        })
    }

    async fn check_status(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, MlflowError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(self.api_error(status, &text))
    }

    fn api_error(&self, status: StatusCode, text: &str) -> MlflowError {
        // MLflow's own errors are JSON; a proxy's or basic auth's are not.
        let (code, message) = match serde_json::from_str::<ApiErrorBody>(text) {
            Ok(ApiErrorBody {
                error_code,
                message,
            }) => (
                error_code.unwrap_or_else(|| format!("HTTP_{}", status.as_u16())),
                message.unwrap_or_default(),
            ),
            Err(_) => (
                format!("HTTP_{}", status.as_u16()),
                status.canonical_reason().unwrap_or("error").to_string(),
            ),
        };
        MlflowError::Api {
            url: self.url(),
            status: status.as_u16(),
            code,
            message,
        }
    }

    fn unreachable(&self, err: &reqwest::Error) -> MlflowError {
        let detail = if err.is_timeout() {
            "no answer within the timeout".to_string()
        } else {
            root_cause(err)
        };
        MlflowError::Unreachable {
            url: self.url(),
            detail,
        }
    }

    fn endpoint(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("endpoint paths are valid relative URLs")
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            MlflowAuth::None => request,
            MlflowAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            MlflowAuth::Bearer(token) => request.bearer_auth(token),
        }
    }
}

/// reqwest's top-level message ("error sending request for url …") hides
/// the useful part ("Connection refused"), which is at the bottom of the chain.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// An MLflow filter clause matching names that contain `term`, any case.
/// The term is quoted so it can never become filter syntax.
pub fn name_contains_filter(term: &str) -> Result<String, AppError> {
    let quote = match (term.contains('\''), term.contains('"')) {
        (false, _) => '\'',
        (true, false) => '"',
        (true, true) => {
            return Err(AppError::InvalidInput(
                "A name search cannot contain both ' and \" quotes".into(),
            ));
        }
    };
    Ok(format!("name ILIKE {quote}%{term}%{quote}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_lists_decode_as_empty() {
        let page: SearchExperimentsResponse = serde_json::from_str("{}").unwrap();
        assert!(page.experiments.is_empty());
        assert!(page.next_page_token.is_none());
        let experiment: Experiment =
            serde_json::from_str(r#"{"experiment_id":"7","name":"x"}"#).unwrap();
        assert!(experiment.tags.is_empty());
    }

    #[test]
    fn api_errors_keep_mlflows_code_and_message() {
        let client = MlflowClient::new(
            &"http://mlflow:5000/prefix".parse().unwrap(),
            MlflowAuth::None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(client.url(), "http://mlflow:5000/prefix");
        let err = client.api_error(
            StatusCode::BAD_REQUEST,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"bad filter"}"#,
        );
        assert_eq!(
            err.to_string(),
            "MLflow at http://mlflow:5000/prefix answered 400 INVALID_PARAMETER_VALUE: bad filter"
        );
        let err = client.api_error(
            StatusCode::UNAUTHORIZED,
            "<html>You are not authenticated</html>",
        );
        assert_eq!(
            err.to_string(),
            "MLflow at http://mlflow:5000/prefix answered 401 HTTP_401: Unauthorized"
        );
        assert!(!err.is_retryable());
        assert!(client.api_error(StatusCode::BAD_GATEWAY, "").is_retryable());
        assert_eq!(
            client
                .endpoint("api/2.0/mlflow/experiments/search")
                .as_str(),
            "http://mlflow:5000/prefix/api/2.0/mlflow/experiments/search"
        );
    }

    #[test]
    fn name_filters_quote_the_term() {
        assert_eq!(name_contains_filter("iris").unwrap(), "name ILIKE '%iris%'");
        assert_eq!(
            name_contains_filter("it's").unwrap(),
            "name ILIKE \"%it's%\""
        );
        assert!(name_contains_filter("a'b\"c").is_err());
    }
}
