//! Types exchanged between the UI and the control plane. They cross the wire
//! as server-function arguments and results, so they stay plain data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const DEFAULT_PAGE_SIZE: u32 = 25;
pub const MAX_PAGE_SIZE: u32 = 500;

/// One page of a list searched by name (experiments, registered models).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ExperimentPage {
    pub experiments: Vec<Experiment>,
    pub next_page_token: Option<String>,
    /// The MLflow server the page came from, shown so users know what they browse.
    pub mlflow_url: String,
    /// When MLflow gave the oldest data on the page (epoch ms): lists are
    /// served from a cache for a few seconds.
    pub as_of: i64,
}

/// A registered model as the models list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ModelSummary {
    pub name: String,
    pub description: String,
    pub last_updated: Option<i64>,
    /// The newest version in each stage, as (stage, version).
    pub latest_by_stage: Vec<(String, String)>,
    /// (alias, version), sorted by alias.
    pub aliases: Vec<(String, String)>,
    pub served_by: Option<ServedBy>,
}

/// How a deployment picks the version it serves, and the version that
/// picks now: with an alias, the alias rules, whatever the stages say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ServedBy {
    /// `stage Production` or `alias @champion`.
    pub marker: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ModelsPage {
    pub models: Vec<ModelSummary>,
    pub next_page_token: Option<String>,
    pub mlflow_url: String,
    /// As in [`ExperimentPage::as_of`].
    pub as_of: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ModelDetail {
    pub name: String,
    pub description: String,
    pub created: Option<i64>,
    pub last_updated: Option<i64>,
    pub aliases: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Newest first.
    pub versions: Vec<ModelVersionInfo>,
    pub served_by: Option<ServedBy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VersionDetail {
    pub version: ModelVersionInfo,
    /// Where the version's files are stored, with `models:/…` sources resolved.
    pub storage_uri: String,
    /// Whether a deployment serves the model (else promoting it deploys nothing).
    pub deployed: bool,
    /// Whether that deployment serves what is in the Production stage: the
    /// stage then changes by Promote and Roll back, not by hand.
    #[serde(default)]
    pub stage_bound: bool,
    /// Its run's params and latest metrics, and its signature; `None` when
    /// MLflow could not give them (a deleted run).
    pub summary: Option<VersionSummary>,
    /// The input example logged with the model (JSON), if any.
    pub input_example: Option<String>,
}

/// One column of a model signature: (`inputs` or `outputs`, name, type).
/// Reads the `inputs: […]` / `outputs: […]` lines [`VersionSummary`] keeps,
/// MLflow's column-based JSON; a tensor spec shows as its dtype and shape.
pub fn signature_columns(signature: &str) -> Vec<(String, String, String)> {
    signature
        .lines()
        .filter_map(|line| line.split_once(": "))
        .flat_map(|(part, spec)| {
            let columns: Vec<serde_json::Value> = serde_json::from_str(spec).unwrap_or_default();
            columns.into_iter().enumerate().map(move |(index, column)| {
                let name = column["name"]
                    .as_str()
                    .map_or_else(|| format!("#{index}"), str::to_string);
                let kind = match (column["type"].as_str(), &column["tensor-spec"]) {
                    (Some("tensor"), spec) => format!(
                        "tensor {} {}",
                        spec["dtype"].as_str().unwrap_or("?"),
                        spec["shape"]
                    ),
                    (Some(kind), _) => kind.to_string(),
                    (None, _) => column.to_string(),
                };
                let optional = if column["required"] == serde_json::Value::Bool(false) {
                    " (optional)"
                } else {
                    ""
                };
                (part.to_string(), name, format!("{kind}{optional}"))
            })
        })
        .collect()
}

/// One page of an experiment's runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunsPage {
    pub runs: Vec<RunRow>,
    /// Every param and metric key on this page, sorted: the table's columns.
    pub param_keys: Vec<String>,
    pub metric_keys: Vec<String>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RunDetail {
    pub run: RunRow,
    pub experiment_id: String,
    /// The experiment's name, when MLflow gave it.
    pub experiment_name: Option<String>,
    pub artifact_uri: String,
    pub tags: Vec<(String, String)>,
    /// Models the run logged (MLflow 3 logged-model ids).
    pub logged_models: Vec<String>,
    /// What "Register model" offers: the models the run logged.
    pub registrable: Vec<RegistrableModel>,
    /// Registry versions made from this run.
    pub registered_versions: Vec<ModelVersionInfo>,
}

/// A model a run logged, as registering it needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RegistrableModel {
    /// The logged model's name and id (MLflow 3), or its artifact folder.
    pub label: String,
    /// What the new version's `source` is.
    pub source: String,
    pub model_id: Option<String>,
}

/// One metric of one run, every recorded value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MetricHistory {
    pub run_id: String,
    pub run_name: String,
    pub key: String,
    /// (step, timestamp in epoch ms, value), in step order.
    pub points: Vec<(i64, i64, f64)>,
}

/// What a metric chart's x axis shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum ChartAxis {
    #[default]
    Step,
    /// Seconds since the run's first value of that metric.
    Time,
}

/// The comparison's plots: a parameter (or metric) against a metric, and
/// every numeric column side by side as parallel coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ComparePlots {
    /// Columns the scatter can plot (`params.<key>`, `metrics.<key>`):
    /// those with a number in every run that has them.
    pub columns: Vec<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    /// Empty when there is nothing to plot.
    pub scatter: String,
    pub parallel: String,
}

/// How metric charts are drawn: the page's `axis`, `scale`, `smooth`, and
/// the x range `from`…`to`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ChartOptions {
    pub axis: ChartAxis,
    /// Only points with x at or above this (a zoom).
    pub x_from: Option<f64>,
    /// Only points with x at or below this.
    pub x_to: Option<f64>,
    /// A log₁₀ y axis (for metrics whose values are all above 0).
    pub log_scale: bool,
    /// Exponential smoothing weight in percent (0: none, at most 99); the
    /// raw values stay drawn, faded.
    pub smoothing: u8,
}

