//! Serving objects without a cluster: SeldonDeployments rendered for several
//! bindings validate against the real CRD's schema (unknown fields failing),
//! and applying them goes through kube's client over a mock transport that
//! answers as an API server does.

use crate::support;

use std::path::Path;

use crate::support::crd::CrdSchema;
use crate::support::mock_api::{self, Handle, respond, status};
use app::model::ServingState;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use server::adapters::serving::seldon::{self, SeldonTarget};
use server::adapters::serving::{kserve, objects, seldon_core2};
use server::catalog::{Catalog, DeploymentBinding, ServingTarget};
use server::serving::ServingStatus;

const BINDINGS: &str = r#"
[[deployment]]
model = "Diabetes Regressor"
target = "seldon"
namespace = "models"
replicas = 2
cpu = { request = "500m", limit = "2" }
memory = { request = "1Gi", limit = "4Gi" }
storage_secret = "mlflow-s3"
artifact_map = [{ from = "mlflow-artifacts:/", to = "s3://mlflow-artifacts/" }]

[[deployment]]
model = "iris"
name = "iris-classifier"
target = "seldon"
namespace = "serving"
production = "alias"
alias = "champion"

[[deployment]]
model = "scaled-down"
target = "seldon"
namespace = "models"
replicas = 0
cpu = { limit = "1" }
artifact_map = [{ from = "mlflow-artifacts:/", to = "gs://team-models/mlflow/" }]

[[deployment]]
model = "laptop"
target = "local"
"#;

fn bindings() -> Vec<DeploymentBinding> {
    Catalog::parse(BINDINGS, Path::new("."))
        .unwrap()
        .deployments
}

fn seldon_crd() -> CrdSchema {
    CrdSchema::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/crds/seldondeployments.machinelearning.seldon.io.yaml"),
        "v1",
    )
}

const MLFLOW_URI: &str = "mlflow-artifacts:/3/models/m-4f1e2d/artifacts";

#[test]
fn seldon_deployments_for_each_binding_validate_against_the_crd() {
    let crd = seldon_crd();
    let bindings: Vec<_> = bindings()
        .into_iter()
        .filter(|b| b.target == server::catalog::ServingTarget::Seldon)
        .collect();
    assert_eq!(bindings.len(), 3);
    for binding in &bindings {
        let uri = binding
            .storage_uri(MLFLOW_URI)
            .unwrap_or_else(|_| "s3://bucket/model".into());
        let object = serde_json::to_value(seldon::render(binding, "7", &uri)).unwrap();
        assert_eq!(
            crd.violations(&object),
            Vec::<String>::new(),
            "{}",
            binding.model
        );
        assert_eq!(object["apiVersion"], "machinelearning.seldon.io/v1");
        assert_eq!(object["kind"], "SeldonDeployment");
        let graph = &object["spec"]["predictors"][0]["graph"];
        // The CRD has no enum for this; a typo would pass the schema.
        assert_eq!(graph["implementation"], "MLFLOW_SERVER");
        assert_eq!(graph["modelUri"], uri.as_str());
        let container =
            &object["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0];
        assert_eq!(
            container["name"], graph["name"],
            "probes and resources attach to the graph's container by name"
        );
        assert!(
            container["readinessProbe"]["initialDelaySeconds"]
                .as_i64()
                .unwrap()
                >= 60
        );
        assert!(
            container["livenessProbe"]["initialDelaySeconds"]
                .as_i64()
                .unwrap()
                >= container["readinessProbe"]["initialDelaySeconds"]
                    .as_i64()
                    .unwrap()
        );
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "slipway"
        );
        assert_eq!(
            object["metadata"]["labels"]["slipway.dev/model-version"],
            "7"
        );
        assert_eq!(
            object["metadata"]["annotations"]["slipway.dev/registered-model"],
            binding.model.as_str()
        );
    }
    let first = serde_json::to_value(seldon::render(&bindings[0], "7", "s3://x")).unwrap();
    assert_eq!(first["metadata"]["name"], "diabetes-regressor");
    assert_eq!(first["metadata"]["namespace"], "models");
    assert_eq!(first["spec"]["predictors"][0]["replicas"], 2);
    assert_eq!(
        first["spec"]["predictors"][0]["graph"]["envSecretRefName"],
        "mlflow-s3"
    );
    let resources =
        &first["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources,
        &json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}})
    );
    let second = serde_json::to_value(seldon::render(&bindings[1], "1", "s3://x")).unwrap();
    assert_eq!(second["metadata"]["name"], "iris-classifier");
    assert!(
        second["spec"]["predictors"][0]["graph"]
            .get("envSecretRefName")
            .is_none()
    );
}

