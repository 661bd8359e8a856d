//! Types exchanged between the UI and the control plane. They cross the wire
//! as server-function arguments and results, so they stay plain data.

use serde::{Deserialize, Serialize};

/// Who is making a request. The auth gate in the server decides this for every
/// request; until login exists everyone is `anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub authenticated: bool,
}

impl User {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            authenticated: false,
        }
    }
}

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 500;

/// One page of a list searched by name (experiments, registered models).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// `name`, `created` or `updated` (experiments), `name` or `updated` (models).
    pub order_by: Option<String>,
    pub descending: bool,
    /// MLflow's opaque token for the page after the previous one.
    pub page_token: Option<String>,
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub lifecycle_stage: String,
    pub artifact_location: String,
    /// Epoch milliseconds, as MLflow reports them.
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentPage {
    pub experiments: Vec<Experiment>,
    pub next_page_token: Option<String>,
    /// The MLflow server the page came from, shown so users know what they browse.
    pub mlflow_url: String,
}

/// A registered model as the models list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub description: String,
    pub last_updated: Option<i64>,
    /// The newest version in each stage, as (stage, version).
    pub latest_by_stage: Vec<(String, String)>,
    /// (alias, version), sorted by alias.
    pub aliases: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsPage {
    pub models: Vec<ModelSummary>,
    pub next_page_token: Option<String>,
    pub mlflow_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelVersionInfo {
    pub model: String,
    pub version: String,
    /// `None`, `Staging`, `Production` or `Archived`.
    pub stage: String,
    pub aliases: Vec<String>,
    pub status: String,
    /// As MLflow records it: `runs:/…`, `models:/m-…` or a storage URI.
    pub source: String,
    pub run_id: String,
    pub created: Option<i64>,
    pub last_updated: Option<i64>,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDetail {
    pub name: String,
    pub description: String,
    pub created: Option<i64>,
    pub last_updated: Option<i64>,
    pub aliases: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Newest first.
    pub versions: Vec<ModelVersionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDetail {
    pub version: ModelVersionInfo,
    /// Where the version's files are stored, with `models:/…` sources resolved.
    pub storage_uri: String,
}

/// One page of an experiment's runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    pub experiment_id: String,
    /// MLflow's filter syntax, passed through: `metrics.auc > 0.9 AND params.optimizer = 'adam'`.
    pub filter: Option<String>,
    /// `run_name`, `start_time`, `end_time`, `status`, `user_id`, `params.<key>` or `metrics.<key>`.
    pub order_by: Option<String>,
    pub descending: bool,
    pub page_token: Option<String>,
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: String,
    pub run_name: String,
    pub status: String,
    pub user: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub params: Vec<(String, String)>,
    /// The latest value of each metric.
    pub metrics: Vec<(String, f64)>,
}

impl RunRow {
    /// The run's name, or its id when it has none.
    pub fn display_name(&self) -> &str {
        if self.run_name.is_empty() {
            &self.run_id
        } else {
            &self.run_name
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunsPage {
    pub runs: Vec<RunRow>,
    /// Every param and metric key on this page, sorted: the table's columns.
    pub param_keys: Vec<String>,
    pub metric_keys: Vec<String>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub experiment_id: String,
    pub artifact_uri: String,
    pub tags: Vec<(String, String)>,
    /// Models the run logged (MLflow 3 logged-model ids).
    pub logged_models: Vec<String>,
    /// Registry versions made from this run.
    pub registered_versions: Vec<ModelVersionInfo>,
}

/// One metric of one run, every recorded value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricHistory {
    pub run_id: String,
    pub run_name: String,
    pub key: String,
    /// (step, timestamp in epoch ms, value), in step order.
    pub points: Vec<(i64, i64, f64)>,
}

/// What a metric chart's x axis shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChartAxis {
    #[default]
    Step,
    /// Seconds since the run's first value of that metric.
    Time,
}

/// A metric's chart, drawn on the server as SVG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricChart {
    pub metric: String,
    pub svg: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub path: String,
    pub is_dir: bool,
    pub size: Option<i64>,
}

/// Whose artifacts to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactOwner {
    Run(String),
    /// An MLflow 3 logged model, by id (`m-…`).
    LoggedModel(String),
}