impl ChartOptions {
    /// From the page's query: `axis=step|time`, `scale=linear|log`,
    /// `smooth=0…99`.
    pub fn from_query(
        axis: Option<&str>,
        scale: Option<&str>,
        smooth: Option<&str>,
        range: (Option<&str>, Option<&str>),
    ) -> Result<Self, crate::error::AppError> {
        use crate::error::AppError;
        let axis = match axis {
            None | Some("step") => ChartAxis::Step,
            Some("time") => ChartAxis::Time,
            Some(other) => {
                return Err(AppError::InvalidInput(format!(
                    "The chart axis is step or time, not \"{other}\""
                )));
            }
        };
        let log_scale = match scale {
            None | Some("linear") => false,
            Some("log") => true,
            Some(other) => {
                return Err(AppError::InvalidInput(format!(
                    "The chart scale is linear or log, not \"{other}\""
                )));
            }
        };
        let smoothing = match smooth {
            None => 0,
            Some(text) => text
                .parse::<u8>()
                .ok()
                .filter(|weight| *weight < 100)
                .ok_or_else(|| {
                    AppError::InvalidInput(format!(
                        "Smoothing is a whole percentage from 0 to 99, not \"{text}\""
                    ))
                })?,
        };
        let bound = |text: Option<&str>, name: &str| -> Result<Option<f64>, AppError> {
            match text.map(str::trim).filter(|text| !text.is_empty()) {
                None => Ok(None),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .map(Some)
                    .ok_or_else(|| {
                        AppError::InvalidInput(format!(
                            "The chart's {name} is a number, not \"{text}\""
                        ))
                    }),
            }
        };
        let (x_from, x_to) = (bound(range.0, "from")?, bound(range.1, "to")?);
        if let (Some(from), Some(to)) = (x_from, x_to)
            && from > to
        {
            return Err(AppError::InvalidInput(format!(
                "The chart's range starts after it ends ({from} > {to})"
            )));
        }
        Ok(Self {
            axis,
            x_from,
            x_to,
            log_scale,
            smoothing,
        })
    }
}

/// A metric's chart, drawn on the server as SVG; a metric with one value
/// per run is not a line but numbers (`values`, and no `svg`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct MetricChart {
    pub metric: String,
    pub svg: String,
    /// (run name, value) when every run logged at most one value.
    pub values: Vec<(String, f64)>,
    /// Why the chart is drawn otherwise than asked (log scale of values ≤ 0).
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ArtifactEntry {
    pub path: String,
    pub is_dir: bool,
    pub size: Option<i64>,
}

/// The start of an artifact file, as its viewer shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ArtifactPreview {
    pub path: String,
    pub content: PreviewContent,
    /// Only the first [`PREVIEW_BYTES`] were read; the download has it all.
    pub truncated: bool,
    /// An MLmodel file's signature (as [`VersionSummary::signature`]).
    pub signature: Option<String>,
}

/// How much of a file the viewer reads.
pub const PREVIEW_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum PreviewContent {
    /// Text (JSON pretty-printed when it parses).
    Text(String),
    /// CSV or TSV: the header and the first rows.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Shown by the browser from the file's own URL.
    Image,
    /// Nothing to show: download it.
    Binary,
}

/// Whose artifacts to list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum ArtifactOwner {
    Run(String),
    /// An MLflow 3 logged model, by id (`m-…`).
    LoggedModel(String),
}

/// A parameter type of an `MLproject` entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub enum ParamKind {
    Float,
    Int,
    String,
    Path,
    Uri,
}

impl ParamKind {
    pub fn label(self) -> &'static str {
        match self {
            ParamKind::Float => "float",
            ParamKind::Int => "int",
            ParamKind::String => "string",
            ParamKind::Path => "path",
            ParamKind::Uri => "uri",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct EntryPointSpec {
    pub name: String,
    pub params: Vec<ParamSpec>,
    /// The command template as the project wrote it.
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProjectSpec {
    pub name: String,
    pub description: String,
    pub entry_points: Vec<EntryPointSpec>,
    /// How a local launch may set up its Python (`virtualenv` from its
    /// python_env, `local`: Slipway's own), the default first.
    #[serde(default)]
    pub env_managers: Vec<String>,
    /// Why the environment the project declares is not among them.
    #[serde(default)]
    pub env_note: Option<String>,
}

/// An admin-defined hardware profile, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ProfileSpec {
    pub name: String,
    pub description: String,
    /// e.g. "500m–2" (request–limit).
    pub cpu: String,
    pub memory: String,
    pub gpus: u32,
    pub gpu_resource: String,
    pub node_selector: Vec<(String, String)>,
    pub tolerations: Vec<String>,
    pub priority_class: Option<String>,
    pub max_runtime_secs: Option<i64>,
    /// What a launch on it will not get here (GPUs this machine lacks).
    #[serde(default)]
    pub warning: Option<String>,
}

/// What the launch form offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LaunchCatalog {
    /// `local` or `kubernetes`.
    pub backend: String,
    pub projects: Vec<ProjectSpec>,
    pub profiles: Vec<ProfileSpec>,
}

/// A submitted launch form. `submission` is a token rendered into the form so
/// that a second click (or a resubmitted POST) finds the first launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LaunchRequest {
    pub submission: String,
    pub project: String,
    pub entry_point: String,
    pub params: BTreeMap<String, String>,
    /// An existing experiment's id; ignored when `new_experiment` is given.
    pub experiment_id: String,
    pub new_experiment: String,
    pub profile: String,
    pub run_name: String,
    /// `virtualenv` or `local`; empty: the project's default.
    #[serde(default)]
    pub env_manager: String,
    /// The commit to run, for a project from git (40 hex digits); empty:
    /// the branch's newest, pinned now.
    #[serde(default)]
    pub commit: String,
}

/// Field name → what is wrong with it. Parameter fields are `param.<name>`.
pub type FieldErrors = BTreeMap<String, String>;

