//! SeldonDeployment (`machinelearning.seldon.io/v1`) with Seldon's MLflow
//! server: rendered from typed structs (the pod parts are k8s-openapi's),
//! applied server-side with field manager `slipway` and strict field
//! validation, and read back into a `ServingStatus`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PodSpec, Probe, ResourceRequirements, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    ValidationDirective,
};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

use super::{ServingState, ServingStatus};
use crate::catalog::DeploymentBinding;
use crate::config::UnboundObjects;
use crate::executor::kubernetes::MANAGED_BY;

pub const FIELD_MANAGER: &str = "slipway";
pub const MODEL_LABEL: &str = "slipway.dev/model";
pub const VERSION_LABEL: &str = "slipway.dev/model-version";
/// The registered model's exact name (label values cannot hold every name).
pub const MODEL_ANNOTATION: &str = "slipway.dev/registered-model";
/// On an object whose binding is gone and that was left serving: since when.
pub const UNBOUND_ANNOTATION: &str = "slipway.dev/unbound";
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
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (MODEL_LABEL.to_string(), binding.object_name()),
        (VERSION_LABEL.to_string(), version.to_string()),
    ]);
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
    let quantities = |pick: fn(&crate::catalog::RequestLimit) -> &Option<String>| {
        let map: BTreeMap<String, Quantity> = [("cpu", &binding.cpu), ("memory", &binding.memory)]
            .into_iter()
            .filter_map(|(resource, pair)| {
                let value = pick(pair.as_ref()?).clone()?;
                Some((resource.to_string(), Quantity(value)))
            })
            .collect();
        (!map.is_empty()).then_some(map)
    };
    SeldonDeployment {
        api_version: "machinelearning.seldon.io/v1",
        kind: "SeldonDeployment",
        metadata: ObjectMeta {
            name: Some(binding.object_name()),
            namespace: binding.namespace.clone(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                MODEL_ANNOTATION.to_string(),
                binding.model.clone(),
            )])),
            ..Default::default()
        },
        spec: SeldonDeploymentSpec {
            predictors: vec![Predictor {
                name: "default".into(),
                replicas: binding.replicas,
                traffic: 100,
                labels: BTreeMap::from([(VERSION_LABEL.to_string(), version.to_string())]),
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
                            resources: Some(ResourceRequirements {
                                requests: quantities(|pair| &pair.request),
                                limits: quantities(|pair| &pair.limit),
                                ..Default::default()
                            }),
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

/// What went wrong talking to the cluster, in words for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

pub struct SeldonTarget {
    client: Client,
    unbound: UnboundObjects,
}

impl SeldonTarget {
    pub fn new(client: Client, unbound: UnboundObjects) -> Self {
        Self { client, unbound }
    }

    /// What happens to an object whose binding is gone.
    pub fn unbound(&self) -> UnboundObjects {
        self.unbound
    }

    fn api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &api_resource())
    }

    /// Server-side apply as field manager `slipway`, forcing ownership of
    /// the fields it sets (Slipway owns these objects: an edit by someone
    /// else is drift and is corrected), with strict field validation so a
    /// field the CRD does not know fails instead of vanishing (1.25+).
    pub async fn apply(&self, object: &SeldonDeployment) -> Result<Observed, ApplyError> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            force: true,
            field_validation: Some(ValidationDirective::Strict),
            ..Default::default()
        };
        let applied = self
            .api(&namespace)
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|err| explain(err, "apply", &namespace, &name))?;
        Ok(Observed::from(&applied))
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<Observed>, ApplyError> {
        match self.api(namespace).get_opt(name).await {
            Ok(found) => Ok(found.as_ref().map(Observed::from)),
            Err(err) => Err(explain(err, "read", namespace, name)),
        }
    }

    /// Deletes the object; one already gone is no error.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApplyError> {
        match self
            .api(namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(explain(err, "delete", namespace, name)),
        }
    }

    /// Leaves the object serving and says on it that no binding manages it
    /// any more; one already gone is no error.
    pub async fn mark_unbound(&self, namespace: &str, name: &str) -> Result<(), ApplyError> {
        let patch = serde_json::json!({
            "metadata": {"annotations": {UNBOUND_ANNOTATION: chrono::Utc::now().to_rfc3339()}}
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self
            .api(namespace)
            .patch(name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(explain(err, "mark", namespace, name)),
        }
    }
}

/// A SeldonDeployment as the cluster has it: the version its label names
/// (labels live in `metadata`, not in the object's data), its spec's
/// generation, and Seldon's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub version: Option<String>,
    pub generation: Option<i64>,
    pub status: ServingStatus,
}

impl From<&DynamicObject> for Observed {
    fn from(object: &DynamicObject) -> Self {
        Self {
            version: object
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(VERSION_LABEL))
                .cloned(),
            generation: object.metadata.generation,
            status: status(&object.data),
        }
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
    let failed_condition = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["status"] == "False")
        .and_then(|condition| {
            condition["message"]
                .as_str()
                .or(condition["reason"].as_str())
        });
    let message = status["description"]
        .as_str()
        .filter(|text| !text.is_empty())
        .or(failed_condition)
        .unwrap_or_default()
        .to_string();
    ServingStatus {
        state,
        message,
        address: status["address"]["url"].as_str().map(str::to_string),
    }
}

/// A refusal in words for the user, logged too: a pass in the background
/// may be the only one to see it.
fn explain(err: kube::Error, doing: &str, namespace: &str, name: &str) -> ApplyError {
    let explained = ApplyError(match err {
        kube::Error::Api(status) => match status.code {
            // A path under an API group the server does not serve.
            404 if status.message.contains("could not find the requested resource") => {
                "SeldonDeployment CRD not installed in the cluster (machinelearning.seldon.io/v1 is not served)".into()
            }
            404 => format!("not found in namespace {namespace}: {}", status.message),
            403 => format!(
                "Slipway's service account may not manage SeldonDeployments in namespace {namespace}: {}",
                status.message
            ),
            409 => format!("another field manager holds fields Slipway sets: {}", status.message),
            422 | 400 => format!("the cluster refused the SeldonDeployment as invalid: {}", status.message),
            code => format!("Kubernetes answered {code}: {}", status.message),
        },
        other => format!("cannot reach Kubernetes: {other}"),
    });
    tracing::warn!(%namespace, %name, error = %explained, "cannot {doing} a SeldonDeployment");
    explained
}
