//! KServe's InferenceService (`serving.kserve.io/v1beta1`) with the MLflow
//! model format. The MLServer runtime serves MLflow models over the open
//! inference protocol (v2) only, so `protocolVersion: v2` is always set
//! (unset means v1, which it refuses).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use app::model::ServingState;

use super::objects::{
    CANARY_ANNOTATION, ObjectKind, ObjectTarget, Served, Share, canary_annotation, condition_true,
    false_condition, metadata, resources,
};
use crate::catalog::{DeploymentBinding, ServingTarget as TargetKind};
use crate::serving::ServingStatus;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceService {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub spec: InferenceServiceSpec,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferenceServiceSpec {
    pub predictor: PredictorSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictorSpec {
    pub min_replicas: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Bucket credentials reach KServe's storage initializer through the
    /// service account's secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The newest revision's share while a canary runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_traffic_percent: Option<u8>,
    pub model: ModelSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub model_format: ModelFormat,
    pub protocol_version: &'static str,
    pub storage_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelFormat {
    pub name: &'static str,
}

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    )
}

pub fn render(binding: &DeploymentBinding, version: &str, storage_uri: &str) -> InferenceService {
    InferenceService {
        api_version: "serving.kserve.io/v1beta1",
        kind: "InferenceService",
        metadata: metadata(binding, version),
        spec: InferenceServiceSpec {
            predictor: PredictorSpec {
                min_replicas: binding.replicas,
                max_replicas: binding.max_replicas,
                service_account_name: binding.service_account.clone(),
                canary_traffic_percent: None,
                model: ModelSpec {
                    model_format: ModelFormat { name: "mlflow" },
                    protocol_version: "v2",
                    storage_uri: storage_uri.into(),
                    resources: resources(binding),
                },
            },
        },
    }
}

/// KServe's own words: the model's transition (loaded, loading, failed to
/// load, refused), the `Ready`/`PredictorReady`/`IngressReady` conditions,
/// the predictor's traffic split over its revisions, and `status.url`, where
/// the v2 protocol answers at `/v2/models/{name}/infer`.
pub fn status(name: &str, object: &Value) -> ServingStatus {
    let status = &object["status"];
    let address = status["url"]
        .as_str()
        .filter(|url| !url.is_empty())
        .map(|url| format!("{}/v2/models/{name}/infer", url.trim_end_matches('/')));
    let model_status = &status["modelStatus"];
    let failure = &model_status["lastFailureInfo"];
    let failure_words = failure["message"]
        .as_str()
        .filter(|text| !text.is_empty())
        .or(failure["reason"].as_str());
    let (state, message) = match model_status["transitionStatus"].as_str() {
        Some("BlockedByFailedLoad") => (
            ServingState::Failed,
            match failure_words {
                Some(why) => format!("the model failed to load: {why}"),
                None => "the model failed to load".into(),
            },
        ),
        Some("InvalidSpec") => (
            ServingState::Failed,
            match failure_words {
                Some(why) => format!("KServe refused the spec: {why}"),
                None => "KServe refused the spec".into(),
            },
        ),
        _ if condition_true(status, "Ready") => (ServingState::Available, traffic_sentence(status)),
        transition => {
            let waiting = false_condition(status, &["PredictorReady", "IngressReady", "Ready"]);
            let message = match (transition, waiting) {
                (Some("InProgress"), Some(why)) => format!("loading the model: {why}"),
                (Some("InProgress"), None) => "loading the model".into(),
                (_, Some(why)) => why.to_string(),
                (_, None) => String::new(),
            };
            (ServingState::Creating, message)
        }
    };
    ServingStatus {
        state,
        message,
        address,
    }
}

/// `traffic: 80 % to iris-predictor-00002 (latest), 20 % to
/// iris-predictor-00001 (prev)`; empty where KServe names no split.
fn traffic_sentence(status: &Value) -> String {
    let predictor = &status["components"]["predictor"];
    let parts: Vec<String> = predictor["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|target| {
            let percent = target["percent"].as_i64()?;
            let revision = target["revisionName"].as_str().unwrap_or("a revision");
            let tag = match target["tag"].as_str() {
                Some(tag) => format!(" ({tag})"),
                None if target["latestRevision"] == true => " (latest)".into(),
                None => String::new(),
            };
            Some(format!("{percent} % to {revision}{tag}"))
        })
        .collect();
    let mut words = Vec::new();
    if !parts.is_empty() {
        words.push(format!("traffic: {}", parts.join(", ")));
    }
    if let Some(rolled_out) = predictor["latestRolledoutRevision"].as_str() {
        match predictor["previousRolledoutRevision"].as_str() {
            Some(previous) => words.push(format!("rolled out {rolled_out}, before it {previous}")),
            None => words.push(format!("rolled out {rolled_out}")),
        }
    }
    words.join("; ")
}

/// KServe's InferenceService.
pub struct InferenceServiceKind;

pub type KserveTarget = ObjectTarget<InferenceServiceKind>;

impl ObjectKind for InferenceServiceKind {
    const TARGET: TargetKind = TargetKind::Kserve;
    const KIND: &'static str = "InferenceService";
    const OPERATOR: &'static str = "KServe";
    const READY: &'static str = "KServe reports it Ready";
    const ABORTED_CANARY_STAYS: bool = true;

    fn api_resource() -> ApiResource {
        api_resource()
    }

    fn render(binding: &DeploymentBinding, version: &str, storage_uri: &str) -> Value {
        serde_json::to_value(render(binding, version, storage_uri))
            .expect("an InferenceService is JSON")
    }

    fn status(object: &DynamicObject) -> ServingStatus {
        status(
            object.metadata.name.as_deref().unwrap_or_default(),
            &object.data,
        )
    }

    /// KServe's own canary: the canary's `storageUri` with
    /// `canaryTrafficPercent` in one apply makes a new revision taking that
    /// share, the rolled-out (stable) one keeping the rest. Promoting is the
    /// plain object of the canary's version (the field removed: 100 % to
    /// it); aborting, the plain object of the stable one.
    fn render_canary(
        binding: &DeploymentBinding,
        stable: Served<'_>,
        canary: Served<'_>,
        share: Share,
    ) -> Option<Value> {
        // KServe has no mirror: shadows are refused before they start.
        if share.shadow {
            return None;
        }
        let mut service = render(binding, stable.version, canary.storage_uri);
        service.spec.predictor.canary_traffic_percent = Some(share.weight);
        service.metadata.annotations.get_or_insert_default().insert(
            CANARY_ANNOTATION.to_string(),
            canary_annotation(canary, share),
        );
        Some(serde_json::to_value(service).expect("an InferenceService is JSON"))
    }
}