crate::text_enum! {
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum LaunchStatus {
        /// Recorded; the MLflow run and the executor are being set up.
        Submitted => "submitted",
        /// The executor has it; waiting for a node, an image or a process.
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl LaunchStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            LaunchStatus::Succeeded | LaunchStatus::Failed | LaunchStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Launch {
    pub id: String,
    pub project: String,
    pub entry_point: String,
    pub params: BTreeMap<String, String>,
    pub profile: String,
    pub backend: String,
    pub experiment_id: Option<String>,
    pub run_id: Option<String>,
    pub run_name: String,
    /// How its Python was set up (`mlflow run --env-manager`): `virtualenv`
    /// or `local`; `docker` on Kubernetes, where the image is the environment.
    pub env_manager: String,
    pub launched_by: String,
    pub status: LaunchStatus,
    /// Why it is pending or how it ended, in the executor's words.
    pub reason: String,
    /// Job name or process id.
    pub executor_ref: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    /// The commit it runs, for a project from git.
    #[serde(default)]
    pub git_commit: Option<String>,
}

/// A live update of a launch, as the launch page receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LaunchUpdate {
    pub status: LaunchStatus,
    pub reason: String,
    pub run_id: Option<String>,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
}

/// What the launch form needs: the catalog, the experiments to choose from,
/// and a fresh submission token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LaunchForm {
    pub catalog: LaunchCatalog,
    /// (id, name), by name.
    pub experiments: Vec<(String, String)>,
    pub submission: String,
}

/// Form field names of the launch form; the launch page's URL uses the same
/// names, so a form sent back with errors is just a link.
pub mod launch_fields {
    pub const SUBMISSION: &str = "submission";
    pub const PROJECT: &str = "project";
    pub const ENTRY_POINT: &str = "entry_point";
    pub const PARAM_PREFIX: &str = "param.";
    pub const EXPERIMENT: &str = "experiment";
    pub const NEW_EXPERIMENT: &str = "new_experiment";
    pub const PROFILE: &str = "profile";
    pub const RUN_NAME: &str = "run_name";
    /// Parameters the entry point does not declare, `name=value` per line.
    pub const EXTRA_PARAMS: &str = "extra_params";
    pub const ENV_MANAGER: &str = "env_manager";
}

impl LaunchRequest {
    /// From form fields or URL query pairs; unknown names are ignored.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        use launch_fields::*;
        let mut request = Self::default();
        for (key, value) in pairs {
            let key = key.as_ref();
            let value = value.into();
            match key {
                SUBMISSION => request.submission = value,
                PROJECT => request.project = value,
                ENTRY_POINT => request.entry_point = value,
                EXPERIMENT => request.experiment_id = value,
                NEW_EXPERIMENT => request.new_experiment = value,
                PROFILE => request.profile = value,
                RUN_NAME => request.run_name = value,
                ENV_MANAGER => request.env_manager = value,
                EXTRA_PARAMS => {
                    for line in value.lines().map(str::trim).filter(|line| !line.is_empty()) {
                        let (name, value) = line.split_once('=').unwrap_or((line, ""));
                        request
                            .params
                            .insert(name.trim().to_string(), value.trim().to_string());
                    }
                }
                _ => {
                    if let Some(name) = key.strip_prefix(PARAM_PREFIX) {
                        request.params.insert(name.to_string(), value);
                    }
                }
            }
        }
        request
    }

    /// The form's fields (without the submission token) as query pairs.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        use launch_fields::*;
        let mut pairs = vec![
            (PROJECT.to_string(), self.project.clone()),
            (ENTRY_POINT.to_string(), self.entry_point.clone()),
        ];
        pairs.extend(
            self.params
                .iter()
                .map(|(name, value)| (format!("{PARAM_PREFIX}{name}"), value.clone())),
        );
        pairs.extend([
            (EXPERIMENT.to_string(), self.experiment_id.clone()),
            (NEW_EXPERIMENT.to_string(), self.new_experiment.clone()),
            (PROFILE.to_string(), self.profile.clone()),
            (RUN_NAME.to_string(), self.run_name.clone()),
            (ENV_MANAGER.to_string(), self.env_manager.clone()),
        ]);
        pairs
    }
}

impl Launch {
    pub fn update(&self) -> LaunchUpdate {
        LaunchUpdate {
            status: self.status,
            reason: self.reason.clone(),
            run_id: self.run_id.clone(),
            updated_ms: self.updated_ms,
            finished_ms: self.finished_ms,
        }
    }
}

/// A bound model's deployment as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentView {
    pub model: String,
    /// `local`, `seldon`, `kserve` or `seldon-core-2`.
    pub target: String,
    pub namespace: Option<String>,
    /// "stage Production" or "alias @production".
    pub marker: String,
    /// What MLflow says should serve.
    pub desired_version: Option<String>,
    /// What the target serves now.
    pub serving_version: Option<String>,
    pub state: ServingState,
    pub message: String,
    pub address: Option<String>,
    pub last_change_ms: Option<i64>,
    /// The replica whose passes this view is from.
    #[serde(default)]
    pub reconciled_by: String,
    /// Its traffic over the last minute (the list's columns); not kept
    /// with the view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficNow>,
    /// What a canary's objects of their own say (Seldon Core 2's canary
    /// Model and Experiment), while it runs.
    #[serde(default)]
    pub canary_status: Option<String>,
}

/// A deployment's traffic over a recent window, all versions together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TrafficNow {
    pub requests_per_second: f64,
    /// Answers that were not 2xx, in percent; `None` without requests.
    pub error_percent: Option<f64>,
    pub p99_ms: Option<f64>,
}

crate::text_enum! {
    /// The span a deployment's traffic charts cover.
    #[derive(Serialize, Deserialize, Default)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum TrafficRange {
        #[default]
        #[serde(rename = "1h")]
        Hour => "1h",
        #[serde(rename = "24h")]
        Day => "24h",
        #[serde(rename = "7d")]
        Week => "7d",
    }
}

impl TrafficRange {
    pub fn millis(self) -> i64 {
        match self {
            TrafficRange::Hour => 3600 * 1000,
            TrafficRange::Day => 24 * 3600 * 1000,
            TrafficRange::Week => 7 * 24 * 3600 * 1000,
        }
    }

    /// A chart's resolution: 120 points across the range.
    pub fn step_millis(self) -> i64 {
        self.millis() / 120
    }
}

