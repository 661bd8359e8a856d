//! MLflow's wire types, as its REST API sends them. Lists MLflow leaves out
//! when empty default to empty; versions are strings; times are epoch ms.

use serde::{Deserialize, Deserializer, Serialize};

/// MLflow may send an empty page token on the last page: that is no token.
fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|token| !token.is_empty()))
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
    #[serde(default, deserialize_with = "non_empty")]
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

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GetExperimentResponse {
    pub experiment: Option<Experiment>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RunData {
    /// The latest value of each metric only; histories come from `metric_history`.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<Param>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A model a run logged (MLflow 3).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ModelOutput {
    pub model_id: String,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RunOutputs {
    #[serde(default)]
    pub model_outputs: Vec<ModelOutput>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
    #[serde(default)]
    pub outputs: RunOutputs,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchRuns {
    pub experiment_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<String>,
    pub max_results: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchRunsResponse {
    #[serde(default)]
    pub runs: Vec<Run>,
    #[serde(default, deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GetRunResponse {
    pub run: Run,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricHistoryPage {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default, deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: Option<i64>,
    pub last_updated_timestamp: Option<i64>,
    #[serde(default)]
    pub current_stage: String,
    #[serde(default)]
    pub description: String,
    /// `runs:/…` (MLflow 2), `models:/m-…` (MLflow 3), or a storage URI.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Only `model-versions/get` fills this; searches leave it out.
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: Option<i64>,
    pub last_updated_timestamp: Option<i64>,
    #[serde(default)]
    pub description: String,
    /// The newest version in each stage.
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default)]
    pub aliases: Vec<Alias>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchRegisteredModelsResponse {
    #[serde(default)]
    pub registered_models: Vec<RegisteredModel>,
    #[serde(default, deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GetRegisteredModelResponse {
    pub registered_model: RegisteredModel,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchModelVersionsResponse {
    #[serde(default)]
    pub model_versions: Vec<ModelVersion>,
    #[serde(default, deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GetModelVersionResponse {
    pub model_version: ModelVersion,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DownloadUriResponse {
    pub artifact_uri: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    pub file_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListArtifactsResponse {
    #[serde(default)]
    pub root_uri: String,
    #[serde(default)]
    pub files: Vec<FileInfo>,
    #[serde(default, deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_page_token_means_the_last_page() {
        let page: SearchRunsResponse = serde_json::from_str(r#"{"next_page_token":""}"#).unwrap();
        assert_eq!(page.next_page_token, None);
        let page: SearchRunsResponse =
            serde_json::from_str(r#"{"next_page_token":"abc"}"#).unwrap();
        assert_eq!(page.next_page_token.as_deref(), Some("abc"));
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Webhook {
    pub webhook_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebhookPage {
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    #[serde(default, deserialize_with = "non_empty")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookResponse {
    pub webhook: Webhook,
}
