//! Typed client for MLflow's REST API (`/api/2.0/mlflow/…`).
//!
//! MLflow omits empty lists from its answers (`{}` rather than
//! `{"experiments": []}`), so every list field defaults. Reads are retried on
//! connection failures and gateway errors; nothing else is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use url::Url;

use crate::metrics::Metrics;
use bytes::Bytes;
use cache::ReadCache;

pub mod cache;
mod error;
mod types;
pub mod webhook;

pub use error::{BadFilter, MlflowError};
pub use types::*;

/// How Slipway authenticates to MLflow.
#[derive(Clone, PartialEq, Eq)]
pub enum MlflowAuth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

/// Never the secrets: a `Debug` of the configuration may reach a log.
impl std::fmt::Debug for MlflowAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MlflowAuth::None => f.write_str("None"),
            MlflowAuth::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: \"…\" }}")
            }
            MlflowAuth::Bearer(_) => f.write_str("Bearer(\"…\")"),
        }
    }
}

const READ_ATTEMPTS: u32 = 3;
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole artifact file, once MLflow has started sending it.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
const METRIC_HISTORY_PAGE_SIZE: u32 = 10_000;
/// MLflow's maximum for `registered-models/search`.
const REGISTERED_MODELS_PAGE: u32 = 1000;

/// What makes two reads the same: method, URL with its query, and body.
fn read_key(request: reqwest::RequestBuilder) -> String {
    match request.build() {
        Ok(request) => format!(
            "{} {} {}",
            request.method(),
            request.url(),
            request
                .body()
                .and_then(|body| body.as_bytes())
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        ),
        // Unbuildable: it will fail the same way when fetched, uncached.
        Err(err) => format!("unbuildable {err}"),
    }
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
    /// A request's whole budget, its retries included.
    deadline: Duration,
    /// Where each call is counted and timed, once set.
    metrics: Option<Arc<Metrics>>,
    /// Answers shared between readers (see [`ReadCache`]); this client's
    /// writes drop them.
    cache: Option<Arc<ReadCache>>,
    /// Whether this client's reads go through `cache` (pages), or only its
    /// writes drop it (background work, which must see MLflow as it is).
    reads_cached: bool,
}