/// One version's traffic in one step of a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TrafficPoint {
    pub at_ms: i64,
    pub requests_per_second: f64,
    pub error_percent: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One version's traffic over a range: its points, and the sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VersionTraffic {
    /// The version, or "all versions" where the source cannot tell them apart.
    pub version: String,
    pub points: Vec<TrafficPoint>,
    pub requests: f64,
    pub error_percent: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Runs one comparison can hold: each is a call to MLflow.
pub const MAX_COMPARED_RUNS: usize = 10;

/// Whether `count` runs can be compared; why not, in a sentence.
pub fn check_compared_runs(count: usize) -> Result<(), String> {
    if count == 0 || count > MAX_COMPARED_RUNS {
        return Err(format!(
            "Choose from 1 to {MAX_COMPARED_RUNS} runs, not {count}"
        ));
    }
    Ok(())
}

/// A load test as its form sends it: text as typed, checked by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct LoadTestRequest {
    /// Concurrent users, each sending a request as soon as its last answered.
    pub users: String,
    /// Requests per second across all users; empty: as fast as they can.
    pub rate: String,
    pub duration_secs: String,
    /// Seconds over which the users start, one after another.
    pub ramp_up_secs: String,
    /// The JSON each request sends.
    pub body: String,
    /// Ticked to test a deployment that serves production in a cluster.
    pub confirm: String,
}

/// What an admin allows a load test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LoadTestCaps {
    pub max_users: u32,
    pub max_rate: u32,
    pub max_duration_secs: u32,
}

/// The load test form of a deployment: defaults or a sent-back draft with
/// its problems per field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LoadTestForm {
    pub model: String,
    pub request: LoadTestRequest,
    pub problems: FieldErrors,
    pub caps: LoadTestCaps,
    /// Where the requests go.
    pub address: Option<String>,
    pub serving_version: Option<String>,
    /// A cluster deployment serving production: the form asks to confirm.
    pub needs_confirmation: bool,
}

crate::text_enum! {
    /// Where a load test is.
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum LoadTestState {
        Running => "running",
        /// Ran its whole duration.
        Finished => "finished",
        Cancelled => "cancelled",
        /// The Slipway running it stopped before it ended.
        Interrupted => "interrupted",
    }
}

/// One second of a load test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LoadTestSecond {
    pub second: u32,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A load test, running or done, with the version it hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LoadTest {
    pub id: String,
    pub model: String,
    pub version: Option<String>,
    pub address: String,
    pub users: u32,
    pub rate: Option<u32>,
    pub duration_secs: u32,
    pub ramp_up_secs: u32,
    pub body: String,
    pub state: LoadTestState,
    pub started_by: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// So far, or in all.
    pub results: LoadTestResults,
}

/// A load test's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct LoadTestResults {
    pub requests: u64,
    /// Answers that were not 2xx, and requests with no answer.
    pub errors: u64,
    pub requests_per_second: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The first error seen, as the model (or the connection) said it.
    pub first_error: Option<String>,
    pub seconds: Vec<LoadTestSecond>,
}

impl LoadTestResults {
    /// Errors in percent of the requests; `None` without requests.
    pub fn error_percent(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64 * 100.0)
    }
}

/// A deployment's traffic page section: charts by version with each change
/// of version marked, and the numbers per version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TrafficReport {
    pub range: TrafficRange,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Where the numbers come from, in words.
    pub source: String,
    pub versions: Vec<VersionTraffic>,
    /// Each time a version came to serve in the range: (when, "v7 · promote").
    pub changes: Vec<(i64, String)>,
    /// Requests per second, errors, latency: titled SVG charts, drawn by the
    /// server function from the rest.
    pub charts: Vec<MetricChart>,
    /// Why numbers are missing or partial (no Prometheus, Prometheus down,
    /// a range longer than the gateway keeps).
    pub note: Option<String>,
}

/// A deployment's settings as its form shows and sends them: text as typed,
/// checked by the server (`server::serving::bindings`), which turns them into
/// the catalog's binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct DeploymentSettings {
    pub model: String,
    /// `local`, `seldon`, `kserve` or `seldon-core-2`.
    pub target: String,
    /// The cluster object's name; empty: the model's name as a DNS label.
    pub name: String,
    pub namespace: String,
    pub replicas: String,
    /// The most replicas (kserve, seldon-core-2); empty: the target's default.
    pub max_replicas: String,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub storage_secret: String,
    /// KServe: the service account holding the bucket credentials.
    pub service_account: String,
    /// Seldon Core 2: the Server to place the model on.
    pub server: String,
    /// `stage` or `alias`.
    pub production: String,
    pub alias: String,
    /// `keep` or `remove`.
    pub no_production: String,
    /// A checkbox: sent (with any value) when ticked, absent when not.
    #[serde(deserialize_with = "checkbox")]
    pub requires_approval: bool,
    /// One mapping per line: MLflow's URI prefix, a space, the bucket's.
    pub artifact_map: String,
    /// The revision the form was read at; empty for a new deployment.
    pub revision: String,
}

impl DeploymentSettings {
    /// A new deployment's form as it first shows.
    pub fn new_deployment() -> Self {
        Self {
            target: "local".into(),
            replicas: "1".into(),
            production: "stage".into(),
            alias: "production".into(),
            no_production: "keep".into(),
            ..Self::default()
        }
    }
}

/// A checkbox's value: `true`/`false` as JSON has it, or a form's text
/// (present and not empty when ticked).
fn checkbox<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Checkbox {
        Bool(bool),
        Text(String),
    }
    Ok(match Checkbox::deserialize(deserializer)? {
        Checkbox::Bool(ticked) => ticked,
        Checkbox::Text(text) => !text.is_empty(),
    })
}

/// The deployment form: its values, who manages it, and what is wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentForm {
    pub settings: DeploymentSettings,
    /// Whether the deployment exists (an edit) or is to be created.
    pub exists: bool,
    /// Bound by the catalog file: changed there, not here.
    pub from_catalog: bool,
    pub problems: Vec<String>,
}

