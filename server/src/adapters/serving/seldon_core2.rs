//! Seldon Core 2's Model (`mlops.seldon.io/v1alpha1`) with the `mlflow`
//! requirement, so the scheduler places it on a server whose runtime
//! (MLServer) reads MLflow models. Requests reach it through the
//! namespace's `seldon-mesh` service, which routes on the `Seldon-Model`
//! header (`serving::protocol::request_headers`), over the open inference
//! protocol (v2).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use app::model::ServingState;

use super::objects::{
    CanaryHooks, ObjectKind, ObjectTarget, Served, Share, condition_true, false_condition, metadata,
};
use crate::catalog::{DeploymentBinding, ServingTarget as TargetKind};
use crate::serving::ServingStatus;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub spec: ModelSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub storage_uri: String,
    pub requirements: Vec<&'static str>,
    pub replicas: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// What the scheduler reserves on a server for the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The Server to place it on; default: any whose capabilities match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Bucket credentials (an rclone configuration secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", "Model"),
        "models",
    )
}

pub fn render(binding: &DeploymentBinding, version: &str, storage_uri: &str) -> Model {
    let memory = binding
        .memory
        .as_ref()
        .and_then(|pair| pair.request.clone().or(pair.limit.clone()));
    Model {
        api_version: "mlops.seldon.io/v1alpha1",
        kind: "Model",
        metadata: metadata(binding, version),
        spec: ModelSpec {
            storage_uri: storage_uri.into(),
            requirements: vec!["mlflow"],
            replicas: binding.replicas,
            max_replicas: binding.max_replicas,
            memory,
            server: binding.server.clone(),
            secret_name: binding.storage_secret.clone(),
        },
    }
}

pub fn experiment_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", "Experiment"),
        "experiments",
    )
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub spec: ExperimentSpec,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExperimentSpec {
    /// Requests for this model go through the experiment.
    pub default: String,
    pub candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mirror {
    pub name: String,
    pub percent: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub name: String,
    pub weight: i32,
}

/// The canary's own Model and the Experiment splitting the stable Model's
/// requests between the two, or, for a shadow, sending it a copy of its
/// share (both named `{object}-canary`).
pub fn render_canary(
    binding: &DeploymentBinding,
    canary: Served<'_>,
    share: Share,
) -> (Model, Experiment) {
    let weight = share.weight;
    let stable = binding.object_name();
    let name = canary_name(binding);
    let mut model = render(binding, canary.version, canary.storage_uri);
    model.metadata.name = Some(name.clone());
    let mut metadata = metadata(binding, canary.version);
    metadata.name = Some(name.clone());
    let experiment = Experiment {
        api_version: "mlops.seldon.io/v1alpha1",
        kind: "Experiment",
        metadata,
        spec: if share.shadow {
            ExperimentSpec {
                default: stable.clone(),
                candidates: vec![Candidate {
                    name: stable,
                    weight: 100,
                }],
                mirror: Some(Mirror {
                    name,
                    percent: i32::from(weight),
                }),
            }
        } else {
            ExperimentSpec {
                default: stable.clone(),
                candidates: vec![
                    Candidate {
                        name: stable,
                        weight: 100 - i32::from(weight),
                    },
                    Candidate {
                        name,
                        weight: i32::from(weight),
                    },
                ],
                mirror: None,
            }
        },
    };
    (model, experiment)
}

fn canary_name(binding: &DeploymentBinding) -> String {
    format!("{}-canary", binding.object_name())
}

/// Where a Model in `namespace` answers (with the `Seldon-Model` header naming it).
pub fn address(namespace: &str, name: &str) -> String {
    format!("http://seldon-mesh.{namespace}/v2/models/{name}/infer")
}

/// Seldon Core 2's own words: `ModelReady`/`Ready`, whose reason is the
/// model's state (`ModelAvailable`, `ModelProgressing`, `ModelFailed`,
/// `ScheduleFailed`, …), and how many replicas are available.
pub fn status(namespace: &str, name: &str, object: &Value) -> ServingStatus {
    let status = &object["status"];
    let replicas = match (
        status["availableReplicas"].as_i64(),
        status["replicas"].as_i64(),
    ) {
        (Some(available), Some(wanted)) => format!("{available} of {wanted} replicas available"),
        (Some(available), None) => format!("{available} replicas available"),
        _ => String::new(),
    };
    let model_ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "ModelReady");
    let failed = model_ready.is_some_and(|condition| {
        condition["status"] == "False"
            && condition["reason"]
                .as_str()
                .is_some_and(|reason| reason.ends_with("Failed"))
    });
    let (state, message) = if failed {
        let why = false_condition(status, &["ModelReady"]).unwrap_or("the model failed");
        (ServingState::Failed, why.to_string())
    } else if condition_true(status, "Ready") {
        (ServingState::Available, replicas)
    } else {
        let waiting = false_condition(status, &["ModelReady", "Ready"]).unwrap_or_default();
        (ServingState::Creating, waiting.to_string())
    };
    ServingStatus {
        state,
        message,
        address: Some(address(namespace, name)),
    }
}