#[test]
fn the_schema_check_catches_unknown_fields_and_wrong_types() {
    let crd = seldon_crd();
    let binding = &bindings()[0];
    let mut object = serde_json::to_value(seldon::render(binding, "7", "s3://x")).unwrap();
    object["spec"]["predictors"][0]["graph"]["modelURI"] = json!("s3://typo");
    object["spec"]["predictors"][0]["replicas"] = json!("2");
    object["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["readinessProbe"]
        ["tcpSocket"]["port"] = json!(8000);
    let violations = crd.violations(&object);
    assert!(
        violations.contains(&".spec.predictors[0].graph.modelURI: unknown field".to_string()),
        "{violations:?}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with(".spec.predictors[0].replicas: expected an integer")),
        "{violations:?}"
    );
    assert_eq!(
        violations.len(),
        2,
        "an int port is fine (int-or-string): {violations:?}"
    );
    object["spec"]["predictors"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    assert!(
        crd.violations(&object)
            .iter()
            .any(|v| v.contains("missing required field \"name\""))
    );
}

#[test]
fn mlflow_uris_map_to_what_the_runtime_reads() {
    let bindings = bindings();
    assert_eq!(
        bindings[0].storage_uri(MLFLOW_URI).unwrap(),
        "s3://mlflow-artifacts/3/models/m-4f1e2d/artifacts"
    );
    assert_eq!(
        bindings[2].storage_uri(MLFLOW_URI).unwrap(),
        "gs://team-models/mlflow/3/models/m-4f1e2d/artifacts"
    );
    let unmapped = bindings[1].storage_uri(MLFLOW_URI).unwrap_err();
    assert!(
        unmapped.contains("add an artifact_map entry for model \"iris\""),
        "{unmapped}"
    );
    assert_eq!(
        bindings[1].storage_uri("s3://already/a/bucket").unwrap(),
        "s3://already/a/bucket"
    );
    assert_eq!(
        bindings[3].storage_uri(MLFLOW_URI).unwrap(),
        MLFLOW_URI,
        "the local target reads through MLflow"
    );
}

#[test]
fn bad_bindings_are_refused_at_start_up() {
    let problems = Catalog::parse(
        r#"
[[deployment]]
model = "a"
target = "seldon"

[[deployment]]
model = "a"
target = "local"
production = "alias"
alias = "v3"
replicas = -1
artifact_map = [{ from = "mlflow-artifacts:/", to = "/mnt/models" }]
"#,
        Path::new("."),
    )
    .unwrap_err()
    .join("\n");
    for expected in [
        "a seldon target needs a `namespace`",
        "model \"a\" has two deployments",
        "alias \"v3\" is reserved",
        "replicas must not be negative",
        "artifact_map target \"/mnt/models\" is not a bucket URI",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    let unknown = Catalog::parse(
        "[[deployment]]\nmodel = \"a\"\ntarget = \"kubeflow\"\n",
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        unknown[0].contains("unknown variant `kubeflow`"),
        "{unknown:?}"
    );
}

#[test]
fn status_reads_seldons_state_description_and_address() {
    let creating = seldon::status(&json!({"spec": {}}));
    assert_eq!(
        creating,
        ServingStatus {
            state: ServingState::Creating,
            message: String::new(),
            address: None
        }
    );
    let available = seldon::status(
        &json!({"status": {"state": "Available", "address": {"url": "http://diabetes-regressor-default.models.svc.cluster.local:8000/api/v1.0/predictions"}}}),
    );
    assert_eq!(available.state, ServingState::Available);
    assert_eq!(
        available.address.as_deref(),
        Some(
            "http://diabetes-regressor-default.models.svc.cluster.local:8000/api/v1.0/predictions"
        )
    );
    let failed = seldon::status(
        &json!({"status": {"state": "Failed", "description": "Cannot find secret mlflow-s3"}}),
    );
    assert_eq!(
        failed,
        ServingStatus {
            state: ServingState::Failed,
            message: "Cannot find secret mlflow-s3".into(),
            address: None
        }
    );
}

const CLUSTER_TARGETS: &str = r#"
[[deployment]]
model = "fraud"
target = "kserve"
namespace = "models"
replicas = 2
max_replicas = 5
service_account = "mlflow-bucket-reader"
cpu = { request = "500m", limit = "2" }
memory = { request = "1Gi", limit = "4Gi" }
artifact_map = [{ from = "mlflow-artifacts:/", to = "s3://mlflow-artifacts/" }]

[[deployment]]
model = "Churn"
target = "kserve"
namespace = "models"

[[deployment]]
model = "ranker"
target = "seldon-core-2"
namespace = "seldon"
replicas = 1
max_replicas = 3
server = "mlserver"
memory = { request = "2Gi" }
storage_secret = "rclone-s3"
artifact_map = [{ from = "mlflow-artifacts:/", to = "s3://mlflow-artifacts/" }]

[[deployment]]
model = "minimal"
target = "seldon-core-2"
namespace = "seldon"
"#;

fn crd(file: &str, version: &str) -> CrdSchema {
    CrdSchema::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/crds/{file}")),
        version,
    )
}

#[test]
fn inference_services_and_seldon_core_2_models_validate_against_their_crds() {
    let kserve_crd = crd("serving.kserve.io_inferenceservices.yaml", "v1beta1");
    let model_crd = crd("mlops.seldon.io_models.yaml", "v1alpha1");
    let bindings = Catalog::parse(CLUSTER_TARGETS, Path::new("."))
        .unwrap()
        .deployments;
    let uri = |binding: &DeploymentBinding| {
        binding
            .storage_uri(MLFLOW_URI)
            .unwrap_or_else(|_| "s3://bucket/model".into())
    };
    let rendered: Vec<Value> = bindings
        .iter()
        .map(|binding| match binding.target {
            ServingTarget::Kserve => {
                serde_json::to_value(kserve::render(binding, "7", &uri(binding))).unwrap()
            }
            ServingTarget::SeldonCore2 => {
                serde_json::to_value(seldon_core2::render(binding, "7", &uri(binding))).unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    for (binding, object) in bindings.iter().zip(&rendered) {
        let schema = match binding.target {
            ServingTarget::Kserve => &kserve_crd,
            _ => &model_crd,
        };
        assert_eq!(
            schema.violations(object),
            Vec::<String>::new(),
            "{}",
            binding.model
        );
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "slipway");
        assert_eq!(labels[objects::VERSION_LABEL], "7");
        assert_eq!(
            object["metadata"]["annotations"][objects::MODEL_ANNOTATION],
            binding.model.as_str()
        );
    }

    let fraud = &rendered[0];
    assert_eq!(fraud["apiVersion"], "serving.kserve.io/v1beta1");
    assert_eq!(fraud["kind"], "InferenceService");
    assert_eq!(fraud["metadata"]["name"], "fraud");
    let predictor = &fraud["spec"]["predictor"];
    assert_eq!(predictor["minReplicas"], 2);
    assert_eq!(predictor["maxReplicas"], 5);
    assert_eq!(predictor["serviceAccountName"], "mlflow-bucket-reader");
    let model = &predictor["model"];
    assert_eq!(model["modelFormat"]["name"], "mlflow");
    // MLServer serves MLflow models over v2 only; unset means v1.
    assert_eq!(model["protocolVersion"], "v2");
    assert_eq!(
        model["storageUri"],
        "s3://mlflow-artifacts/3/models/m-4f1e2d/artifacts"
    );
    assert_eq!(
        model["resources"],
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}})
    );
    let churn = &rendered[1]["spec"]["predictor"];
    assert_eq!(rendered[1]["metadata"]["name"], "churn");
    for unset in ["maxReplicas", "serviceAccountName"] {
        assert!(churn.get(unset).is_none(), "{unset}: {churn}");
    }
    assert!(churn["model"].get("resources").is_none(), "{churn}");

    let ranker = &rendered[2];
    assert_eq!(ranker["apiVersion"], "mlops.seldon.io/v1alpha1");
    assert_eq!(ranker["kind"], "Model");
    assert_eq!(
        ranker["spec"],
        json!({
            "storageUri": "s3://mlflow-artifacts/3/models/m-4f1e2d/artifacts",
            "requirements": ["mlflow"],
            "replicas": 1,
            "maxReplicas": 3,
            "memory": "2Gi",
            "server": "mlserver",
            "secretName": "rclone-s3",
        })
    );
    assert_eq!(
        rendered[3]["spec"],
        json!({"storageUri": "s3://bucket/model", "requirements": ["mlflow"], "replicas": 1})
    );

    // The strict check sees a misplaced field in these schemas too.
    let mut misplaced = fraud.clone();
    misplaced["spec"]["predictor"]["model"]["minReplicas"] = json!("2");
    let violations = kserve_crd.violations(&misplaced).join("\n");
    assert!(violations.contains("minReplicas"), "{violations}");
}

#[test]
fn cluster_target_settings_that_cannot_work_are_refused() {
    let problems = Catalog::parse(
        r#"
[[deployment]]
model = "a"
target = "kserve"
storage_secret = "s3-keys"
server = "mlserver"
replicas = 3
max_replicas = 2

[[deployment]]
model = "b"
target = "seldon"
namespace = "models"
service_account = "reader"
max_replicas = 4

[[deployment]]
model = "c"
target = "seldon-core-2"
namespace = "Models"
server = "ML_Server"
"#,
        Path::new("."),
    )
    .unwrap_err()
    .join("\n");
    for expected in [
        "a kserve target needs a `namespace`",
        "set service_account instead of storage_secret",
        "server is for the seldon-core-2 target, not kserve",
        "max_replicas 2 is below replicas 3",
        "service_account is for the kserve target, not seldon",
        "max_replicas is for the kserve and seldon-core-2 targets, not seldon",
        "namespace \"Models\" is not a DNS label",
        "server \"ML_Server\" is not a Kubernetes object name",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

#[test]
fn kserve_status_reads_as_sentences_with_its_traffic_and_v2_address() {
    let ready = kserve::status(
        "fraud",
        &json!({"status": {
            "url": "http://fraud.models.example.com",
            "conditions": [
                {"type": "IngressReady", "status": "True"},
                {"type": "PredictorReady", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
            "components": {"predictor": {
                "traffic": [
                    {"revisionName": "fraud-predictor-00002", "percent": 80, "latestRevision": true},
                    {"revisionName": "fraud-predictor-00001", "percent": 20, "tag": "prev", "latestRevision": false},
                ],
                "latestRolledoutRevision": "fraud-predictor-00001",
                "previousRolledoutRevision": "fraud-predictor-00000",
            }},
            "modelStatus": {"transitionStatus": "UpToDate"},
        }}),
    );
    assert_eq!(
        ready,
        ServingStatus {
            state: ServingState::Available,
            message: "traffic: 80 % to fraud-predictor-00002 (latest), 20 % to fraud-predictor-00001 (prev); \
                      rolled out fraud-predictor-00001, before it fraud-predictor-00000"
                .into(),
            address: Some("http://fraud.models.example.com/v2/models/fraud/infer".into()),
        }
    );
    let loading = kserve::status(
        "fraud",
        &json!({"status": {
            "conditions": [
                {"type": "PredictorReady", "status": "False", "reason": "RevisionMissing",
                 "message": "Configuration \"fraud-predictor\" is waiting for a Revision to become ready."},
                {"type": "Ready", "status": "False", "reason": "RevisionMissing"},
            ],
            "modelStatus": {"transitionStatus": "InProgress"},
        }}),
    );
    assert_eq!(loading.state, ServingState::Creating);
    assert_eq!(
        loading.message,
        "loading the model: Configuration \"fraud-predictor\" is waiting for a Revision to become ready."
    );
    assert_eq!(loading.address, None);
    let failed = kserve::status(
        "fraud",
        &json!({"status": {
            "url": "http://fraud.models.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
            "modelStatus": {
                "transitionStatus": "BlockedByFailedLoad",
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "No module named 'sklearn'"},
            },
        }}),
    );
    assert_eq!(failed.state, ServingState::Failed);
    assert_eq!(
        failed.message,
        "the model failed to load: No module named 'sklearn'"
    );
    let invalid = kserve::status(
        "fraud",
        &json!({"status": {"modelStatus": {
            "transitionStatus": "InvalidSpec",
            "lastFailureInfo": {"reason": "NoSupportingRuntime"},
        }}}),
    );
    assert_eq!(invalid.state, ServingState::Failed);
    assert_eq!(
        invalid.message,
        "KServe refused the spec: NoSupportingRuntime"
    );
    let fresh = kserve::status("fraud", &json!({"spec": {}}));
    assert_eq!(
        (fresh.state, fresh.message.as_str()),
        (ServingState::Creating, "")
    );
}

#[test]
fn seldon_core_2_status_reads_its_model_state_and_replicas() {
    let address = Some("http://seldon-mesh.seldon/v2/models/ranker/infer".to_string());
    let ready = seldon_core2::status(
        "seldon",
        "ranker",
        &json!({"status": {
            "availableReplicas": 2, "replicas": 2,
            "conditions": [
                {"type": "ModelReady", "status": "True", "reason": "ModelAvailable"},
                {"type": "Ready", "status": "True"},
            ],
        }}),
    );
    assert_eq!(
        ready,
        ServingStatus {
            state: ServingState::Available,
            message: "2 of 2 replicas available".into(),
            address: address.clone(),
        }
    );
    let progressing = seldon_core2::status(
        "seldon",
        "ranker",
        &json!({"status": {"conditions": [
            {"type": "ModelReady", "status": "False", "reason": "ModelProgressing", "message": "Model loading"},
            {"type": "Ready", "status": "False"},
        ]}}),
    );
    assert_eq!(
        (progressing.state, progressing.message.as_str()),
        (ServingState::Creating, "Model loading")
    );
    let unschedulable = seldon_core2::status(
        "seldon",
        "ranker",
        &json!({"status": {"conditions": [
            {"type": "ModelReady", "status": "False", "reason": "ScheduleFailed",
             "message": "failed to schedule model ranker: no matching servers available"},
            {"type": "Ready", "status": "False", "reason": "ScheduleFailed"},
        ]}}),
    );
    assert_eq!(unschedulable.state, ServingState::Failed);
    assert_eq!(
        unschedulable.message,
        "failed to schedule model ranker: no matching servers available"
    );
    assert_eq!(unschedulable.address, address);
}

fn target() -> (SeldonTarget, Handle) {
    let (client, handle) = mock_api::client("default");
    (
        SeldonTarget::new(client, server::config::UnboundObjects::Delete, "default"),
        handle,
    )
}

#[tokio::test]
async fn apply_is_server_side_as_slipway_with_strict_validation_and_explains_refusals() {
    let binding = bindings()[0].clone();
    let object = serde_json::to_value(seldon::render(
        &binding,
        "7",
        "s3://mlflow-artifacts/3/models/m-4f1e2d/artifacts",
    ))
    .unwrap();
    let answers = [
        (StatusCode::OK, None),
        (
            StatusCode::CONFLICT,
            Some((
                "Conflict",
                "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using machinelearning.seldon.io/v1: .spec.predictors",
                "another field manager holds fields",
            )),
        ),
        (
            StatusCode::NOT_FOUND,
            Some((
                "NotFound",
                "the server could not find the requested resource",
                "needed to apply the SeldonDeployment diabetes-regressor: is its CRD installed?",
            )),
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some((
                "Invalid",
                "SeldonDeployment.machinelearning.seldon.io \"diabetes-regressor\" is invalid: spec.predictors[0].replicas: Invalid value: \"string\"",
                "refused to apply the SeldonDeployment diabetes-regressor as invalid",
            )),
        ),
        (
            StatusCode::FORBIDDEN,
            Some((
                "Forbidden",
                "seldondeployments.machinelearning.seldon.io \"diabetes-regressor\" is forbidden",
                "not allowed to apply the SeldonDeployment diabetes-regressor in namespace models",
            )),
        ),
    ];
    for (code, refusal) in answers {
        let (target, mut handle) = target();
        let sent_object = object.clone();
        let applied = tokio::spawn(async move { target.apply(&sent_object, true).await });
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::PATCH);
        assert_eq!(
            request.uri().path(),
            "/apis/machinelearning.seldon.io/v1/namespaces/models/seldondeployments/diabetes-regressor"
        );
        let query = request.uri().query().unwrap().to_string();
        for part in [
            "fieldManager=slipway",
            "force=true",
            "fieldValidation=Strict",
        ] {
            assert!(query.contains(part), "{part} missing from {query}");
        }
        assert_eq!(
            request.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let body: Value =
            serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(body, object, "the rendered object, as is");
        match refusal {
            None => {
                let mut answer = body.clone();
                answer["metadata"]["uid"] = json!("1c9a");
                answer["metadata"]["resourceVersion"] = json!("42");
                answer["status"] = json!({"state": "Creating", "description": ""});
                send.send_response(respond(code, answer));
                let applied = applied.await.unwrap().unwrap();
                assert_eq!(applied.status.state, ServingState::Creating);
                // The version comes back from the object's metadata.
                assert_eq!(
                    applied.version.as_deref(),
                    object["metadata"]["labels"][objects::VERSION_LABEL].as_str()
                );
                assert_eq!(applied.generation, None);
            }
            Some((reason, message, explained)) => {
                send.send_response(respond(code, status(code.as_u16(), reason, message)));
                let err = applied.await.unwrap().unwrap_err().to_string();
                assert!(err.contains(explained), "{code}: {err}");
            }
        }
    }
}

#[tokio::test]
async fn a_missing_object_reads_as_none_so_the_reconciler_recreates_it() {
    let (target, mut handle) = target();
    let read = tokio::spawn(async move { target.get("models", "diabetes-regressor").await });
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), Method::GET);
    send.send_response(respond(
        StatusCode::NOT_FOUND,
        status(
            404,
            "NotFound",
            "seldondeployments.machinelearning.seldon.io \"diabetes-regressor\" not found",
        ),
    ));
    assert_eq!(read.await.unwrap().unwrap(), None);
}

/// Promotion as MLflow records it, read back as the desired state: by stage
/// (the previous Production version archived) and by alias, from one page
/// of registered models.
#[tokio::test(flavor = "multi_thread")]
async fn promotions_in_mlflow_become_the_desired_versions() {
    use server::serving::desired::desired_versions;
    let rest = support::MlflowRest::new(&support::mlflow_url());
    let client = server::adapters::mlflow::MlflowClient::new(
        &support::mlflow_url().parse().unwrap(),
        server::adapters::mlflow::MlflowAuth::None,
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    let experiment = rest
        .create_experiment(&support::unique("promote"), &[])
        .await;
    let by_stage = support::unique("by-stage");
    let by_alias = support::unique("by-alias");
    let mut versions = Vec::new();
    for model in [&by_stage, &by_alias] {
        rest.create_registered_model(model).await;
        for _ in 0..3 {
            let run = rest.create_run(&experiment, "r", &[], &[], &[]).await;
            versions.push(
                rest.register_version(model, &experiment, &run)
                    .await
                    .version,
            );
        }
    }
    assert_eq!(versions, ["1", "2", "3", "1", "2", "3"]);
    let bindings = Catalog::parse(
        &format!(
            "[[deployment]]\nmodel = \"{by_stage}\"\ntarget = \"local\"\n\n\
             [[deployment]]\nmodel = \"{by_alias}\"\ntarget = \"local\"\nproduction = \"alias\"\nalias = \"champion\"\n\n\
             [[deployment]]\nmodel = \"no-such-model-{by_stage}\"\ntarget = \"local\"\n"
        ),
        Path::new("."),
    )
    .unwrap()
    .deployments;
    let desired =
        |models: &[server::adapters::mlflow::RegisteredModel]| desired_versions(&bindings, models);

    let models = client.all_registered_models().await.unwrap();
    assert!(
        desired(&models).values().all(Option::is_none),
        "nothing promoted yet"
    );

    client
        .transition_to_production(&by_stage, "2")
        .await
        .unwrap();
    client.set_alias(&by_alias, "champion", "3").await.unwrap();
    let models = client.all_registered_models().await.unwrap();
    let now = desired(&models);
    assert_eq!(now[&by_stage].as_deref(), Some("2"));
    assert_eq!(now[&by_alias].as_deref(), Some("3"));
    assert_eq!(now[&format!("no-such-model-{by_stage}")], None);

    client
        .transition_to_production(&by_stage, "3")
        .await
        .unwrap();
    client.set_alias(&by_alias, "champion", "1").await.unwrap();
    let now = desired(&client.all_registered_models().await.unwrap());
    assert_eq!(now[&by_stage].as_deref(), Some("3"));
    assert_eq!(
        now[&by_alias].as_deref(),
        Some("1"),
        "moving an alias is another set"
    );
    let previous = client.get_model_version(&by_stage, "2").await.unwrap();
    assert_eq!(
        previous.current_stage, "Archived",
        "the previous Production version is archived"
    );
}

/// A pass reads the object, someone deletes it, and the pass's apply makes
/// it anew (a watch event and a deletion can meet so): the change is
/// recorded as a re-creation — `drift`, nothing served before it, pending
/// until Seldon reports it ready — not as an edit of what was there. The
/// API server answers through a mock transport: the interleaving is what a
/// real one cannot be made to show on demand.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_deleted_between_a_pass_read_and_its_apply_is_recorded_as_made_again() {
    use server::serving::target::{Ledger, Target, Trigger};
    let rest = support::MlflowRest::new(&support::mlflow_url());
    let model = support::unique("raced");
    rest.create_registered_model(&model).await;
    let experiment = rest.create_experiment(&support::unique("raced"), &[]).await;
    let run = rest.create_run(&experiment, "r", &[], &[], &[]).await;
    let version = rest
        .register_version(&model, &experiment, &run)
        .await
        .version;
    let binding = Catalog::parse(
        &format!(
            "[[deployment]]\nmodel = {model:?}\ntarget = \"seldon\"\nnamespace = \"models\"\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n"
        ),
        Path::new("."),
    )
    .unwrap()
    .deployments
    .remove(0);
    let data = tempfile::tempdir().unwrap();
    let store = server::store::Store::connect(&format!(
        "sqlite://{}?mode=rwc",
        data.path().join("slipway.db").display()
    ))
    .await
    .unwrap();
    let mlflow = server::adapters::mlflow::MlflowClient::new(
        &support::mlflow_url().parse().unwrap(),
        server::adapters::mlflow::MlflowAuth::None,
        std::time::Duration::from_secs(20),
    )
    .unwrap();
    let ledger = std::sync::Arc::new(Ledger::new(store.clone(), mlflow));
    let (target, mut handle) = target();
    let converging = {
        let (binding, version) = (binding.clone(), version.clone());
        tokio::spawn(async move {
            target
                .converge(
                    &ledger,
                    &binding,
                    Some(version),
                    &Trigger::new("watch", "kubernetes"),
                )
                .await
        })
    };
    let object = |uid: &str, generation: i64, state: &str| {
        let mut object = serde_json::to_value(seldon::render(
            &binding,
            &version,
            "s3://mlflow-artifacts/x",
        ))
        .unwrap();
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["generation"] = json!(generation);
        // Made by this install, as its apply labels it.
        object["metadata"]["labels"][objects::INSTALL_LABEL] = json!("default");
        object["status"] = json!({"state": state});
        object
    };
    // The pass reads it: serving this version already, the first object.
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), Method::GET);
    send.send_response(respond(StatusCode::OK, object("first", 3, "Available")));
    // Its apply finds it gone and makes another.
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.method(), Method::PATCH);
    send.send_response(respond(
        StatusCode::CREATED,
        object("second", 1, "Creating"),
    ));
    converging.await.unwrap().unwrap();

    let history = store.deployment_history(&model, 10).await.unwrap();
    assert_eq!(history.len(), 1, "{history:#?}");
    let event = &history[0];
    assert_eq!(
        (
            event.cause.as_str(),
            event.version.as_deref(),
            event.previous_version.as_deref(),
            event.outcome.as_str()
        ),
        ("drift", Some(version.as_str()), None, "pending"),
        "{event:?}"
    );
}