/// One change of what serves a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentEvent {
    pub id: String,
    pub model: String,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// promote, rollback, webhook, poll, drift, startup.
    pub cause: String,
    pub actor: String,
    pub started_ms: i64,
    pub ready_ms: Option<i64>,
    pub outcome: DeploymentOutcome,
    pub message: String,
}

crate::text_enum! {
    /// How a deployment serves, from its target's own signals.
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum ServingState {
        Creating => "Creating",
        Available => "Available",
        Failed => "Failed",
        /// Nothing to serve: no version in production, and nothing serving.
        Idle => "Idle",
    }
}

crate::text_enum! {
    /// How one change of what serves a model ended.
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum DeploymentOutcome {
        /// Under way (or its deployer stopped before it could say).
        Pending => "pending",
        /// Ready and serving.
        Serving => "serving",
        Failed => "failed",
        /// What served was stopped (nothing in production, or unbound).
        Removed => "removed",
        /// A newer change took over before this one served.
        Superseded => "superseded",
        /// The deployment's settings changed.
        Changed => "changed",
        /// Its deployer stopped before it could say how it ended.
        Interrupted => "interrupted",
    }
}

/// A deployment's page: its state, history and what Try it starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DeploymentDetail {
    pub view: DeploymentView,
    pub history: Vec<DeploymentEvent>,
    /// A request body for the model, from its serving input example.
    pub example_input: Option<String>,
    /// Whether a promotion needs an approver (four eyes).
    pub requires_approval: bool,
    /// Promotion requests still waiting for a decision.
    pub pending_requests: Vec<PromotionRequest>,
    /// Its canary, if it ever had one.
    #[serde(default)]
    pub rollout: Option<RolloutPanel>,
}

/// One side of the promotion confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct VersionSummary {
    pub version: String,
    pub run_id: String,
    pub stage: String,
    pub metrics: Vec<(String, f64)>,
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// The model's signature (inputs and outputs) from its MLmodel file.
    #[serde(default)]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromotionPreview {
    pub model: String,
    pub marker: String,
    pub current: Option<VersionSummary>,
    pub candidate: VersionSummary,
    /// Whether confirming asks an approver instead of promoting.
    #[serde(default)]
    pub requires_approval: bool,
}

crate::text_enum! {
    /// Where a canary rollout is: `progressing` (the canary takes `weight` %
    /// of the requests), `promoting` (its version is being made Production;
    /// the split holds until the stable side serves it), then ended.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum RolloutState {
        Progressing => "progressing",
        Promoting => "promoting",
        Succeeded => "succeeded",
        Aborted => "aborted",
    }
}

impl RolloutState {
    pub fn is_active(self) -> bool {
        matches!(self, RolloutState::Progressing | RolloutState::Promoting)
    }
}

/// How a canary is judged and stepped, as Flagger does: every
/// `interval_secs` the canary's own answers since the last check are
/// checked against the gates; a passed check raises its share by
/// `step_weight` up to `max_weight`, and one passed at `max_weight`
/// promotes it (`step_weight` 0: the share stays, people promote);
/// `failed_checks_limit` failed checks abort it. A check with no canary
/// answers judges nothing and steps nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct CanaryAnalysis {
    pub interval_secs: u32,
    #[serde(default)]
    pub step_weight: u8,
    pub max_weight: u8,
    /// Answers below 400, in percent of the canary's answers.
    pub min_success_percent: f64,
    /// The canary's 99th percentile latency, at most.
    #[serde(default)]
    pub max_p99_ms: Option<f64>,
    pub failed_checks_limit: u32,
    /// A gate of the team's own, read from Prometheus.
    #[serde(default)]
    pub query: Option<QueryGate>,
}

/// A PromQL query giving one number, which a passed check keeps within
/// `min`..=`max`. Before it is run, `{{version}}` becomes the canary's
/// version, `{{interval}}` the check interval (`60s`), `{{namespace}}` and
/// `{{name}}` the deployment's object's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct QueryGate {
    pub query: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// The longest query a gate may hold.
pub const QUERY_GATE_MAX_CHARS: usize = 2000;

impl QueryGate {
    /// The query to run for the canary `version` checked every
    /// `interval_secs`, of the object `namespace`/`name`.
    pub fn promql(&self, version: &str, interval_secs: u32, namespace: &str, name: &str) -> String {
        self.query
            .replace("{{version}}", version)
            .replace("{{interval}}", &format!("{interval_secs}s"))
            .replace("{{namespace}}", namespace)
            .replace("{{name}}", name)
    }

    /// Why `value` misses the gate, if it does.
    pub fn missed_by(&self, value: f64) -> Option<String> {
        match (self.min, self.max) {
            (Some(min), _) if value < min => Some(format!("query {value} below {min}")),
            (_, Some(max)) if value > max => Some(format!("query {value} above {max}")),
            _ => None,
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.query.trim().is_empty() || self.query.chars().count() > QUERY_GATE_MAX_CHARS {
            problems.push(format!(
                "the query is 1 to {QUERY_GATE_MAX_CHARS} characters of PromQL"
            ));
        }
        let finite = |bound: Option<f64>| bound.is_none_or(f64::is_finite);
        if self.min.is_none() && self.max.is_none() {
            problems.push("the query's gate needs a least or a largest value".to_string());
        } else if !finite(self.min) || !finite(self.max) {
            problems.push("the query's bounds are numbers".to_string());
        } else if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            problems.push(format!(
                "the query's least value {min} is above its largest {max}"
            ));
        }
        problems
    }
}

impl CanaryAnalysis {
    /// What is wrong with it for a rollout starting at `weight` %, in
    /// words the form and the API show.
    pub fn problems(&self, weight: u8, mode: RolloutMode) -> Vec<String> {
        // At 100 % a canary would be a promotion; a shadow only sees copies.
        let most = match mode {
            RolloutMode::Canary => 99,
            RolloutMode::Shadow => 100,
        };
        let mut problems = Vec::new();
        if !(1..=3600).contains(&self.interval_secs) {
            problems.push("the check interval is 1 to 3600 seconds".to_string());
        }
        if !(1..=most).contains(&self.max_weight) || self.max_weight < weight {
            problems.push(format!(
                "the largest share is {weight} to {most} % (at least the starting share)"
            ));
        }
        if self.step_weight > 98 {
            problems.push("the step is 0 to 98 %".to_string());
        }
        if !(0.0..=100.0).contains(&self.min_success_percent) {
            problems.push("the least success rate is 0 to 100 %".to_string());
        }
        if self
            .max_p99_ms
            .is_some_and(|ms| !(ms > 0.0 && ms.is_finite()))
        {
            problems.push("the p99 limit is a positive number of milliseconds".to_string());
        }
        if !(1..=100).contains(&self.failed_checks_limit) {
            problems.push("the failed checks allowed before an abort are 1 to 100".to_string());
        }
        if let Some(gate) = &self.query {
            problems.extend(gate.problems());
        }
        problems
    }
}