/// The canary's Model or Experiment in Seldon Core 2's words: the Model's
/// state as the main one's reads; the Experiment ready, or what it waits
/// for (`ExperimentReady`, `CandidatesReady`, `MirrorReady`).
fn describe_canary_object(object: &DynamicObject) -> String {
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let status = &object.data["status"];
    let kind = object.types.as_ref().map(|types| types.kind.as_str());
    if kind == Some("Experiment") {
        return if condition_true(status, "Ready") {
            format!("its Experiment {name} is ready")
        } else {
            match false_condition(
                status,
                &["ExperimentReady", "CandidatesReady", "MirrorReady", "Ready"],
            ) {
                Some(why) => format!("its Experiment {name} is not ready: {why}"),
                None => format!("its Experiment {name} is not reported on yet"),
            }
        };
    }
    let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
    let model = self::status(namespace, name, &object.data);
    let state = match model.state {
        ServingState::Available => "available",
        ServingState::Failed => "failed",
        ServingState::Creating | ServingState::Idle => "not ready",
    };
    if model.message.is_empty() {
        format!("its Model {name} is {state}")
    } else {
        format!("its Model {name} is {state}: {}", model.message)
    }
}

/// Seldon Core 2's Model.
pub struct ModelKind;

pub type SeldonCore2Target = ObjectTarget<ModelKind>;

impl ObjectKind for ModelKind {
    const TARGET: TargetKind = TargetKind::SeldonCore2;
    const KIND: &'static str = "Model";
    const OPERATOR: &'static str = "Seldon Core 2";
    const READY: &'static str = "Seldon Core 2 reports it Ready";

    fn api_resource() -> ApiResource {
        api_resource()
    }

    fn render(binding: &DeploymentBinding, version: &str, storage_uri: &str) -> Value {
        serde_json::to_value(render(binding, version, storage_uri)).expect("a Model is JSON")
    }

    fn status(object: &DynamicObject) -> ServingStatus {
        status(
            object.metadata.namespace.as_deref().unwrap_or_default(),
            object.metadata.name.as_deref().unwrap_or_default(),
            &object.data,
        )
    }

    fn canary_objects() -> Option<CanaryHooks> {
        Some(CanaryHooks {
            render: |binding, canary, share| {
                let (model, experiment) = render_canary(binding, canary, share);
                vec![
                    (
                        api_resource(),
                        serde_json::to_value(model).expect("a Model is JSON"),
                    ),
                    (
                        experiment_resource(),
                        serde_json::to_value(experiment).expect("an Experiment is JSON"),
                    ),
                ]
            },
            describe: describe_canary_object,
            // The Experiment first: requests leave the canary before it goes.
            names: |binding| {
                vec![
                    (experiment_resource(), canary_name(binding)),
                    (api_resource(), canary_name(binding)),
                ]
            },
        })
    }
}