/// Every canary rendering passes its CRD's schema: KServe's
/// `canaryTrafficPercent`, the SeldonDeployment's second predictor, Seldon
/// Core 2's canary Model and Experiment.
#[test]
fn canary_objects_validate_against_their_crds() {
    use server::adapters::serving::objects::{ObjectKind, Served, Share};
    let share = |weight, shadow| Share { weight, shadow };
    let bindings = Catalog::parse(CLUSTER_TARGETS, Path::new("."))
        .unwrap()
        .deployments;
    let stable = Served {
        version: "7",
        storage_uri: "s3://mlflow-artifacts/1/a/artifacts/model",
    };
    let canary = Served {
        version: "8",
        storage_uri: "s3://mlflow-artifacts/1/b/artifacts/model",
    };
    let kserve_binding = bindings
        .iter()
        .find(|binding| binding.target == ServingTarget::Kserve)
        .unwrap();
    let service = kserve::InferenceServiceKind::render_canary(
        kserve_binding,
        stable,
        canary,
        share(20, false),
    )
    .unwrap();
    let violations =
        crd("serving.kserve.io_inferenceservices.yaml", "v1beta1").violations(&service);
    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(service["spec"]["predictor"]["canaryTrafficPercent"], 20);
    assert_eq!(
        service["spec"]["predictor"]["model"]["storageUri"],
        canary.storage_uri
    );
    assert_eq!(service["metadata"]["labels"][objects::VERSION_LABEL], "7");
    assert_eq!(
        service["metadata"]["annotations"][objects::CANARY_ANNOTATION],
        "8:20"
    );

    let seldon_binding: DeploymentBinding = toml::from_str(
        "model = \"fraud\"\ntarget = \"seldon\"\nnamespace = \"models\"\nreplicas = 2",
    )
    .unwrap();
    let deployment = seldon::SeldonDeploymentKind::render_canary(
        &seldon_binding,
        stable,
        canary,
        share(30, false),
    )
    .unwrap();
    assert_eq!(seldon_crd().violations(&deployment), Vec::<String>::new());
    let predictors = deployment["spec"]["predictors"].as_array().unwrap();
    let split: Vec<(&str, i64, &str)> = predictors
        .iter()
        .map(|predictor| {
            (
                predictor["name"].as_str().unwrap(),
                predictor["traffic"].as_i64().unwrap(),
                predictor["graph"]["modelUri"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        split,
        [
            ("default", 70, stable.storage_uri),
            ("canary", 30, canary.storage_uri)
        ]
    );

    // Seldon's shadow predictor sees a copy of every request.
    let shadowed = seldon::SeldonDeploymentKind::render_canary(
        &seldon_binding,
        stable,
        canary,
        share(100, true),
    )
    .unwrap();
    assert_eq!(seldon_crd().violations(&shadowed), Vec::<String>::new());
    let predictors = &shadowed["spec"]["predictors"];
    assert_eq!(
        (&predictors[0]["traffic"], &predictors[0].get("shadow")),
        (&json!(100), &None)
    );
    assert_eq!(
        (
            &predictors[1]["name"],
            &predictors[1]["traffic"],
            &predictors[1]["shadow"]
        ),
        (&json!("shadow"), &json!(0), &json!(true))
    );
    assert!(
        kserve::InferenceServiceKind::render_canary(
            kserve_binding,
            stable,
            canary,
            share(50, true)
        )
        .is_none(),
        "KServe cannot mirror"
    );

    let core2_binding = bindings
        .iter()
        .find(|binding| binding.target == ServingTarget::SeldonCore2)
        .unwrap();
    let (_, shadow) = seldon_core2::render_canary(core2_binding, canary, share(40, true));
    let shadow = serde_json::to_value(shadow).unwrap();
    assert_eq!(
        crd("mlops.seldon.io_experiments.yaml", "v1alpha1").violations(&shadow),
        Vec::<String>::new()
    );
    let (model, experiment) = seldon_core2::render_canary(core2_binding, canary, share(25, false));
    let (model, experiment) = (
        serde_json::to_value(model).unwrap(),
        serde_json::to_value(experiment).unwrap(),
    );
    assert_eq!(
        crd("mlops.seldon.io_models.yaml", "v1alpha1").violations(&model),
        Vec::<String>::new()
    );
    assert_eq!(
        crd("mlops.seldon.io_experiments.yaml", "v1alpha1").violations(&experiment),
        Vec::<String>::new()
    );
    let name = core2_binding.object_name();
    assert_eq!(model["metadata"]["name"], format!("{name}-canary"));
    assert_eq!(model["spec"]["storageUri"], canary.storage_uri);
    assert_eq!(
        experiment["spec"],
        json!({"default": name, "candidates": [
            {"name": name, "weight": 75},
            {"name": format!("{name}-canary"), "weight": 25},
        ]})
    );
    // A shadow: every request answered by the stable Model, a copy of its
    // share mirrored.
    assert_eq!(
        shadow["spec"],
        json!({"default": name, "candidates": [{"name": name, "weight": 100}],
            "mirror": {"name": format!("{name}-canary"), "percent": 40}})
    );
}