crate::text_enum! {
    /// How a rollout's second version takes its share: `canary` answers
    /// that share of the requests; `shadow` gets a copy of that share while
    /// the stable version answers them all (its answers go nowhere).
    #[derive(Serialize, Deserialize, Default)]
    #[serde(rename_all = "lowercase")]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum RolloutMode {
        #[default]
        Canary => "canary",
        Shadow => "shadow",
    }
}

/// A rollout to start: the version, its share, how it takes it, and
/// optionally the analysis it is run by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewRollout {
    /// The version to serve beside Production.
    pub version: String,
    /// Its share of the requests, 1 to 99 % (a shadow: up to 100 %).
    pub weight: u8,
    #[serde(default)]
    pub mode: RolloutMode,
    /// Gates and schedule the leader checks it by; without, people step,
    /// promote and abort it.
    #[serde(default)]
    pub analysis: Option<CanaryAnalysis>,
    /// Why, for the audit log; where the deployment requires approval, the
    /// request's reason (required there).
    #[serde(default)]
    pub reason: String,
}

/// The canary form as typed: a version and its share, and, where a check
/// interval is given, the analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryForm {
    pub version: String,
    pub weight: String,
    /// `canary` (the default) or `shadow`.
    pub mode: String,
    pub interval_secs: String,
    pub step_weight: String,
    pub max_weight: String,
    pub min_success_percent: String,
    pub max_p99_ms: String,
    pub failed_checks_limit: String,
    pub query: String,
    pub query_min: String,
    pub query_max: String,
    pub reason: String,
}

impl CanaryForm {
    /// The rollout it asks for; or every problem, in words.
    pub fn parse(&self) -> Result<NewRollout, Vec<String>> {
        fn number<T: std::str::FromStr>(
            text: &str,
            what: &str,
            problems: &mut Vec<String>,
        ) -> Option<T> {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            let parsed = text.parse().ok();
            if parsed.is_none() {
                problems.push(format!("{what} is a number, not {text:?}"));
            }
            parsed
        }
        let mut problems = Vec::new();
        let version = self.version.trim().trim_start_matches('v').to_string();
        if version.is_empty() {
            problems.push("choose the version to serve as the canary".to_string());
        }
        let weight = number::<u8>(&self.weight, "the share", &mut problems);
        if weight.is_none() && self.weight.trim().is_empty() {
            problems.push("give the canary's share of the requests".to_string());
        }
        let mode = match self.mode.trim() {
            "" => RolloutMode::Canary,
            mode => RolloutMode::parse(mode).unwrap_or_else(|| {
                problems.push(format!("a rollout is a canary or a shadow, not {mode:?}"));
                RolloutMode::Canary
            }),
        };
        let interval = number::<u32>(&self.interval_secs, "the check interval", &mut problems);
        let analysis = interval.map(|interval_secs| CanaryAnalysis {
            interval_secs,
            step_weight: number(&self.step_weight, "the step", &mut problems).unwrap_or(0),
            max_weight: number(&self.max_weight, "the largest share", &mut problems)
                .or(weight)
                .unwrap_or(0),
            min_success_percent: number(
                &self.min_success_percent,
                "the least success rate",
                &mut problems,
            )
            .unwrap_or(99.0),
            max_p99_ms: number(&self.max_p99_ms, "the p99 limit", &mut problems),
            failed_checks_limit: number(
                &self.failed_checks_limit,
                "the failed checks allowed",
                &mut problems,
            )
            .unwrap_or(3),
            query: None,
        });
        let query = self.query.trim();
        let bounds = (
            number(&self.query_min, "the query's least value", &mut problems),
            number(&self.query_max, "the query's largest value", &mut problems),
        );
        let analysis = match analysis {
            Some(analysis) if !query.is_empty() => Some(CanaryAnalysis {
                query: Some(QueryGate {
                    query: query.to_string(),
                    min: bounds.0,
                    max: bounds.1,
                }),
                ..analysis
            }),
            None if !query.is_empty() => {
                problems.push("a query gate is checked every interval: give the interval".into());
                None
            }
            analysis => analysis,
        };
        if let (Some(analysis), Some(weight)) = (&analysis, weight) {
            problems.extend(analysis.problems(weight, mode));
        }
        match weight {
            Some(weight) if problems.is_empty() => Ok(NewRollout {
                version,
                weight,
                mode,
                analysis,
                reason: self.reason.trim().to_string(),
            }),
            _ => Err(problems),
        }
    }
}

crate::text_enum! {
    /// What a check of a canary found.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum CheckVerdict {
        Passed => "passed",
        Failed => "failed",
        /// No canary answers since the last check: nothing to judge.
        Idle => "idle",
    }
}

/// One check of a canary's answers since the check before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RolloutCheck {
    pub at_ms: i64,
    /// The canary's share while these answers were given.
    pub weight: u8,
    pub requests: u64,
    pub success_percent: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The query gate's number, where it has one and it gave one.
    #[serde(default)]
    pub query_value: Option<f64>,
    pub verdict: CheckVerdict,
    /// Why, in words: the gates it failed, or what followed.
    pub detail: String,
}

/// One side of a canary rollout's numbers over the traffic window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SideNumbers {
    pub version: String,
    pub requests: u64,
    /// Rate, errors and latency over the window, as a chart's point.
    pub over_window: TrafficPoint,
}