impl MlflowClient {
    /// `deadline` bounds each call, retries included: short for what a page
    /// waits on, longer for background work.
    pub fn new(base: &Url, auth: MlflowAuth, deadline: Duration) -> reqwest::Result<Self> {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(deadline)
            .connect_timeout(deadline.min(Duration::from_secs(5)))
            // MLflow's server (uvicorn) closes idle connections after 5 s; a
            // pooled one it is closing fails a write, which is never retried.
            .pool_idle_timeout(Duration::from_secs(4))
            .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base,
            http,
            auth,
            deadline,
            metrics: None,
            cache: None,
            reads_cached: false,
        })
    }

    /// The same client, its reads answered from `cache` where they can be.
    pub fn reading_through(self, cache: Arc<ReadCache>) -> Self {
        Self {
            cache: Some(cache),
            reads_cached: true,
            ..self
        }
    }

    /// The same client, its writes dropping what `cache` kept.
    pub fn invalidating(self, cache: Arc<ReadCache>) -> Self {
        Self {
            cache: Some(cache),
            reads_cached: false,
            ..self
        }
    }

    /// MLflow changed outside Slipway (a webhook said so): reads fetch again.
    pub fn forget_reads(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate();
        }
    }

    /// The same client, its calls counted and timed in `metrics`.
    pub fn observed_by(self, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics: Some(metrics),
            ..self
        }
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
        self.post_read("experiments/search", request).await
    }

    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, MlflowError> {
        let response: GetExperimentResponse = self
            .get("experiments/get", &[("experiment_id", experiment_id)])
            .await?;
        response
            .experiment
            .ok_or_else(|| self.decode_error("experiments/get", "no experiment in the answer"))
    }

    pub async fn search_runs(
        &self,
        request: &SearchRuns,
    ) -> Result<SearchRunsResponse, MlflowError> {
        self.post_read("runs/search", request).await
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        let response: GetRunResponse = self.get("runs/get", &[("run_id", run_id)]).await?;
        Ok(response.run)
    }

    /// Every recorded value of one metric, in MLflow's order, across all pages.
    pub async fn metric_history(
        &self,
        run_id: &str,
        metric_key: &str,
    ) -> Result<Vec<Metric>, MlflowError> {
        let mut metrics = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let page = self
                .metric_history_page(
                    run_id,
                    metric_key,
                    METRIC_HISTORY_PAGE_SIZE,
                    page_token.as_deref(),
                )
                .await?;
            metrics.extend(page.metrics);
            page_token = page.next_page_token;
            if page_token.is_none() {
                return Ok(metrics);
            }
        }
    }

    pub async fn metric_history_page(
        &self,
        run_id: &str,
        metric_key: &str,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<MetricHistoryPage, MlflowError> {
        let max_results = max_results.to_string();
        let mut query = vec![
            ("run_id", run_id),
            ("metric_key", metric_key),
            ("max_results", max_results.as_str()),
        ];
        query.extend(page_token.map(|token| ("page_token", token)));
        self.get("metrics/get-history", &query).await
    }

    /// One page of registered models (MLflow allows up to 1,000 per page).
    pub async fn search_registered_models(
        &self,
        filter: Option<&str>,
        order_by: &str,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<SearchRegisteredModelsResponse, MlflowError> {
        let max_results = max_results.to_string();
        let mut query = vec![
            ("max_results", max_results.as_str()),
            ("order_by", order_by),
        ];
        query.extend(filter.map(|filter| ("filter", filter)));
        query.extend(page_token.map(|token| ("page_token", token)));
        self.get("registered-models/search", &query).await
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        let response: GetRegisteredModelResponse =
            self.get("registered-models/get", &[("name", name)]).await?;
        Ok(response.registered_model)
    }

    /// One page of a model's versions; searches leave out `aliases`.
    pub async fn search_model_versions(
        &self,
        filter: &str,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<SearchModelVersionsResponse, MlflowError> {
        let max_results = max_results.to_string();
        let mut query = vec![("filter", filter), ("max_results", max_results.as_str())];
        query.extend(page_token.map(|token| ("page_token", token)));
        self.get("model-versions/search", &query).await
    }

    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let response: GetModelVersionResponse = self
            .get(
                "model-versions/get",
                &[("name", name), ("version", version)],
            )
            .await?;
        Ok(response.model_version)
    }

    /// Where a version's files really are (`models:/m-…` sources resolve to storage).
    pub async fn model_version_download_uri(
        &self,
        name: &str,
        version: &str,
    ) -> Result<String, MlflowError> {
        let response: DownloadUriResponse = self
            .get(
                "model-versions/get-download-uri",
                &[("name", name), ("version", version)],
            )
            .await?;
        Ok(response.artifact_uri)
    }

    /// The entries of one directory of a run's artifacts (`path` relative to the root).
    pub async fn list_run_artifacts(
        &self,
        run_id: &str,
        path: Option<&str>,
    ) -> Result<ListArtifactsResponse, MlflowError> {
        let mut query = vec![("run_id", run_id)];
        query.extend(path.map(|path| ("path", path)));
        self.get("artifacts/list", &query).await
    }

    /// The entries of one directory of an MLflow 3 logged model's artifacts.
    pub async fn list_logged_model_artifacts(
        &self,
        model_id: &str,
        path: Option<&str>,
    ) -> Result<ListArtifactsResponse, MlflowError> {
        let query: Vec<(&str, &str)> = path
            .map(|path| ("artifact_directory_path", path))
            .into_iter()
            .collect();
        let method_path = format!(
            "logged-models/{}/artifacts/directories",
            url_segment(model_id)
        );
        self.get(&method_path, &query).await
    }

    /// The experiment of that name, if there is one (deleted ones included).
    pub async fn get_experiment_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Experiment>, MlflowError> {
        match self
            .get::<GetExperimentResponse>("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(found) => Ok(found.experiment),
            Err(MlflowError::Api { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The id of the experiment of that name, created if missing. A
    /// concurrent creation of the same name is resolved by reading it back.
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, MlflowError> {
        if let Some(experiment) = self.get_experiment_by_name(name).await? {
            return Ok(experiment.experiment_id);
        }
        #[derive(Deserialize)]
        struct Created {
            experiment_id: String,
        }
        match self
            .write::<_, Created>("experiments/create", &serde_json::json!({ "name": name }))
            .await
        {
            Ok(created) => Ok(created.experiment_id),
            Err(MlflowError::Api { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => self
                .get_experiment_by_name(name)
                .await?
                .map(|experiment| experiment.experiment_id)
                .ok_or_else(|| {
                    self.decode_error("experiments/get-by-name", "created, then not found")
                }),
            Err(err) => Err(err),
        }
    }

    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        user: &str,
        start_time: i64,
        tags: &[Tag],
    ) -> Result<RunInfo, MlflowError> {
        #[derive(Deserialize)]
        struct Created {
            run: Run,
        }
        let body = serde_json::json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            // Shown as the run's user by MLflow's UI and ours.
            "user_id": user,
            "start_time": start_time,
            "tags": tags,
        });
        let created: Created = self.write("runs/create", &body).await?;
        Ok(created.run.info)
    }

    pub async fn log_params(
        &self,
        run_id: &str,
        params: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let params: Vec<_> = params
            .iter()
            .map(|(key, value)| serde_json::json!({ "key": key, "value": value }))
            .collect();
        let body = serde_json::json!({ "run_id": run_id, "params": params });
        self.write::<_, serde_json::Value>("runs/log-batch", &body)
            .await
            .map(|_| ())
    }

    pub async fn set_run_tag(
        &self,
        run_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({ "run_id": run_id, "key": key, "value": value });
        self.write::<_, serde_json::Value>("runs/set-tag", &body)
            .await
            .map(|_| ())
    }

    /// Sets a run's status (`FINISHED`, `FAILED`, `KILLED`) and end time.
    pub async fn end_run(
        &self,
        run_id: &str,
        status: &str,
        end_time: i64,
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({ "run_id": run_id, "status": status, "end_time": end_time });
        self.write::<_, serde_json::Value>("runs/update", &body)
            .await
            .map(|_| ())
    }

    /// Makes `version` the Production one by stage, archiving the previous
    /// Production version(s).
    pub async fn transition_to_production(
        &self,
        model: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.transition_stage(model, version, "Production", true)
            .await
    }

    /// Points `alias` at `version` (moving it if it pointed elsewhere).
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({"name": model, "alias": alias, "version": version});
        self.write::<_, serde_json::Value>("registered-models/alias", &body)
            .await
            .map(|_| ())
    }

    pub async fn delete_alias(&self, model: &str, alias: &str) -> Result<(), MlflowError> {
        let body = serde_json::json!({"name": model, "alias": alias});
        self.write_with::<_, serde_json::Value>(
            reqwest::Method::DELETE,
            "registered-models/alias",
            &body,
        )
        .await
        .map(|_| ())
    }

    /// Moves `version` to `stage`; with `archive_others`, the versions in
    /// that stage before move to Archived.
    pub async fn transition_stage(
        &self,
        model: &str,
        version: &str,
        stage: &str,
        archive_others: bool,
    ) -> Result<(), MlflowError> {
        let body = serde_json::json!({
            "name": model,
            "version": version,
            "stage": stage,
            "archive_existing_versions": archive_others,
        });
        self.write::<_, serde_json::Value>("model-versions/transition-stage", &body)
            .await
            .map(|_| ())
    }

    /// Creates the registered model `name`; `Ok(false)` if it existed.
    pub async fn create_registered_model(&self, name: &str) -> Result<bool, MlflowError> {
        let body = serde_json::json!({ "name": name });
        match self
            .write::<_, serde_json::Value>("registered-models/create", &body)
            .await
        {
            Ok(_) => Ok(true),
            Err(MlflowError::Api { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// A new version of `model` from a run's model: MLflow 3 logged models
    /// by `model_id` (source `models:/<id>`), MLflow 2 by artifact location.
    pub async fn create_model_version(
        &self,
        model: &str,
        source: &str,
        run_id: &str,
        model_id: Option<&str>,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(Deserialize)]
        struct Created {
            model_version: ModelVersion,
        }
        let mut body = serde_json::json!({ "name": model, "source": source, "run_id": run_id });
        if let Some(model_id) = model_id {
            body["model_id"] = serde_json::json!(model_id);
        }
        let created: Created = self.write("model-versions/create", &body).await?;
        Ok(created.model_version)
    }

    /// The description of a registered model (`version: None`) or of one
    /// of its versions.
    pub async fn set_description(
        &self,
        model: &str,
        version: Option<&str>,
        description: &str,
    ) -> Result<(), MlflowError> {
        let (method_path, body) = match version {
            None => (
                "registered-models/update",
                serde_json::json!({"name": model, "description": description}),
            ),
            Some(version) => (
                "model-versions/update",
                serde_json::json!({"name": model, "version": version, "description": description}),
            ),
        };
        self.write_with::<_, serde_json::Value>(reqwest::Method::PATCH, method_path, &body)
            .await
            .map(|_| ())
    }

    /// Sets a tag of a registered model (`version: None`) or of a version.
    pub async fn set_registry_tag(
        &self,
        model: &str,
        version: Option<&str>,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let (method_path, body) = match version {
            None => (
                "registered-models/set-tag",
                serde_json::json!({"name": model, "key": key, "value": value}),
            ),
            Some(version) => (
                "model-versions/set-tag",
                serde_json::json!({"name": model, "version": version, "key": key, "value": value}),
            ),
        };
        self.write::<_, serde_json::Value>(method_path, &body)
            .await
            .map(|_| ())
    }

    pub async fn delete_registry_tag(
        &self,
        model: &str,
        version: Option<&str>,
        key: &str,
    ) -> Result<(), MlflowError> {
        let (method_path, body) = match version {
            None => (
                "registered-models/delete-tag",
                serde_json::json!({"name": model, "key": key}),
            ),
            Some(version) => (
                "model-versions/delete-tag",
                serde_json::json!({"name": model, "version": version, "key": key}),
            ),
        };
        self.write_with::<_, serde_json::Value>(reqwest::Method::DELETE, method_path, &body)
            .await
            .map(|_| ())
    }

    /// A logged model's name (MLflow 3).
    pub async fn logged_model_name(&self, model_id: &str) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            model: LoggedModel,
        }
        #[derive(Deserialize)]
        struct LoggedModel {
            info: LoggedModelInfo,
        }
        #[derive(Deserialize)]
        struct LoggedModelInfo {
            #[serde(default)]
            name: String,
        }
        let path = format!("logged-models/{}", url_segment(model_id));
        let answer: Answer = self.get(&path, &[]).await?;
        Ok(answer.model.info.name)
    }

    /// Every registered model with its latest version per stage and its
    /// aliases: MLflow's largest page holds 1,000, so one request usually.
    pub async fn all_registered_models(&self) -> Result<Vec<RegisteredModel>, MlflowError> {
        let mut models = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .search_registered_models(
                    None,
                    "name ASC",
                    REGISTERED_MODELS_PAGE,
                    token.as_deref(),
                )
                .await?;
            models.extend(page.registered_models);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(models),
            }
        }
    }

    /// One artifact file of a run or of an MLflow 3 logged model, the way
    /// MLflow's own UI reads it (any artifact store the server can read);
    /// the answer must start within the deadline, the body is left to
    /// stream, with time enough for a large file.
    pub async fn open_artifact(
        &self,
        owner: &app::model::ArtifactOwner,
        path: &str,
    ) -> Result<reqwest::Response, MlflowError> {
        let request = match owner {
            app::model::ArtifactOwner::Run(run_id) => self
                .http
                .get(self.endpoint("get-artifact"))
                .query(&[("run_uuid", run_id.as_str()), ("path", path)]),
            app::model::ArtifactOwner::LoggedModel(model_id) => self
                .http
                .get(self.endpoint(&format!(
                    "ajax-api/2.0/mlflow/logged-models/{}/artifacts/files",
                    url_segment(model_id)
                )))
                .query(&[("artifact_file_path", path)]),
        };
        let started = Instant::now();
        let sent = tokio::time::timeout(
            self.deadline,
            self.authorize(request.timeout(DOWNLOAD_TIMEOUT)).send(),
        )
        .await
        .map_err(|_| self.no_answer())
        .and_then(|sent| sent.map_err(|err| self.unreachable(&err)));
        let answer = match sent {
            Ok(response) => self.check_status(response).await,
            Err(err) => Err(err),
        };
        self.observe("get-artifact", &answer, started);
        match (answer, owner) {
            // MLflow 2 answers 500 for a file that is not there; its listing tells.
            (Err(MlflowError::Api { status, .. }), app::model::ArtifactOwner::Run(run_id))
                if status >= 500 && !self.run_artifact_listed(run_id, path).await? =>
            {
                Err(MlflowError::Api {
                    url: self.url(),
                    status: 404,
                    code: "RESOURCE_DOES_NOT_EXIST".into(),
                    message: format!("the run has no artifact {path}"),
                })
            }
            (answer, _) => answer,
        }
    }

    async fn run_artifact_listed(&self, run_id: &str, path: &str) -> Result<bool, MlflowError> {
        let folder = path.rsplit_once('/').map(|(folder, _)| folder);
        let listing = self.list_run_artifacts(run_id, folder).await?;
        Ok(listing
            .files
            .iter()
            .any(|file| !file.is_dir && file.path == path))
    }

    /// A small text artifact under `uri` (a `mlflow-artifacts:` URI, read
    /// through MLflow's artifact proxy); `None` when it is not there.
    pub async fn read_artifact_text(
        &self,
        uri: &str,
        path: &str,
    ) -> Result<Option<String>, MlflowError> {
        let Some(location) = uri.strip_prefix("mlflow-artifacts:/") else {
            return Ok(None);
        };
        let url = self.endpoint(&format!(
            "api/2.0/mlflow-artifacts/artifacts/{}/{path}",
            location.trim_matches('/')
        ));
        let response = self
            .authorize(self.http.get(url))
            .send()
            .await
            .map_err(|err| self.unreachable(&err))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        // MLflow 2 answers 500 for a file that is not there; its listing tells.
        if response.status().is_server_error() && !self.artifact_listed(location, path).await? {
            return Ok(None);
        }
        let response = self.check_status(response).await?;
        let text = response
            .text()
            .await
            .map_err(|err| self.unreachable(&err))?;
        Ok(Some(text))
    }

    /// Whether the artifact proxy lists `path` (a file) under `location`.
    async fn artifact_listed(&self, location: &str, path: &str) -> Result<bool, MlflowError> {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
        let listed = [location.trim_matches('/'), folder]
            .iter()
            .filter(|part| !part.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let url = self.endpoint("api/2.0/mlflow-artifacts/artifacts");
        let listing: ListArtifactsResponse = self
            .read("mlflow-artifacts/list", || {
                self.http.get(url.clone()).query(&[("path", &listed)])
            })
            .await?;
        Ok(listing
            .files
            .iter()
            .any(|file| !file.is_dir && file.path == name))
    }

    /// Every webhook MLflow has (3.3+), across pages.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, MlflowError> {
        let mut webhooks = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("max_results", "100".to_string())];
            if let Some(token) = &token {
                query.push(("page_token", token.clone()));
            }
            let url = self.endpoint("api/2.0/mlflow/webhooks");
            let page: WebhookPage = self
                .read("webhooks", || self.http.get(url.clone()).query(&query))
                .await?;
            webhooks.extend(page.webhooks);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(webhooks),
            }
        }
    }

    /// Returns the new webhook's id.
    pub async fn create_webhook(&self, body: &serde_json::Value) -> Result<String, MlflowError> {
        let created: WebhookResponse = self.write("webhooks", body).await?;
        Ok(created.webhook.webhook_id)
    }

    pub async fn update_webhook(
        &self,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<(), MlflowError> {
        let url = self.endpoint(&format!("api/2.0/mlflow/webhooks/{}", url_segment(id)));
        self.call::<serde_json::Value>("webhooks/update", self.http.patch(url).json(body))
            .await
            .map(|_| ())
    }

    /// A change: sent once, never retried, so it cannot happen twice.
    async fn write<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method_path: &str,
        body: &B,
    ) -> Result<T, MlflowError> {
        self.write_with(reqwest::Method::POST, method_path, body)
            .await
    }

    /// As `write`; MLflow's deletions are DELETEs with a JSON body.
    async fn write_with<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        method_path: &str,
        body: &B,
    ) -> Result<T, MlflowError> {
        let url = self.endpoint(&format!("api/2.0/mlflow/{method_path}"));
        let started = Instant::now();
        let answer = self
            .call(method_path, self.http.request(method, url).json(body))
            .await;
        self.observe(method_path, &answer, started);
        // Even a failed write may have changed something.
        self.forget_reads();
        answer
    }

    async fn get<T: DeserializeOwned>(
        &self,
        method_path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let url = self.endpoint(&format!("api/2.0/mlflow/{method_path}"));
        self.read(method_path, || self.http.get(url.clone()).query(query))
            .await
    }

    /// Searches are POSTs in MLflow's API, but reads all the same.
    async fn post_read<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method_path: &str,
        body: &B,
    ) -> Result<T, MlflowError> {
        let url = self.endpoint(&format!("api/2.0/mlflow/{method_path}"));
        self.read(method_path, || self.http.post(url.clone()).json(body))
            .await
    }

    /// A read: answered from the cache where this client reads through one,
    /// else fetched.
    async fn read<T: DeserializeOwned>(
        &self,
        method_path: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, MlflowError> {
        let bytes = match (&self.cache, self.reads_cached) {
            (Some(cache), true) => {
                cache
                    .get_or_fetch(read_key(build()), || self.fetch_read(method_path, &build))
                    .await?
            }
            _ => self.fetch_read(method_path, &build).await?,
        };
        self.decode(method_path, &bytes)
    }

    /// Safe to repeat, so a failure to connect (or a gateway's) is retried,
    /// within the client's deadline; no answer in time is final.
    async fn fetch_read(
        &self,
        method_path: &str,
        build: &impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes, MlflowError> {
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let answer = tokio::time::timeout_at(deadline, self.fetch(build()))
                .await
                .unwrap_or_else(|_| Err(self.no_answer()));
            self.observe(method_path, &answer, started);
            match answer {
                Err(err)
                    if err.is_retryable()
                        && attempt < READ_ATTEMPTS
                        && tokio::time::Instant::now() + RETRY_BACKOFF * attempt < deadline =>
                {
                    tracing::debug!(%err, attempt, method_path, "retrying MLflow read");
                    tokio::time::sleep(RETRY_BACKOFF * attempt).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn observe<T>(&self, method_path: &str, answer: &Result<T, MlflowError>, started: Instant) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let outcome = match answer {
            Ok(_) => "ok",
            Err(MlflowError::Api { .. }) => "error",
            Err(MlflowError::Unreachable { .. }) => "unreachable",
            Err(MlflowError::NoAnswer { .. }) => "no_answer",
            Err(MlflowError::Decode { .. }) => "undecodable",
        };
        metrics.observe_mlflow(method_path, outcome, started.elapsed().as_secs_f64());
    }

    fn no_answer(&self) -> MlflowError {
        MlflowError::NoAnswer {
            url: self.url(),
            seconds: self.deadline.as_secs(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method_path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, MlflowError> {
        let bytes = self.fetch(request).await?;
        self.decode(method_path, &bytes)
    }

    async fn fetch(&self, request: reqwest::RequestBuilder) -> Result<Bytes, MlflowError> {
        let response = self
            .authorize(request)
            .send()
            .await
            .map_err(|err| self.unreachable(&err))?;
        let response = self.check_status(response).await?;
        response.bytes().await.map_err(|err| self.unreachable(&err))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method_path: &str,
        bytes: &[u8],
    ) -> Result<T, MlflowError> {
        serde_json::from_slice(bytes)
            .map_err(|err| self.decode_error(method_path, &err.to_string()))
    }

    fn decode_error(&self, endpoint: &str, detail: &str) -> MlflowError {
        MlflowError::Decode {
            url: self.url(),
            endpoint: endpoint.to_string(),
            detail: detail.to_string(),
        }
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
        if err.is_timeout() {
            return self.no_answer();
        }
        MlflowError::Unreachable {
            url: self.url(),
            detail: root_cause(err),
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

/// A path segment, percent-encoded, so an id can never change the endpoint.
fn url_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
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
pub fn name_contains_filter(term: &str) -> Result<String, BadFilter> {
    Ok(format!(
        "name ILIKE {}",
        quote_literal(&format!("%{term}%"))?
    ))
}

/// An MLflow filter clause matching exactly this name.
pub fn name_equals_filter(name: &str) -> Result<String, BadFilter> {
    Ok(format!("name = {}", quote_literal(name)?))
}

/// An `order_by` clause for runs/search. `column` is a run attribute
/// (`run_name`, `start_time`, `end_time`, `status`, `user_id`) or
/// `params.<key>` / `metrics.<key>` / `tags.<key>`; keys are backquoted so
/// any name works, and one with a backquote is refused.
pub fn run_order_clause(column: &str, descending: bool) -> Result<String, BadFilter> {
    const ATTRIBUTES: [&str; 5] = ["run_name", "start_time", "end_time", "status", "user_id"];
    let direction = if descending { "DESC" } else { "ASC" };
    if ATTRIBUTES.contains(&column) {
        return Ok(format!("attributes.{column} {direction}"));
    }
    let keyed = ["params.", "metrics.", "tags."].iter().find_map(|prefix| {
        column
            .strip_prefix(prefix)
            .map(|key| (&prefix[..prefix.len() - 1], key))
    });
    match keyed {
        Some((kind, key)) if !key.is_empty() && !key.contains('`') => {
            Ok(format!("{kind}.`{key}` {direction}"))
        }
        _ => Err(BadFilter(format!("Runs cannot be sorted by \"{column}\""))),
    }
}

/// A string literal for MLflow's filter syntax, which has no escapes: the
/// text is quoted with whichever quote it does not contain, so it can never
/// become filter syntax.
fn quote_literal(text: &str) -> Result<String, BadFilter> {
    match (text.contains('\''), text.contains('"')) {
        (false, _) => Ok(format!("'{text}'")),
        (true, false) => Ok(format!("\"{text}\"")),
        (true, true) => Err(BadFilter(
            "A name search cannot contain both ' and \" quotes".into(),
        )),
    }
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
        assert_eq!(name_equals_filter("m").unwrap(), "name = 'm'");
    }

    #[test]
    fn run_order_clauses_name_attributes_or_quoted_keys() {
        assert_eq!(
            run_order_clause("start_time", true).unwrap(),
            "attributes.start_time DESC"
        );
        assert_eq!(
            run_order_clause("metrics.val loss", false).unwrap(),
            "metrics.`val loss` ASC"
        );
        assert_eq!(
            run_order_clause("params.lr", true).unwrap(),
            "params.`lr` DESC"
        );
        for bad in [
            "duration",
            "metrics.",
            "params.a`b",
            "attributes.run_id; DROP",
        ] {
            assert!(run_order_clause(bad, true).is_err(), "{bad}");
        }
    }
}
