//! SeldonDeployment (`machinelearning.seldon.io/v1`) with Seldon's MLflow
//! server, rendered from typed structs (the pod parts are k8s-openapi's).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use app::model::ServingState;

use super::objects::{
    CANARY_ANNOTATION, ObjectKind, ObjectTarget, Served, Share, canary_annotation, false_condition,
    metadata, resources,
};
use crate::catalog::{
    DeploymentBinding, SELDON_STABLE_PREDICTOR, ServingTarget as TargetKind,
    seldon_canary_predictor,
};
use crate::serving::ServingStatus;

const GRAPH_NODE: &str = "model";
/// Seldon's MLflow server installs the model's environment before it
/// listens; probes that start early kill it in a loop.
const READINESS_DELAY_SECS: i32 = 120;
const LIVENESS_DELAY_SECS: i32 = 300;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeldonDeployment {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: SeldonDeploymentSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeldonDeploymentSpec {
    pub predictors: Vec<Predictor>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Predictor {
    pub name: String,
    pub replicas: i32,
    pub traffic: i32,
    /// A shadow predictor gets a copy of every request; its answers go nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<bool>,
    pub labels: BTreeMap<String, String>,
    pub graph: PredictiveUnit,
    pub component_specs: Vec<ComponentSpec>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveUnit {
    pub name: String,
    pub implementation: String,
    pub model_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_secret_ref_name: Option<String>,
    pub children: Vec<PredictiveUnit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentSpec {
    pub spec: PodSpec,
}

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("machinelearning.seldon.io", "v1", "SeldonDeployment"),
        "seldondeployments",
    )
}

/// The SeldonDeployment serving `version` of the binding's model from `model_uri`
/// (already mapped to a bucket URI).
pub fn render(binding: &DeploymentBinding, version: &str, model_uri: &str) -> SeldonDeployment {
    let probe = |delay: i32| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(6),
        success_threshold: Some(1),
        ..Default::default()
    };
    SeldonDeployment {
        api_version: "machinelearning.seldon.io/v1",
        kind: "SeldonDeployment",
        metadata: metadata(binding, version),
        spec: SeldonDeploymentSpec {
            predictors: vec![Predictor {
                name: SELDON_STABLE_PREDICTOR.into(),
                replicas: binding.replicas,
                traffic: 100,
                shadow: None,
                labels: BTreeMap::from([(
                    super::objects::VERSION_LABEL.to_string(),
                    version.to_string(),
                )]),
                graph: PredictiveUnit {
                    name: GRAPH_NODE.into(),
                    implementation: "MLFLOW_SERVER".into(),
                    model_uri: model_uri.into(),
                    env_secret_ref_name: binding.storage_secret.clone(),
                    children: Vec::new(),
                },
                component_specs: vec![ComponentSpec {
                    spec: PodSpec {
                        containers: vec![Container {
                            name: GRAPH_NODE.into(),
                            // Always set, as before (`{}` when empty): the same
                            // binding renders the same object across versions.
                            resources: Some(resources(binding).unwrap_or_default()),
                            readiness_probe: Some(probe(READINESS_DELAY_SECS)),
                            liveness_probe: Some(probe(LIVENESS_DELAY_SECS)),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                }],
            }],
        },
    }
}

/// Seldon's own words: `status.state`, `status.description`, `status.address.url`.
pub fn status(object: &Value) -> ServingStatus {
    let status = &object["status"];
    let state = match status["state"].as_str() {
        Some("Available") => ServingState::Available,
        Some("Failed") => ServingState::Failed,
        _ => ServingState::Creating,
    };
    let message = status["description"]
        .as_str()
        .filter(|text| !text.is_empty())
        .or(false_condition(status, &[]))
        .unwrap_or_default()
        .to_string();
    ServingStatus {
        state,
        message,
        address: status["address"]["url"].as_str().map(str::to_string),
    }
}

/// Seldon Core v1's SeldonDeployment.
pub struct SeldonDeploymentKind;

pub type SeldonTarget = ObjectTarget<SeldonDeploymentKind>;

impl ObjectKind for SeldonDeploymentKind {
    const TARGET: TargetKind = TargetKind::Seldon;
    const KIND: &'static str = "SeldonDeployment";
    const OPERATOR: &'static str = "Seldon";
    const READY: &'static str = "Seldon reports it Available";

    fn api_resource() -> ApiResource {
        api_resource()
    }

    fn render(binding: &DeploymentBinding, version: &str, storage_uri: &str) -> Value {
        serde_json::to_value(render(binding, version, storage_uri))
            .expect("a SeldonDeployment is JSON")
    }

    fn status(object: &DynamicObject) -> ServingStatus {
        status(&object.data)
    }

    /// Seldon's own split: a second predictor, `canary`, serving the
    /// canary's model with its share as `traffic`, the default predictor
    /// the rest; a shadow's (`shadow: true`) gets a copy of every request.
    fn render_canary(
        binding: &DeploymentBinding,
        stable: Served<'_>,
        canary: Served<'_>,
        share: Share,
    ) -> Option<Value> {
        let mut deployment = render(binding, stable.version, stable.storage_uri);
        let mut second = deployment.spec.predictors[0].clone();
        let weight = if share.shadow {
            0
        } else {
            i32::from(share.weight)
        };
        second.name = seldon_canary_predictor(share.shadow).into();
        second.traffic = weight;
        second.shadow = share.shadow.then_some(true);
        second.labels.insert(
            super::objects::VERSION_LABEL.to_string(),
            canary.version.to_string(),
        );
        second.graph.model_uri = canary.storage_uri.to_string();
        deployment.spec.predictors[0].traffic = 100 - weight;
        deployment.spec.predictors.push(second);
        deployment
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                CANARY_ANNOTATION.to_string(),
                canary_annotation(canary, share),
            );
        Some(serde_json::to_value(deployment).expect("a SeldonDeployment is JSON"))
    }
}