/// A deployment's canary as its page shows it: the active rollout, else
/// the newest; its checks; stable and canary side by side (active only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct RolloutPanel {
    pub rollout: Rollout,
    pub checks: Vec<RolloutCheck>,
    pub stable: Option<SideNumbers>,
    pub canary: Option<SideNumbers>,
    /// Where the sides' numbers come from and what they cover, or why
    /// there are none for this deployment's target.
    pub sides_note: String,
    /// What the canary's objects of their own say, while it runs.
    #[serde(default)]
    pub canary_objects: Option<String>,
}

/// A canary rollout of a deployment: a second version beside the stable one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Rollout {
    pub id: String,
    pub model: String,
    /// Production when it started.
    pub stable_version: Option<String>,
    pub canary_version: String,
    /// The canary's share of the requests, in percent.
    pub weight: u8,
    #[serde(default)]
    pub mode: RolloutMode,
    pub state: RolloutState,
    pub started_by: String,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub ended_ms: Option<i64>,
    /// How it ended (or where a promotion is).
    pub outcome: String,
    /// Its gates and schedule; `None`: people step, promote and abort it.
    #[serde(default)]
    pub analysis: Option<CanaryAnalysis>,
    /// Failed checks so far.
    #[serde(default)]
    pub failed_checks: u32,
    /// Where the deployment requires approval: the largest share the
    /// approver allowed (a larger one is a new request).
    #[serde(default)]
    pub approved_weight: Option<u8>,
}

crate::text_enum! {
    /// Where a promotion request is. Written before each side effect, so a
    /// crash leaves `approving` (decided, promotion not confirmed) to explain.
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum RequestState {
        Pending => "pending",
        Approving => "approving",
        Approved => "approved",
        Rejected => "rejected",
        /// Another version was promoted after it was asked for.
        Stale => "stale",
        /// Approved, but the promotion itself failed (see `outcome`).
        Failed => "failed",
    }
}

/// A request another person decides: a deployer's promotion of a version,
/// or a deployment's settings change that needs a second person
/// (`settings`), with the evidence as it was when they asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PromotionRequest {
    pub id: String,
    pub model: String,
    /// The version it would make serve; empty: none (a settings change
    /// while nothing is in production).
    pub version: String,
    pub reason: String,
    pub requested_by: String,
    pub requested_ms: i64,
    /// What was in production when it was asked for.
    pub base_version: Option<String>,
    /// The version it would make serve against production then; `None`
    /// when it would make no version serve.
    pub evidence: Option<PromotionPreview>,
    /// A settings change instead of a promotion: what approving it saves.
    #[serde(default)]
    pub settings: Option<SettingsChange>,
    /// A canary's start instead of a promotion: what approving it starts.
    #[serde(default)]
    pub rollout: Option<NewRollout>,
    pub state: RequestState,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub comment: String,
    /// What happened when it was carried out (or why it could not be).
    pub outcome: String,
}

/// A deployment's settings change held for a second person: a new
/// deployment whose marker already marks a version (it would serve it at
/// once), or one that turns approval off for a model that has it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct SettingsChange {
    /// A new deployment; else a change of the one at `settings.revision`.
    pub create: bool,
    pub settings: DeploymentSettings,
    /// The change in words, as the deployment's history will say it.
    pub changes: String,
}

/// A model server's answer to a Try it request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Prediction {
    pub status: u16,
    /// At most 64 KiB of it; `truncated` says whether there was more.
    pub body: String,
    pub truncated: bool,
    pub latency_ms: f64,
}

/// A request sent from the Try it panel, kept briefly so the page the
/// form's POST leads to can show it; only its sender may read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryAnswer {
    pub model: String,
    pub input: String,
    /// The answer, or why there was none.
    pub outcome: Result<Prediction, String>,
}

/// What the audit log page and its exports filter by; empty means any.
/// Dates are `YYYY-MM-DD` (UTC), `to` included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub model: String,
    pub from: String,
    pub to: String,
}

impl AuditQuery {
    pub const FIELDS: [&'static str; 5] = ["actor", "action", "model", "from", "to"];

    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut query = Self::default();
        for (key, value) in pairs {
            let value = value.into().trim().to_string();
            match key.as_ref() {
                "actor" => query.actor = value,
                "action" => query.action = value,
                "model" => query.model = value,
                "from" => query.from = value,
                "to" => query.to = value,
                _ => {}
            }
        }
        query
    }

    /// The non-empty fields, for a URL.
    pub fn to_query_string(&self) -> String {
        let values = [&self.actor, &self.action, &self.model, &self.from, &self.to];
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (name, value) in Self::FIELDS.iter().zip(values) {
            if !value.is_empty() {
                serializer.append_pair(name, value);
            }
        }
        serializer.finish()
    }
}

/// The audit page shows at most this many entries; the exports more.
pub const AUDIT_PAGE_LIMIT: i64 = 500;
pub const AUDIT_EXPORT_LIMIT: i64 = 100_000;

crate::text_enum! {
    /// What an audit entry records; the log's "What" filter offers each.
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum AuditAction {
        Login => "login",
        Account => "account",
        Launch => "launch",
        Cancel => "cancel",
        Promote => "promote",
        Rollback => "rollback",
        PromotionRequest => "promotion-request",
        Approve => "approve",
        Reject => "reject",
        /// An approved request carried out.
        Approval => "approval",
        RegistryRegister => "registry-register",
        RegistryStage => "registry-stage",
        RegistryAlias => "registry-alias",
        RegistryDescription => "registry-description",
        RegistryTag => "registry-tag",
        CreateDeployment => "create-deployment",
        EditDeployment => "edit-deployment",
        DeleteDeployment => "delete-deployment",
        /// A deployment's settings changed by the catalog file.
        DeploymentSettings => "deployment-settings",
        LoadTest => "load-test",
        CancelLoadTest => "cancel-load-test",
        /// A service token made or revoked.
        Token => "token",
        /// A notification channel added or deleted.
        Notifications => "notifications",
        /// A canary rollout started, re-weighted, promoted or aborted.
        Rollout => "rollout",
    }
}

crate::text_enum! {
    /// What Slipway tells notification channels about.
    #[derive(Serialize, Deserialize)]
    #[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
    pub enum NotificationEvent {
        #[serde(rename = "launch.succeeded")]
        LaunchSucceeded => "launch.succeeded",
        #[serde(rename = "launch.failed")]
        LaunchFailed => "launch.failed",
        #[serde(rename = "promotion.requested")]
        PromotionRequested => "promotion.requested",
        #[serde(rename = "promotion.approved")]
        PromotionApproved => "promotion.approved",
        #[serde(rename = "promotion.rejected")]
        PromotionRejected => "promotion.rejected",
        /// A promotion made at once, without a request.
        #[serde(rename = "promotion.done")]
        Promoted => "promotion.done",
        #[serde(rename = "rollback")]
        Rollback => "rollback",
        /// A new version serves.
        #[serde(rename = "deployment.serving")]
        DeploymentServing => "deployment.serving",
        #[serde(rename = "deployment.failed")]
        DeploymentFailed => "deployment.failed",
        /// A canary's analysis failed it and took its share back.
        #[serde(rename = "rollout.aborted")]
        RolloutAborted => "rollout.aborted",
    }
}

impl NotificationEvent {
    pub fn describe(self) -> &'static str {
        match self {
            NotificationEvent::LaunchSucceeded => "A training succeeded",
            NotificationEvent::LaunchFailed => "A training failed",
            NotificationEvent::PromotionRequested => "A promotion is requested",
            NotificationEvent::PromotionApproved => "A promotion request is approved",
            NotificationEvent::PromotionRejected => "A promotion request is rejected",
            NotificationEvent::Promoted => "A version is promoted (no approval needed)",
            NotificationEvent::Rollback => "A deployment is rolled back",
            NotificationEvent::DeploymentServing => "A new version serves",
            NotificationEvent::DeploymentFailed => "A deployment failed",
            NotificationEvent::RolloutAborted => "A canary failed its checks and was aborted",
        }
    }
}

/// One event as channels receive it (a webhook's JSON body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub event: NotificationEvent,
    pub at_ms: i64,
    /// What happened, in a sentence.
    pub text: String,
    /// The page about it, a path on Slipway (made absolute when sent).
    pub link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Who caused it, where a person (or their token) did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// A notification channel as listed: its URL shortened to its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationChannel {
    pub id: String,
    pub name: String,
    /// `webhook` or `slack`.
    pub kind: String,
    /// Scheme and host only: the rest may be a credential.
    pub destination: String,
    pub signed: bool,
    pub events: Vec<NotificationEvent>,
    pub created_by: String,
    pub created_ms: i64,
}

/// The new-channel form as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelRequest {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: String,
    /// The ticked events.
    pub events: Vec<String>,
}

/// One delivery of one event to one channel, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationDelivery {
    pub id: String,
    pub channel: String,
    pub event: NotificationEvent,
    pub text: String,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    pub attempts: i64,
    pub last_error: String,
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub delivered_ms: Option<i64>,
}

/// The notifications page: the channels and the newest deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationsPage {
    pub channels: Vec<NotificationChannel>,
    pub deliveries: Vec<NotificationDelivery>,
}

/// A service token as it is listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceToken {
    pub id: String,
    pub name: String,
    /// The account it acts for.
    pub owner: String,
    pub grant: crate::access::Grant,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// The new-token form as sent: text as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRequest {
    pub name: String,
    pub role: String,
    /// Model and project name patterns, separated by commas or spaces;
    /// empty: everything the role covers.
    pub scope: String,
    pub expires_days: String,
}

/// The tokens page: the user's tokens (an admin's: everyone's), the roles
/// a new one may have, and a new token's secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensPage {
    pub tokens: Vec<ServiceToken>,
    pub roles: Vec<crate::access::Role>,
    pub created: Option<CreatedToken>,
    /// When it was read: what has expired by then shows so.
    pub as_of_ms: i64,
}

/// A token just made, with the secret its holder must copy now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub name: String,
    pub secret: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    /// `model:…`, `launch:…` or `user:…`.
    pub subject: String,
    pub detail: String,
    /// `done`, `failed: …`, or `pending` (begun, never reported back).
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::signature_columns;

    #[test]
    fn signature_columns_read_with_their_types() {
        let signature = "inputs: [{\"type\": \"double\", \"name\": \"x1\", \"required\": true}, {\"type\": \"string\", \"name\": \"city\", \"required\": false}]\n\
                         outputs: [{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float64\", \"shape\": [-1]}}]";
        let row = |part: &str, name: &str, kind: &str| (part.into(), name.into(), kind.into());
        assert_eq!(
            signature_columns(signature),
            vec![
                row("inputs", "x1", "double"),
                row("inputs", "city", "string (optional)"),
                row("outputs", "#0", "tensor float64 [-1]"),
            ]
        );
        assert!(signature_columns("inputs: not json").is_empty());
    }

    #[test]
    fn a_canary_form_reads_its_query_gate() {
        use super::{CanaryForm, QueryGate};
        let form = |query: &str, min: &str, interval: &str| CanaryForm {
            version: "v3".into(),
            weight: "20".into(),
            interval_secs: interval.into(),
            query: query.into(),
            query_min: min.into(),
            ..CanaryForm::default()
        };
        let asked = form(" sum(up) ", "1", "30").parse().unwrap();
        assert_eq!(asked.version, "3");
        let analysis = asked.analysis.unwrap();
        assert_eq!(
            analysis.query,
            Some(QueryGate {
                query: "sum(up)".into(),
                min: Some(1.0),
                max: None,
            })
        );
        assert_eq!(
            (analysis.min_success_percent, analysis.failed_checks_limit),
            (99.0, 3)
        );
        // No bound, no interval: said, nothing asked for.
        assert_eq!(
            form("sum(up)", "", "30").parse().unwrap_err(),
            ["the query's gate needs a least or a largest value"]
        );
        assert_eq!(
            form("sum(up)", "1", "").parse().unwrap_err(),
            ["a query gate is checked every interval: give the interval"]
        );
        assert_eq!(
            form("", "", "30").parse().unwrap().analysis.unwrap().query,
            None
        );
    }
}
