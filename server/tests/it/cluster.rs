//! Every cluster path against a real Kubernetes API server (1.20.2, from
//! scripts/kube.sh): Slipway runs as the binary with the ServiceAccount
//! `deploy/base/rbac.yaml` ships, never as admin. The admin client plays what
//! the test cluster lacks: the kubelet (pod states), Seldon's operator
//! (deployment states), and people deleting and editing things.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::binary::{Slipway, SlipwaySettings};
use crate::support::cluster::TestNamespace;
use crate::support::eventually;
use crate::support::{MlflowRest, mlflow_url, repo_root, unique};
use app::model::{DeploymentDetail, Launch, LaunchStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use leptos::server_fn::ServerFn;
use serde_json::{Value, json};

const TRAINING_IMAGE: &str = "registry.example.com/slipway/diabetes:1.0";

/// The demo catalog's profiles and project as they are (the project's
/// directory made absolute; its image is the demo's) and `extra`
/// (bindings, profiles) in place of the demo's local bindings.
fn catalog(dir: &Path, extra: &str) -> PathBuf {
    let demo = std::fs::read_to_string(repo_root().join("deploy/demo/catalog.toml")).unwrap();
    let profiles_and_projects: String = demo
        .lines()
        .take_while(|line| *line != "[[deployment]]")
        .map(|line| {
            if line.trim() == r#"directory = "projects/diabetes""# {
                format!(
                    "directory = {:?}",
                    repo_root()
                        .join("deploy/demo/projects/diabetes")
                        .display()
                        .to_string()
                )
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(profiles_and_projects.contains(TRAINING_IMAGE));
    let path = dir.join("catalog.toml");
    std::fs::write(&path, format!("{profiles_and_projects}\n{extra}")).unwrap();
    path
}

struct Setup {
    namespace: TestNamespace,
    data: tempfile::TempDir,
    catalog: PathBuf,
}

impl Setup {
    async fn new(prefix: &str, extra: impl FnOnce(&str) -> String) -> Self {
        let namespace = TestNamespace::new(prefix).await;
        let data = tempfile::tempdir().unwrap();
        let catalog = catalog(data.path(), &extra(&namespace.name));
        Self {
            namespace,
            data,
            catalog,
        }
    }

    fn settings(&self) -> SlipwaySettings<'_> {
        SlipwaySettings {
            namespace: Some(&self.namespace),
            catalog: &self.catalog,
            data_dir: self.data.path(),
            mlflow_url: mlflow_url(),
            extra_env: Vec::new(),
            run_as: None,
        }
    }

    async fn slipway(&self) -> Slipway {
        Slipway::start(self.settings()).await
    }
}

/// Submits the launch form for the demo project's `main`; returns the id.
async fn launch(slipway: &Slipway, profile: &str) -> String {
    let submission = unique("form");
    let experiment = unique("cluster");
    let location = slipway
        .post_form(
            "/launches",
            &[
                ("submission", &submission),
                ("project", "diabetes"),
                ("entry_point", "main"),
                ("param.alpha", "0.3"),
                ("param.l1_ratio", "0.7"),
                ("new_experiment", &experiment),
                ("profile", profile),
                ("run_name", profile),
            ],
        )
        .await;
    let id = location
        .strip_prefix("/launches/")
        .unwrap_or_else(|| panic!("the launch went to {location}"))
        .to_string();
    let launch = get_launch(slipway, &id).await;
    assert_ne!(
        launch.status,
        LaunchStatus::Failed,
        "the launch failed at once: {}",
        launch.reason
    );
    id
}

async fn get_launch(slipway: &Slipway, id: &str) -> Launch {
    slipway
        .server_fn(app::server_fns::GetLaunch::PATH, &[("id", id)])
        .await
}

/// Waits until the launch has ended.
async fn ended(slipway: &Slipway, id: &str, within: Duration) -> Launch {
    wait_launch(slipway, id, within, |launch| launch.status.is_terminal()).await
}

/// Waits until the launch satisfies `wanted`; panics with its last state.
async fn wait_launch(
    slipway: &Slipway,
    id: &str,
    within: Duration,
    wanted: impl Fn(&Launch) -> bool,
) -> Launch {
    let deadline = Instant::now() + within;
    loop {
        let launch = get_launch(slipway, id).await;
        if wanted(&launch) {
            return launch;
        }
        assert!(
            Instant::now() < deadline,
            "launch {id} is still {:?} ({}) after {within:?}\n{}",
            launch.status,
            launch.reason,
            slipway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn of_launch(id: &str) -> ListParams {
    ListParams::default().labels(&format!("slipway.dev/launch-id={id}"))
}

async fn job_of(namespace: &TestNamespace, id: &str) -> Option<Job> {
    namespace
        .api::<Job>()
        .list(&of_launch(id))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
}

/// Deletes the launch's Job as someone with kubectl would.
async fn delete_job_of(namespace: &TestNamespace, id: &str) {
    let job = job_of(namespace, id).await.expect("a Job for the launch");
    namespace
        .api::<Job>()
        .delete(
            job.metadata.name.as_deref().unwrap(),
            &DeleteParams::background(),
        )
        .await
        .unwrap();
}

/// The launch's pod once the scheduler has bound it to the GPU node.
async fn bound_pod(namespace: &TestNamespace, id: &str, within: Duration) -> String {
    let pods = namespace.api::<Pod>();
    eventually(within, || async {
        let pod = pods
            .list(&of_launch(id))
            .await
            .ok()?
            .items
            .into_iter()
            .next()?;
        let bound = pod.spec.as_ref()?.node_name.as_deref() == Some("gpu-node-1");
        bound.then(|| pod.metadata.name.clone().unwrap())
    })
    .await
    .unwrap_or_else(|| panic!("no pod of launch {id} was bound within {within:?}"))
}

fn container_status(state: Value) -> Value {
    json!([{
        "name": "training", "ready": false, "restartCount": 0,
        "image": TRAINING_IMAGE, "imageID": "", "state": state,
    }])
}

/// The kubelet's report: the training container runs.
async fn pod_runs(namespace: &TestNamespace, pod: &str) {
    namespace
        .patch_status::<Pod>(
            pod,
            json!({
                "phase": "Running",
                "containerStatuses": container_status(json!({"running": {"startedAt": "2026-11-30T00:00:00Z"}})),
            }),
        )
        .await;
}

/// The kubelet's report: the training container exited with `code`.
async fn pod_exits(namespace: &TestNamespace, pod: &str, code: i32) {
    namespace
        .patch_status::<Pod>(
            pod,
            json!({
                "phase": if code == 0 { "Succeeded" } else { "Failed" },
                "containerStatuses": container_status(json!({"terminated": {
                    "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                    "startedAt": "2026-11-30T00:00:00Z", "finishedAt": "2026-11-30T00:01:00Z",
                }})),
            }),
        )
        .await;
}

/// The launch's MLflow run once its status is `status` (Slipway writes the
/// end to MLflow just after it records it).
async fn run_of(launch: &Launch, status: &str) -> Value {
    let mlflow = MlflowRest::new(&mlflow_url());
    let run_id = launch.run_id.as_deref().unwrap();
    let mut run = Value::Null;
    for _ in 0..100 {
        run = mlflow.get_run(run_id).await;
        if run["info"]["status"] == status {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} is not {status}: {run}");
}

const A_WHILE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn launches_on_each_demo_profile_follow_their_pods_to_the_end() {
    let setup = Setup::new("launch", |_| String::new()).await;
    let mut settings = setup.settings();
    // Credentials for local children, and a Secret for training pods.
    settings.extra_env.extend([
        ("SLIPWAY_JOB_MLFLOW_USERNAME", "trainer".into()),
        (
            "SLIPWAY_JOB_MLFLOW_PASSWORD",
            "job-password-not-for-jobs".into(),
        ),
        ("SLIPWAY_JOB_MLFLOW_SECRET", "mlflow-training".into()),
    ]);
    let slipway = Slipway::start(settings).await;
    let namespace = &setup.namespace;
    assert!(
        slipway
            .log()
            .contains("ignores strict field validation (1.25+)"),
        "Slipway warns what Kubernetes 1.20 lacks:\n{}",
        slipway.log()
    );

    // cpu-small: created by Slipway's own field manager, scheduled, run, done.
    let small = launch(&slipway, "cpu-small").await;
    let job = job_of(namespace, &small)
        .await
        .expect("a Job for the launch");
    let spec_managers: Vec<_> = job
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|fields| {
            fields
                .fields_v1
                .as_ref()
                .is_some_and(|owned| owned.0.get("f:spec").is_some())
        })
        .filter_map(|fields| fields.manager.clone())
        .collect();
    assert_eq!(spec_managers, ["slipway"], "who wrote the Job's spec");
    let written = serde_json::to_string(&job).unwrap();
    assert!(!written.contains("job-password-not-for-jobs"), "{written}");
    assert!(
        written.contains(r#"{"name":"MLFLOW_TRACKING_PASSWORD","valueFrom":{"secretKeyRef":{"key":"MLFLOW_TRACKING_PASSWORD","name":"mlflow-training","optional":true}}}"#),
        "{written}"
    );
    let pod = bound_pod(namespace, &small, A_WHILE).await;
    pod_runs(namespace, &pod).await;
    wait_launch(&slipway, &small, A_WHILE, |launch| {
        launch.status == LaunchStatus::Running
    })
    .await;
    // The launch page's stream: the logs cannot be read (no kubelet here),
    // which is said once, and the stream goes on to the training's end.
    let mut events = slipway
        .events(&format!("/api/launches/{small}/events"))
        .await;
    let refused = events
        .until(A_WHILE, |(name, data)| {
            name == "log" && data.starts_with("[slipway] no logs yet")
        })
        .await;
    assert!(
        refused.1.contains("read the training's logs"),
        "{refused:?}"
    );
    pod_exits(namespace, &pod, 0).await;
    let rest = events.until_end(A_WHILE).await;
    assert!(
        rest.iter()
            .any(|(name, data)| name == "status" && data.contains("\"Succeeded\"")),
        "{rest:?}"
    );
    let repeated = rest
        .iter()
        .filter(|(_, data)| data.contains("read the training's logs"))
        .count();
    assert_eq!(repeated, 0, "the same error is not repeated: {rest:?}");
    let done = get_launch(&slipway, &small).await;
    assert_eq!(done.status, LaunchStatus::Succeeded);
    run_of(&done, "FINISHED").await;

    // gpu-1 names a PriorityClass the cluster lacks: the Job controller
    // cannot create the pod, and the launch says why. (Only this test
    // touches that cluster-wide class; an earlier run may have left it.)
    let priority_classes = Api::<PriorityClass>::all(namespace.admin.clone());
    if priority_classes
        .delete("training", &DeleteParams::default())
        .await
        .is_ok()
    {
        // Admission reads classes from a cache: let it notice.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let gpu = launch(&slipway, "gpu-1").await;
    let waiting = wait_launch(&slipway, &gpu, A_WHILE, |launch| {
        launch.reason.starts_with("FailedCreate")
    })
    .await;
    assert_eq!(waiting.status, LaunchStatus::Pending);
    assert!(
        waiting
            .reason
            .contains("no PriorityClass with name training was found"),
        "{}",
        waiting.reason
    );
    // A cluster admin adds it; the Job controller's next try creates the pod.
    let created = priority_classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "training"}, "value": 1000, "description": "training Jobs"}),
            )
            .unwrap(),
        )
        .await;
    created.expect("creating the PriorityClass");
    // The Job controller retries after a back-off that grows to minutes;
    // any change to the Job makes it try again at once.
    let gpu_job = job_of(namespace, &gpu).await.unwrap();
    namespace
        .api::<Job>()
        .patch(
            gpu_job.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/retry": "now"}}})),
        )
        .await
        .unwrap();
    let gpu_pod = bound_pod(namespace, &gpu, A_WHILE).await;
    pod_exits(namespace, &gpu_pod, 1).await;
    let failed = wait_launch(&slipway, &gpu, A_WHILE, |launch| {
        launch.status == LaunchStatus::Failed
    })
    .await;
    assert_eq!(failed.reason, "Error: the training exited with code 1");
    run_of(&failed, "FAILED").await;

    // cpu-large wants the batch pool, which no node is in: unschedulable,
    // in the scheduler's words, until someone cancels it.
    let large = launch(&slipway, "cpu-large").await;
    let unschedulable = wait_launch(&slipway, &large, A_WHILE, |launch| {
        launch.reason.starts_with("Unschedulable")
    })
    .await;
    assert!(
        // 1.20's words; newer schedulers say "node affinity/selector".
        unschedulable.reason.starts_with(
            "Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity"
        ),
        "{}",
        unschedulable.reason
    );
    let back = slipway
        .post_form(&format!("/launches/{large}/cancel"), &[])
        .await;
    assert_eq!(back, format!("/launches/{large}"));
    let cancelled = get_launch(&slipway, &large).await;
    assert_eq!(cancelled.status, LaunchStatus::Cancelled);
    assert!(
        eventually(A_WHILE, || async {
            job_of(namespace, &large).await.is_none().then_some(())
        })
        .await
        .is_some(),
        "cancel deletes the Job"
    );
    run_of(&cancelled, "KILLED").await;

    // An evicted pod ends without container statuses; the pod says why.
    let evicted = launch(&slipway, "cpu-small").await;
    let pod = bound_pod(namespace, &evicted, A_WHILE).await;
    pod_runs(namespace, &pod).await;
    namespace
        .patch_status::<Pod>(
            &pod,
            json!({"phase": "Failed", "reason": "Evicted",
                   "message": "The node was low on resource: memory.", "containerStatuses": null}),
        )
        .await;
    let gone = ended(&slipway, &evicted, A_WHILE).await;
    assert_eq!(
        (gone.status, gone.reason.as_str()),
        (
            LaunchStatus::Failed,
            "Evicted: The node was low on resource: memory."
        )
    );
    namespace.release_node().await;
}

/// A project from git: its Job fetches exactly the pinned commit into a
/// workspace first (credentials by reference), and trains in it — accepted
/// by the API server from the shipped ServiceAccount.
#[tokio::test(flavor = "multi_thread")]
async fn a_git_projects_job_fetches_its_commit_before_it_trains() {
    let repository = tempfile::tempdir().unwrap();
    let bare = repository.path().join("diabetes.git");
    let run = |args: &[&str], directory: &Path| {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(directory)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    std::fs::create_dir_all(&bare).unwrap();
    run(
        &["init", "--quiet", "--bare", "--initial-branch=main"],
        &bare,
    );
    let work = repository.path().join("work");
    let project = work.join("training/diabetes");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(
        repo_root().join("deploy/demo/projects/diabetes/MLproject"),
        project.join("MLproject"),
    )
    .unwrap();
    run(&["init", "--quiet", "--initial-branch=main"], &work);
    run(&["add", "."], &work);
    run(&["commit", "--quiet", "-m", "diabetes"], &work);
    let url = format!("file://{}", bare.display());
    run(&["push", "--quiet", &url, "main"], &work);
    let commit = run(&["rev-parse", "HEAD"], &work);
    let setup = Setup::new("git", |_| {
        format!(
            "[[project]]\nname = \"diabetes-git\"\ngit = {url:?}\npath = \"training/diabetes\"\n\
             git_secret = \"git-credentials\"\nimage = {TRAINING_IMAGE:?}\n"
        )
    })
    .await;
    let slipway = setup.slipway().await;
    let location = slipway
        .post_form(
            "/launches",
            &[
                ("submission", &unique("form")),
                ("project", "diabetes-git"),
                ("entry_point", "main"),
                ("param.alpha", "0.3"),
                ("param.l1_ratio", "0.7"),
                ("new_experiment", &unique("git")),
                ("profile", "cpu-small"),
            ],
        )
        .await;
    let id = location.strip_prefix("/launches/").unwrap().to_string();
    let launch = get_launch(&slipway, &id).await;
    assert_eq!(
        launch.git_commit.as_deref(),
        Some(commit.as_str()),
        "{launch:?}"
    );
    let job = job_of(&setup.namespace, &id)
        .await
        .expect("a Job for the launch");
    let pod = job.spec.unwrap().template.spec.unwrap();
    let fetch = &pod.init_containers.as_ref().expect("a fetch step")[0];
    assert_eq!(fetch.image.as_deref(), Some("alpine/git:2.47.2"));
    let env: BTreeMap<String, Value> = fetch
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.clone(), serde_json::to_value(var).unwrap()))
        .collect();
    assert_eq!(env["GIT_URL"]["value"], url.as_str());
    assert_eq!(env["GIT_COMMIT"]["value"], commit.as_str());
    // The credentials by reference: no value in the Job.
    assert_eq!(
        env["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"],
        "git-credentials"
    );
    assert!(env["GIT_PASSWORD"].get("value").is_none());
    // The URL and the commit are never in the script a shell runs.
    let script = fetch.command.as_ref().unwrap().join(" ");
    assert!(
        !script.contains(&commit) && !script.contains(&url),
        "{script}"
    );
    let training = &pod.containers[0];
    assert_eq!(
        training.working_dir.as_deref(),
        Some("/workspace/training/diabetes")
    );
    assert_eq!(
        training.volume_mounts.as_ref().unwrap()[0].mount_path,
        "/workspace"
    );
    let volume = &pod.volumes.as_ref().unwrap()[0];
    assert!(volume.empty_dir.is_some(), "{volume:?}");
    // The code is the Job's to fetch: nothing was checked out here.
    assert!(!setup.data.path().join("git-work").join(&id).exists());
    slipway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_or_pod_deleted_outside_slipway_ends_its_launch() {
    let setup = Setup::new("deleted", |_| String::new()).await;
    let slipway = setup.slipway().await;
    let namespace = &setup.namespace;

    let job_deleted = launch(&slipway, "cpu-small").await;
    let pod = bound_pod(namespace, &job_deleted, A_WHILE).await;
    pod_runs(namespace, &pod).await;
    wait_launch(&slipway, &job_deleted, A_WHILE, |launch| {
        launch.status == LaunchStatus::Running
    })
    .await;
    delete_job_of(namespace, &job_deleted).await;
    let deleted_at = Instant::now();
    let outcome = ended(&slipway, &job_deleted, Duration::from_secs(5)).await;
    let took = deleted_at.elapsed();
    assert_eq!(outcome.status, LaunchStatus::Failed);
    assert!(
        outcome.reason.contains("was deleted outside Slipway"),
        "{}",
        outcome.reason
    );
    eprintln!("Job deleted → launch ended in {took:?}");
    let run = run_of(&outcome, "FAILED").await;
    assert!(
        support::run_pairs(&run, "tags")["slipway.end_reason"].contains("deleted outside Slipway")
    );

    // A pod deleted under a running Job: on 1.20 the Job controller would
    // start a second attempt in the same MLflow run. Slipway ends the
    // launch and stops the Job instead.
    let pod_deleted = launch(&slipway, "cpu-small").await;
    let pod = bound_pod(namespace, &pod_deleted, A_WHILE).await;
    pod_runs(namespace, &pod).await;
    wait_launch(&slipway, &pod_deleted, A_WHILE, |launch| {
        launch.status == LaunchStatus::Running
    })
    .await;
    namespace
        .api::<Pod>()
        .delete(&pod, &DeleteParams::default())
        .await
        .unwrap();
    let lost = ended(&slipway, &pod_deleted, Duration::from_secs(10)).await;
    assert_eq!(lost.status, LaunchStatus::Failed);
    assert!(
        lost.reason.contains(&format!("its pod {pod} was deleted")),
        "{}",
        lost.reason
    );
    assert!(
        eventually(A_WHILE, || async {
            job_of(namespace, &pod_deleted)
                .await
                .is_none()
                .then_some(())
        })
        .await
        .is_some(),
        "Slipway deletes the Job, so no replacement pod runs"
    );
    namespace.release_node().await;
}

/// When a Job runs past its deadline the Job controller deletes its pod and
/// only then writes the Job's verdict: the launch ends with the verdict,
/// not as a lost pod.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_deadline_ends_with_the_job_controllers_verdict() {
    let setup = Setup::new("deadline", |_| {
        "[[profile]]\nname = \"brief\"\nmax_runtime_secs = 2\n".to_string()
    })
    .await;
    let slipway = setup.slipway().await;
    let namespace = &setup.namespace;
    let brief = launch(&slipway, "brief").await;
    let pod = bound_pod(namespace, &brief, A_WHILE).await;
    pod_runs(namespace, &pod).await;
    let outcome = ended(&slipway, &brief, A_WHILE).await;
    assert_eq!(outcome.status, LaunchStatus::Failed);
    assert!(
        outcome.reason.starts_with("DeadlineExceeded"),
        "{}",
        outcome.reason
    );
    namespace.release_node().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_reattaches_running_launches_and_settles_the_gone_ones() {
    let setup = Setup::new("restart", |_| String::new()).await;
    let namespace = &setup.namespace;
    let first = setup.slipway().await;
    let survives = launch(&first, "cpu-small").await;
    let deleted = launch(&first, "cpu-small").await;
    let finished = launch(&first, "cpu-small").await;
    let mut pods = Vec::new();
    for id in [&survives, &deleted, &finished] {
        pods.push(bound_pod(namespace, id, A_WHILE).await);
    }
    let finished_run = get_launch(&first, &finished).await.run_id.unwrap();
    first.crash().await;

    // While no Slipway watches: one training starts running, one Job is
    // deleted, one Job is deleted after its code finished the MLflow run.
    pod_runs(namespace, &pods[0]).await;
    for id in [&deleted, &finished] {
        delete_job_of(namespace, id).await;
    }
    MlflowRest::new(&mlflow_url())
        .post(
            "runs/update",
            json!({"run_id": finished_run, "status": "FINISHED"}),
        )
        .await;

    let second = setup.slipway().await;
    let running = wait_launch(&second, &survives, A_WHILE, |launch| {
        launch.status == LaunchStatus::Running
    })
    .await;
    assert_eq!(
        running.executor_ref,
        get_launch(&second, &survives).await.executor_ref
    );
    let gone = ended(&second, &deleted, A_WHILE).await;
    assert_eq!(gone.status, LaunchStatus::Failed);
    assert!(
        gone.reason.starts_with("its Job no longer exists"),
        "{}",
        gone.reason
    );
    let done = ended(&second, &finished, A_WHILE).await;
    assert_eq!(done.status, LaunchStatus::Succeeded, "{}", done.reason);
    assert!(done.reason.ends_with("the MLflow run had finished"));

    pod_exits(namespace, &pods[0], 0).await;
    wait_launch(&second, &survives, A_WHILE, |launch| {
        launch.status == LaunchStatus::Succeeded
    })
    .await;
    namespace.release_node().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_the_api_server_would_refuse_keeps_slipway_from_starting() {
    let namespace = TestNamespace::new("dryrun").await;
    let data = tempfile::tempdir().unwrap();
    // Passes every check Slipway makes itself; only the API server knows
    // that a toleration without a key must use operator Exists.
    let catalog = data.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[[profile]]\nname = \"any-taint\"\ntolerations = [{ effect = \"NoSchedule\" }]\n",
    )
    .unwrap();
    let outcome = Slipway::try_start(SlipwaySettings {
        namespace: Some(&namespace),
        catalog: &catalog,
        data_dir: data.path(),
        mlflow_url: mlflow_url(),
        extra_env: Vec::new(),
        run_as: None,
    })
    .await;
    let log = match outcome {
        Ok(slipway) => panic!("Slipway started:\n{}", slipway.log()),
        Err(log) => log,
    };
    assert!(
        log.contains("profile any-taint: the Kubernetes API server refuses its Job")
            && log.contains("spec.template.spec.tolerations[0].operator"),
        "{log}"
    );
}

/// What Seldon's operator (absent here) writes once the model's pods are
/// ready: `Available`, its address, and the `Ready` condition turning true now.
async fn seldon_reports_ready(namespace: &TestNamespace, name: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let address = format!(
        "http://{name}-default.{}.svc:8000/api/v1.0/predictions",
        namespace.name
    );
    seldon_api(namespace)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "state": "Available",
                "address": {"url": address},
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }})),
        )
        .await
        .unwrap();
}

/// Someone sets the object's replicas to 5 (replacing it whole, as
/// `kubectl edit` does); whether Slipway put its 1 back within `within`.
async fn edited_and_put_back(namespace: &TestNamespace, name: &str, within: Duration) -> bool {
    let mut edited = seldon_api(namespace).get(name).await.unwrap();
    edited.data["spec"]["predictors"][0]["replicas"] = json!(5);
    edited.metadata.managed_fields = None;
    seldon_api(namespace)
        .replace(name, &PostParams::default(), &edited)
        .await
        .unwrap();
    eventually(within, || async {
        let object = seldon_api(namespace).get(name).await.ok()?;
        (object.data["spec"]["predictors"][0]["replicas"] == 1).then_some(())
    })
    .await
    .is_some()
}

fn seldon_api(namespace: &TestNamespace) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("machinelearning.seldon.io", "v1", "SeldonDeployment"),
        "seldondeployments",
    );
    Api::namespaced_with(namespace.admin.clone(), &namespace.name, &resource)
}

async fn deployment(slipway: &Slipway, model: &str) -> DeploymentDetail {
    slipway
        .server_fn(app::server_fns::GetDeployment::PATH, &[("model", model)])
        .await
}

/// The deployment once `wanted` holds; panics with how it last looked.
async fn deployment_when(
    slipway: &Slipway,
    model: &str,
    wanted: impl Fn(&DeploymentDetail) -> bool,
) -> DeploymentDetail {
    let found = eventually(A_WHILE, || async {
        let detail = deployment(slipway, model).await;
        wanted(&detail).then_some(detail)
    })
    .await;
    match found {
        Some(detail) => detail,
        None => panic!(
            "{model} never got there: {:#?}",
            deployment(slipway, model).await
        ),
    }
}

fn says_nothing_is_in_production(detail: &DeploymentDetail) -> bool {
    detail.view.message.contains("no version is in production")
}

/// A registered model with `count` versions, stored the MLflow 3 way.
async fn registered_model(count: usize) -> (String, Vec<String>) {
    let mlflow = MlflowRest::new(&mlflow_url());
    let model = unique("served");
    mlflow.create_registered_model(&model).await;
    let experiment = mlflow.create_experiment(&unique("served"), &[]).await;
    let mut versions = Vec::new();
    for index in 0..count {
        let run = mlflow
            .create_run(&experiment, &format!("v{index}"), &[], &[], &[])
            .await;
        versions.push(
            mlflow
                .register_version(&model, &experiment, &run)
                .await
                .version,
        );
    }
    (model, versions)
}

fn seldon_binding(model: &str, namespace: &str) -> String {
    format!(
        "[[deployment]]\nmodel = {model:?}\ntarget = \"seldon\"\nnamespace = {namespace:?}\n\
         replicas = 1\nstorage_secret = \"mlflow-bucket\"\n\
         artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n"
    )
}

async fn version_label(namespace: &TestNamespace, name: &str) -> Option<String> {
    let object = seldon_api(namespace).get_opt(name).await.unwrap()?;
    object
        .metadata
        .labels?
        .get("slipway.dev/model-version")
        .cloned()
}

/// Waits until the SeldonDeployment serves `version` (None: until it is gone).
async fn wait_served(namespace: &TestNamespace, name: &str, version: Option<&str>) {
    object_serves(&seldon_api(namespace), name, version).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_rollback_and_drift_on_a_real_api_server_as_the_shipped_service_account() {
    let (model, versions) = registered_model(2).await;
    let setup = Setup::new("serve", |namespace| seldon_binding(&model, namespace)).await;
    let namespace = &setup.namespace;
    let slipway = setup.slipway().await;
    let name = server::catalog::dns_name(&model);

    // Nothing in production yet: nothing is created, and the page says so.
    let before = deployment_when(&slipway, &model, says_nothing_is_in_production).await;
    assert_eq!(before.view.serving_version, None);
    assert!(
        seldon_api(namespace)
            .get_opt(&name)
            .await
            .unwrap()
            .is_none()
    );

    let promote = |version: &str| {
        let version = version.to_string();
        let slipway = &slipway;
        let model = &model;
        async move {
            slipway
                .post_form(
                    &format!("/deployments/{model}/promote"),
                    &[("version", &version)],
                )
                .await
        }
    };
    let started = Instant::now();
    promote(&versions[0]).await;
    wait_served(namespace, &name, Some(&versions[0])).await;
    eprintln!(
        "promote → SeldonDeployment on the API server: {:?}",
        started.elapsed()
    );
    let object = seldon_api(namespace).get(&name).await.unwrap();
    assert_eq!(
        object.data["spec"]["predictors"][0]["graph"]["modelUri"]
            .as_str()
            .unwrap()
            .split("/models/")
            .next()
            .unwrap()
            .split('/')
            .take(3)
            .collect::<Vec<_>>(),
        ["s3:", "", "mlflow-artifacts"]
    );
    assert_eq!(field_managers(&object), ["slipway"]);

    // Applied is not ready: the change waits for Seldon's own signal.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let applied = deployment(&slipway, &model).await;
    assert_eq!(
        applied.history[0].outcome, "pending",
        "{:#?}",
        applied.history
    );
    // Seldon's operator reports it ready; the page reads it back, and the
    // time to ready is Seldon's, not the apply's.
    seldon_reports_ready(namespace, &name).await;
    let ready = deployment_when(&slipway, &model, |detail| {
        detail.view.state == "Available" && detail.history[0].outcome == "serving"
    })
    .await;
    assert_eq!(
        ready.view.serving_version.as_deref(),
        Some(versions[0].as_str())
    );
    assert_eq!(ready.history.len(), 1);
    let event = &ready.history[0];
    let time_to_ready = event.ready_ms.unwrap() - event.started_ms;
    // Seldon's times are whole seconds: at least 3 s less one.
    assert!(time_to_ready >= 2000, "{time_to_ready} ms: {event:?}");

    // Nothing changes: passes every second add no history.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let quiet = deployment(&slipway, &model).await;
    assert_eq!(quiet.history.len(), 1, "{:#?}", quiet.history);

    promote(&versions[1]).await;
    wait_served(namespace, &name, Some(&versions[1])).await;
    seldon_reports_ready(namespace, &name).await;
    deployment_when(&slipway, &model, |detail| {
        detail.history.len() == 2 && detail.history[0].outcome == "serving"
    })
    .await;
    let back = slipway
        .post_form(&format!("/deployments/{model}/rollback"), &[])
        .await;
    assert_eq!(
        back,
        format!(
            "/deployments/{model}?done=rolled-back&version={}",
            versions[0]
        )
    );
    wait_served(namespace, &name, Some(&versions[0])).await;
    seldon_reports_ready(namespace, &name).await;
    deployment_when(&slipway, &model, |detail| {
        detail.history.len() == 3 && detail.history[0].outcome == "serving"
    })
    .await;

    // Someone edits the object: put back, and recorded as drift.
    assert!(
        edited_and_put_back(namespace, &name, A_WHILE).await,
        "the edit is undone"
    );
    // Someone deletes it: recreated, and recorded as drift.
    seldon_api(namespace)
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_served(namespace, &name, Some(&versions[0])).await;
    seldon_reports_ready(namespace, &name).await;

    let history = deployment_when(&slipway, &model, |detail| {
        detail.history.len() == 5 && detail.history[0].outcome == "serving"
    })
    .await
    .history;
    let rows: Vec<_> = history
        .iter()
        .rev()
        .map(|event| {
            (
                event.cause.as_str(),
                event.actor.as_str(),
                event.version.clone(),
                event.previous_version.clone(),
                event.outcome.as_str(),
                event.message.as_str(),
            )
        })
        .collect();
    let v = |index: usize| Some(versions[index].clone());
    let user = "operator";
    const READY: &str = "applied; Seldon reports it Available";
    const RECREATED: &str = "put back: deleted outside Slipway; Seldon reports it Available";
    assert_eq!(
        rows,
        [
            ("promote", user, v(0), None, "serving", READY),
            ("promote", user, v(1), v(0), "serving", READY),
            ("rollback", user, v(0), v(1), "serving", READY),
            (
                "drift",
                "slipway",
                v(0),
                v(0),
                "serving",
                "put back: edited outside Slipway"
            ),
            // Nothing served while it was gone.
            ("drift", "slipway", v(0), None, "serving", RECREATED),
        ]
    );

    // Taken out of production in MLflow: it keeps serving, and says so.
    MlflowRest::new(&mlflow_url())
        .transition_stage(&model, &versions[0], "Archived")
        .await;
    let kept = deployment_when(&slipway, &model, says_nothing_is_in_production).await;
    assert_eq!(
        kept.view.serving_version.as_deref(),
        Some(versions[0].as_str())
    );
    assert!(
        kept.view
            .message
            .contains(&format!("v{} keeps serving", versions[0]))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(version_label(namespace, &name).await, v(0));
    assert_eq!(deployment(&slipway, &model).await.history.len(), 5);
}

/// Bindings leave the catalog: with SLIPWAY_UNBOUND_OBJECTS=keep the object
/// stays serving, marked and no longer managed; by default it is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_binding_takes_its_seldon_deployment_with_it_or_leaves_it_marked() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let (kept, kept_versions) = registered_model(1).await;
    let (deleted, deleted_versions) = registered_model(1).await;
    mlflow
        .transition_stage(&kept, &kept_versions[0], "Production")
        .await;
    mlflow
        .transition_stage(&deleted, &deleted_versions[0], "Production")
        .await;
    let setup = Setup::new("unbind", |namespace| {
        seldon_binding(&kept, namespace) + &seldon_binding(&deleted, namespace)
    })
    .await;
    let namespace = &setup.namespace;
    let (kept_name, deleted_name) = (
        server::catalog::dns_name(&kept),
        server::catalog::dns_name(&deleted),
    );
    let slipway = setup.slipway().await;
    wait_served(namespace, &kept_name, Some(&kept_versions[0])).await;
    wait_served(namespace, &deleted_name, Some(&deleted_versions[0])).await;
    drop(slipway);

    // The admin removes the first binding and restarts Slipway, keeping
    // what unbound bindings leave.
    catalog(
        setup.data.path(),
        &seldon_binding(&deleted, &namespace.name),
    );
    let mut settings = setup.settings();
    settings
        .extra_env
        .push(("SLIPWAY_UNBOUND_OBJECTS", "keep".into()));
    let slipway = Slipway::start(settings).await;
    let marked = eventually(A_WHILE, || async {
        let object = seldon_api(namespace).get(&kept_name).await.ok()?;
        object
            .metadata
            .annotations?
            .contains_key("slipway.dev/unbound")
            .then_some(())
    })
    .await;
    assert!(marked.is_some(), "the kept object is marked");
    assert_eq!(
        version_label(namespace, &kept_name).await,
        Some(kept_versions[0].clone())
    );
    // Stopped only once it has let go of the object, as its log says.
    let let_go = eventually(A_WHILE, || async {
        slipway
            .log()
            .contains("its SeldonDeployment was left serving and marked")
            .then_some(())
    })
    .await;
    assert!(let_go.is_some(), "{}", slipway.log());
    drop(slipway);

    // Then the second, with the default: deleted. The kept one is no
    // longer Slipway's to touch.
    assert_eq!(catalog(setup.data.path(), ""), setup.catalog);
    let _slipway = setup.slipway().await;
    wait_served(namespace, &deleted_name, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        version_label(namespace, &kept_name).await,
        Some(kept_versions[0].clone())
    );
}

/// A binding that says `no_production = "remove"`: archiving the version
/// in MLflow takes the SeldonDeployment away, recorded as `removed`.
#[tokio::test(flavor = "multi_thread")]
async fn with_no_production_remove_an_archived_model_stops_serving() {
    let (model, versions) = registered_model(1).await;
    let mlflow = MlflowRest::new(&mlflow_url());
    mlflow
        .transition_stage(&model, &versions[0], "Production")
        .await;
    let setup = Setup::new("remove", |namespace| {
        seldon_binding(&model, namespace) + "no_production = \"remove\"\n"
    })
    .await;
    let namespace = &setup.namespace;
    let name = server::catalog::dns_name(&model);
    let slipway = setup.slipway().await;
    wait_served(namespace, &name, Some(&versions[0])).await;
    mlflow
        .transition_stage(&model, &versions[0], "Archived")
        .await;
    wait_served(namespace, &name, None).await;
    let history = deployment_when(&slipway, &model, |detail| {
        detail.history.len() == 2 && detail.history[0].outcome != "pending"
    })
    .await
    .history;
    assert_eq!(
        (
            history[0].version.as_deref(),
            history[0].previous_version.as_deref(),
            history[0].outcome.as_str()
        ),
        (None, Some(versions[0].as_str()), "removed")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_the_cluster_refuses_is_recorded_once_not_on_every_pass() {
    let (model, versions) = registered_model(1).await;
    MlflowRest::new(&mlflow_url())
        .transition_stage(&model, &versions[0], "Production")
        .await;
    // Slipway may read SeldonDeployments in this namespace but not write them.
    let readonly = unique("readonly");
    let setup = Setup::new("refused", |_| seldon_binding(&model, &readonly)).await;
    let admin = &setup.namespace.admin;
    support::cluster::create_namespace(admin, &readonly).await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-seldon"},
        "rules": [{"apiGroups": ["machinelearning.seldon.io"], "resources": ["seldondeployments"], "verbs": ["get"]}],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &readonly)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "read-seldon"},
        "subjects": [{"kind": "ServiceAccount", "name": "slipway", "namespace": setup.namespace.name}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-seldon"},
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &readonly)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let slipway = setup.slipway().await;
    let failed = deployment_when(&slipway, &model, |detail| {
        detail
            .view
            .message
            .contains("is not allowed to apply the SeldonDeployment")
            && !detail.history.is_empty()
    })
    .await;
    assert_eq!(failed.view.state, "Failed");
    assert!(
        failed.view.message.contains("forbidden"),
        "{}",
        failed.view.message
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let history = deployment(&slipway, &model).await.history;
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(history[0].outcome, "failed");
    assert!(
        slipway
            .log()
            .contains("is not allowed to apply the SeldonDeployment"),
        "the refusal is logged"
    );
}

/// The SeldonDeployment's `metadata.generation`: one more per change of its spec.
async fn generation(namespace: &TestNamespace, name: &str) -> i64 {
    let object = seldon_api(namespace).get(name).await.unwrap();
    object.metadata.generation.unwrap()
}

/// The Lease's holder, when there is one.
async fn lease_holder(namespace: &TestNamespace) -> Option<String> {
    let leases = namespace.api::<k8s_openapi::api::coordination::v1::Lease>();
    leases
        .get_opt("slipway-leader")
        .await
        .unwrap()?
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// What `/metrics` of `replica` says of its lead.
async fn promote_through(replica: &Slipway, model: &str, version: &str) {
    replica
        .post_form(
            &format!("/deployments/{model}/promote"),
            &[("version", version)],
        )
        .await;
}

async fn says_it_leads(replica: &Slipway, name: &str) -> Option<bool> {
    let metrics = replica.get("/metrics").await.text().await.unwrap();
    let line = |value: u8| format!("slipway_leader{{replica=\"{name}\"}} {value}");
    if metrics.contains(&line(1)) {
        Some(true)
    } else if metrics.contains(&line(0)) {
        Some(false)
    } else {
        None
    }
}

/// Three replicas on one PostgreSQL against the real API server, as the
/// `ha` install runs them. One leads: the Lease's holder, the only one
/// whose `/metrics` says so, and the one the others' deployments page
/// names. Killed (SIGKILL), another takes the Lease within its time.
/// Promotions made through any replica before, during and after the
/// failover are each applied once (one change of the object's spec, one
/// history row) and none is settled as interrupted.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_elect_one_leader_and_a_killed_leader_is_replaced_without_losing_a_promotion() {
    let (model, versions) = registered_model(4).await;
    let setup = Setup::new("ha", |namespace| seldon_binding(&model, namespace)).await;
    let namespace = &setup.namespace;
    let name = server::catalog::dns_name(&model);
    let database = support::fresh_postgres_database().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for dir in &dirs {
        replicas.push(
            Slipway::start(SlipwaySettings {
                data_dir: dir.path(),
                extra_env: vec![("SLIPWAY_DATABASE_URL", database.clone())],
                ..setup.settings()
            })
            .await,
        );
    }
    let mut names: Vec<String> = dirs
        .iter()
        .map(|dir| {
            format!(
                "replica-{}",
                dir.path().file_name().unwrap().to_string_lossy()
            )
        })
        .collect();

    // One leads, and every replica agrees which.
    let holder = eventually(A_WHILE, || lease_holder(namespace))
        .await
        .expect("a replica took the Lease");
    let leader = names
        .iter()
        .position(|name| *name == holder)
        .unwrap_or_else(|| panic!("{holder} is none of {names:?}"));
    for (index, replica) in replicas.iter().enumerate() {
        let wanted = index == leader;
        let agreed = eventually(Duration::from_secs(5), || async {
            (says_it_leads(replica, &names[index]).await == Some(wanted)).then_some(())
        })
        .await;
        assert!(
            agreed.is_some(),
            "{}: /metrics should say leading = {wanted}",
            names[index]
        );
    }
    let follower = (leader + 1) % 3;
    let listed = eventually(A_WHILE, || async {
        let page = replicas[follower]
            .get("/deployments")
            .await
            .text()
            .await
            .unwrap();
        let note = page.split("data-reconciler").nth(1)?;
        let note = &note[..note.find("</p>")?];
        (note.contains("Reconciled by replica") && note.contains(&holder)).then_some(())
    })
    .await;
    assert!(
        listed.is_some(),
        "a follower's deployments page names the leader"
    );

    // Through a replica that does not lead: the leader deploys it.
    promote_through(&replicas[follower], &model, &versions[0]).await;
    wait_served(namespace, &name, Some(&versions[0])).await;
    seldon_reports_ready(namespace, &name).await;
    deployment_when(&replicas[follower], &model, |detail| {
        detail.history.len() == 1 && detail.history[0].outcome == "serving"
    })
    .await;
    let generation_before = generation(namespace, &name).await;

    // The leader dies; promotions go on through the others meanwhile.
    let killed = replicas.remove(leader);
    let killed_name = names.remove(leader);
    let killed_at = Instant::now();
    killed.crash().await;
    for (index, version) in versions[1..].iter().enumerate() {
        promote_through(&replicas[index % 2], &model, version).await;
    }
    let new_holder = eventually(A_WHILE, || async {
        lease_holder(namespace)
            .await
            .filter(|holder| *holder != killed_name)
    })
    .await
    .expect("another replica took the Lease");
    let failover = killed_at.elapsed();
    eprintln!("leader killed → Lease taken by {new_holder}: {failover:?}");
    assert!(
        names.contains(&new_holder),
        "{new_holder} is none of {names:?}"
    );
    assert!(
        failover <= Duration::from_secs(15),
        "the Lease changed hands after {failover:?}"
    );
    for (index, replica) in replicas.iter().enumerate() {
        let wanted = names[index] == new_holder;
        let agreed = eventually(Duration::from_secs(5), || async {
            (says_it_leads(replica, &names[index]).await == Some(wanted)).then_some(())
        })
        .await;
        assert!(agreed.is_some(), "{}: leading = {wanted}", names[index]);
    }

    let last = versions.last().unwrap();
    wait_served(namespace, &name, Some(last)).await;
    seldon_reports_ready(namespace, &name).await;
    let history = deployment_when(&replicas[0], &model, |detail| {
        detail.history[0].version.as_deref() == Some(last.as_str())
            && detail.history[0].outcome == "serving"
    })
    .await
    .history;
    // Let passes run: nothing more is applied or recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = server::store::Store::connect(&database).await.unwrap();
    let history_now = store.deployment_history(&model, 100).await.unwrap();
    assert_eq!(history_now.len(), history.len(), "{history_now:#?}");
    let mut recorded: Vec<String> = history
        .iter()
        .filter_map(|event| event.version.clone())
        .collect();
    let rows = recorded.len();
    recorded.dedup();
    recorded.sort();
    recorded.dedup();
    assert_eq!(
        recorded.len(),
        rows,
        "a version recorded twice: {history:#?}"
    );
    assert!(
        history
            .iter()
            .all(|event| matches!(event.outcome.as_str(), "serving" | "superseded")),
        "{history:#?}"
    );
    let generation_after = generation(namespace, &name).await;
    assert_eq!(
        (generation_after - generation_before) as usize,
        rows - 1,
        "one change of the spec per recorded change after the first: {history:#?}"
    );
    // Every promotion's replica lived: none was settled as interrupted.
    let promotions = store.promotions(&model, 100).await.unwrap();
    assert_eq!(promotions.len(), versions.len());
    for promotion in &promotions {
        assert_eq!(
            promotion.state,
            server::store::promotions::PromotionState::Marked,
            "{promotion:?}"
        );
    }

    // Stopped as Kubernetes stops a pod (SIGTERM), the leader hands the
    // Lease back: the last replica takes it at once, not after 10 s.
    let leader = names.iter().position(|name| *name == new_holder).unwrap();
    let stopping = replicas.remove(leader);
    let remaining = names[1 - leader].clone();
    let stopped_at = Instant::now();
    let taken = async {
        let handed = eventually(A_WHILE, || async {
            lease_holder(namespace)
                .await
                .filter(|holder| *holder == remaining)
        })
        .await;
        (handed, stopped_at.elapsed())
    };
    let (exit, (handed, handover)) = tokio::join!(stopping.stop(), taken);
    assert!(exit.success(), "{exit}");
    eprintln!("leader stopped (SIGTERM) → Lease taken by {remaining}: {handover:?}");
    assert!(handed.is_some(), "{remaining} never took the Lease");
    assert!(
        handover < Duration::from_secs(5),
        "a Lease handed back is taken at once, not when it runs out: {handover:?}"
    );
}

/// With the poll an hour apart, what happens to Slipway's object in the
/// cluster is seen on its watch event: a deletion is put back, an edit is
/// undone, and the operator's ready signal ends the history row — each
/// within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_deleted_or_edited_in_the_cluster_is_put_back_on_its_event_not_the_poll() {
    let (model, versions) = registered_model(1).await;
    let setup = Setup::new("watch", |namespace| seldon_binding(&model, namespace)).await;
    let namespace = &setup.namespace;
    let name = server::catalog::dns_name(&model);
    let slipway = Slipway::start(SlipwaySettings {
        extra_env: vec![("SLIPWAY_RECONCILE_POLL_SECS", "3600".into())],
        ..setup.settings()
    })
    .await;
    promote_through(&slipway, &model, &versions[0]).await;
    wait_served(namespace, &name, Some(&versions[0])).await;
    seldon_reports_ready(namespace, &name).await;
    let within = Duration::from_secs(10);
    let ready = eventually(within, || async {
        let detail = deployment(&slipway, &model).await;
        (detail.history.first()?.outcome == "serving").then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "Seldon's ready signal was seen on its event"
    );

    let deleted_at = Instant::now();
    seldon_api(namespace)
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let recreated = eventually(within, || async {
        let object = seldon_api(namespace).get_opt(&name).await.ok()??;
        object.metadata.deletion_timestamp.is_none().then_some(())
    })
    .await;
    assert!(recreated.is_some(), "not put back within {within:?}");
    eprintln!(
        "deleted → re-created on the watch event: {:?}",
        deleted_at.elapsed()
    );

    assert!(
        edited_and_put_back(namespace, &name, within).await,
        "the edit was not undone within {within:?}"
    );
    let metrics = slipway.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("slipway_reconcile_queue_depth"),
        "{metrics}"
    );
}

fn kind_api(namespace: &TestNamespace, resource: ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(namespace.admin.clone(), &namespace.name, &resource)
}

/// The version Slipway's label on the object names, once it is `wanted`
/// (`None`: until the object is gone); panics with what it saw.
async fn object_serves(api: &Api<DynamicObject>, name: &str, wanted: Option<&str>) {
    let label = || async {
        let object = api.get_opt(name).await.unwrap()?;
        object
            .metadata
            .labels?
            .get("slipway.dev/model-version")
            .cloned()
    };
    let reached = eventually(A_WHILE, || async {
        (label().await.as_deref() == wanted).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "{name} should serve {wanted:?}, serves {:?}",
        label().await
    );
}

/// What the object's operator writes, about the spec it sees now.
async fn write_status(api: &Api<DynamicObject>, name: &str, mut status: Value) {
    let generation = api.get(name).await.unwrap().metadata.generation;
    status["observedGeneration"] = json!(generation);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// An address answering the open inference protocol's infer call as
/// MLServer does, keeping each request's path and body.
async fn v2_endpoint() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = received.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let kept = kept.clone();
        async move {
            let name = uri.path().split('/').nth(3).unwrap_or_default().to_string();
            kept.lock().unwrap().push((uri.path().to_string(), body));
            axum::Json(json!({"model_name": name, "outputs": [
                {"name": "predict", "shape": [1], "datatype": "FP64", "data": [3.0]}
            ]}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn ready_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A KServe InferenceService and a Seldon Core 2 Model on the real API
/// server, applied by Slipway as the shipped ServiceAccount: each follows
/// MLflow's Production version, waits for its operator's ready signal
/// (played here by the admin writing status), reads that status as
/// sentences with its v2 address, is put back when deleted, and goes when
/// its binding does.
#[tokio::test(flavor = "multi_thread")]
async fn inference_services_and_seldon_core_2_models_follow_production_as_the_shipped_service_account()
 {
    let mlflow = MlflowRest::new(&mlflow_url());
    let (kserved, kserve_versions) = registered_model(2).await;
    let (seldoned, seldon_versions) = registered_model(2).await;
    for (model, versions) in [(&kserved, &kserve_versions), (&seldoned, &seldon_versions)] {
        mlflow
            .transition_stage(model, &versions[0], "Production")
            .await;
    }
    let bindings = |namespace: &str| {
        format!(
            "[[deployment]]\nmodel = {kserved:?}\ntarget = \"kserve\"\nnamespace = {namespace:?}\n\
             replicas = 1\nmax_replicas = 3\nservice_account = \"mlflow-bucket\"\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n\
             [[deployment]]\nmodel = {seldoned:?}\ntarget = \"seldon-core-2\"\nnamespace = {namespace:?}\n\
             server = \"mlserver\"\nstorage_secret = \"rclone-s3\"\nmemory = {{ request = \"1Gi\" }}\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n"
        )
    };
    let setup = Setup::new("isvc", bindings).await;
    let namespace = &setup.namespace;
    let slipway = setup.slipway().await;
    let inference_services = kind_api(namespace, server::adapters::serving::kserve::api_resource());
    let models = kind_api(
        namespace,
        server::adapters::serving::seldon_core2::api_resource(),
    );
    let (kserve_name, seldon_name) = (
        server::catalog::dns_name(&kserved),
        server::catalog::dns_name(&seldoned),
    );
    object_serves(&inference_services, &kserve_name, Some(&kserve_versions[0])).await;
    object_serves(&models, &seldon_name, Some(&seldon_versions[0])).await;

    let service = inference_services.get(&kserve_name).await.unwrap();
    let model = &service.data["spec"]["predictor"]["model"];
    assert_eq!(model["modelFormat"]["name"], "mlflow");
    assert_eq!(model["protocolVersion"], "v2");
    assert!(
        model["storageUri"]
            .as_str()
            .unwrap()
            .starts_with("s3://mlflow-artifacts/"),
        "{model}"
    );
    assert_eq!(
        service.data["spec"]["predictor"]["serviceAccountName"],
        "mlflow-bucket"
    );
    let placed = models.get(&seldon_name).await.unwrap();
    assert_eq!(placed.data["spec"]["requirements"], json!(["mlflow"]));
    assert_eq!(placed.data["spec"]["server"], "mlserver");
    for object in [&service, &placed] {
        assert_eq!(field_managers(object), ["slipway"]);
    }

    // Applied is not ready: both wait for their operator.
    for model in [&kserved, &seldoned] {
        let waiting = deployment_when(&slipway, model, |detail| {
            detail.history.len() == 1 && detail.view.state == "Creating"
        })
        .await;
        assert_eq!(waiting.history[0].outcome, "pending");
        assert!(
            waiting.view.message.contains("to report it ready"),
            "{}",
            waiting.view.message
        );
    }
    // KServe's ingress, which this cluster lacks: it records what reaches it.
    let (url, received) = v2_endpoint().await;
    write_status(
        &inference_services,
        &kserve_name,
        json!({
            "url": url,
            "conditions": [
                {"type": "IngressReady", "status": "True", "lastTransitionTime": ready_now()},
                {"type": "PredictorReady", "status": "True", "lastTransitionTime": ready_now()},
                {"type": "Ready", "status": "True", "lastTransitionTime": ready_now()},
            ],
            "components": {"predictor": {
                "traffic": [{"revisionName": format!("{kserve_name}-predictor-00001"), "percent": 100, "latestRevision": true}],
                "latestRolledoutRevision": format!("{kserve_name}-predictor-00001"),
            }},
            "modelStatus": {"transitionStatus": "UpToDate"},
        }),
    )
    .await;
    write_status(
        &models,
        &seldon_name,
        json!({
            "replicas": 1, "availableReplicas": 1,
            "conditions": [
                {"type": "ModelReady", "status": "True", "reason": "ModelAvailable", "lastTransitionTime": ready_now()},
                {"type": "Ready", "status": "True", "lastTransitionTime": ready_now()},
            ],
        }),
    )
    .await;
    let ready = deployment_when(&slipway, &kserved, |detail| {
        detail.view.state == "Available" && detail.history[0].outcome == "serving"
    })
    .await;
    assert_eq!(
        ready.view.address.as_deref(),
        Some(format!("{url}/v2/models/{kserve_name}/infer").as_str())
    );
    assert_eq!(
        ready.view.message,
        format!(
            "traffic: 100 % to {kserve_name}-predictor-00001 (latest); rolled out {kserve_name}-predictor-00001"
        )
    );
    assert_eq!(ready.history[0].message, "applied; KServe reports it Ready");
    // Try it speaks the open inference protocol to KServe's address.
    let v2_body = r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.5]}]}"#;
    let tried = slipway
        .post_form(
            &format!("/deployments/{kserved}/try"),
            &[("input", v2_body)],
        )
        .await;
    let answer = slipway.get(&tried).await.text().await.unwrap();
    assert!(answer.contains("HTTP 200 in"), "{answer}");
    assert!(answer.contains("model_name"), "{answer}");
    let (path, body) = received.lock().unwrap().pop().expect("the request arrived");
    assert_eq!(path, format!("/v2/models/{kserve_name}/infer"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::from_str::<Value>(v2_body).unwrap()
    );
    let ready = deployment_when(&slipway, &seldoned, |detail| {
        detail.view.state == "Available" && detail.history[0].outcome == "serving"
    })
    .await;
    assert_eq!(
        ready.view.address,
        Some(format!(
            "http://seldon-mesh.{}/v2/models/{seldon_name}/infer",
            namespace.name
        ))
    );
    assert_eq!(ready.view.message, "1 of 1 replicas available");

    // The next version in Production: KServe cannot load it, and says why.
    mlflow
        .transition_stage(&kserved, &kserve_versions[1], "Production")
        .await;
    object_serves(&inference_services, &kserve_name, Some(&kserve_versions[1])).await;
    // A status still about the spec before (its observedGeneration) says
    // nothing about this change, however fresh and ready it looks.
    let generation = inference_services
        .get(&kserve_name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    inference_services
        .patch_status(
            &kserve_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": generation - 1,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_now()}],
            }})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stale = deployment(&slipway, &kserved).await;
    assert_eq!(
        (stale.history.len(), stale.history[0].outcome.as_str()),
        (2, "pending"),
        "{:#?}",
        stale.history
    );
    write_status(
        &inference_services,
        &kserve_name,
        json!({"modelStatus": {
            "transitionStatus": "BlockedByFailedLoad",
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "No module named 'sklearn'"},
        }}),
    )
    .await;
    let failed = deployment_when(&slipway, &kserved, |detail| {
        detail.history.len() == 2
            && detail.history[0].outcome == "failed"
            && detail.view.state == "Failed"
    })
    .await;
    assert_eq!(
        failed.history[0].message,
        "the model failed to load: No module named 'sklearn'"
    );
    assert_eq!(failed.view.state, "Failed");

    // Deleted outside Slipway: put back on the watch's event.
    models
        .delete(&seldon_name, &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    object_serves(&models, &seldon_name, Some(&seldon_versions[0])).await;
    drop(slipway);

    // The bindings go: so do their objects.
    assert_eq!(catalog(setup.data.path(), ""), setup.catalog);
    let _slipway = setup.slipway().await;
    object_serves(&inference_services, &kserve_name, None).await;
    object_serves(&models, &seldon_name, None).await;
}

/// Another team's SeldonDeployment and another install's InferenceService
/// carry the names two of this install's deployments would use: Slipway
/// never applies over them (the page says whose they are) and never deletes
/// them when its deployments go.
#[tokio::test(flavor = "multi_thread")]
async fn objects_of_another_team_or_install_are_never_taken_over_nor_deleted() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let (seldoned, seldon_versions) = registered_model(1).await;
    let (kserved, kserve_versions) = registered_model(1).await;
    mlflow
        .transition_stage(&seldoned, &seldon_versions[0], "Production")
        .await;
    mlflow
        .transition_stage(&kserved, &kserve_versions[0], "Production")
        .await;
    let setup = Setup::new("foreign", |namespace| {
        seldon_binding(&seldoned, namespace)
            + &format!(
                "[[deployment]]\nmodel = {kserved:?}\ntarget = \"kserve\"\nnamespace = {namespace:?}\n\
                 artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n"
            )
    })
    .await;
    let namespace = &setup.namespace;
    let (seldon_name, kserve_name) = (
        server::catalog::dns_name(&seldoned),
        server::catalog::dns_name(&kserved),
    );
    let inference_services = kind_api(namespace, server::adapters::serving::kserve::api_resource());
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": seldon_name},
        "spec": {"predictors": [{"name": "default", "replicas": 1, "graph": {
            "name": "model", "implementation": "SKLEARN_SERVER", "modelUri": "gs://other-team/model",
        }}]},
    }))
    .unwrap();
    let theirs = seldon_api(namespace)
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let staging: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": kserve_name, "labels": {
            "app.kubernetes.io/managed-by": "slipway",
            "slipway.dev/install": "staging",
            "slipway.dev/model-version": "9",
        }},
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "mlflow"}, "protocolVersion": "v2", "storageUri": "gs://staging/model",
        }}},
    }))
    .unwrap();
    let staging = inference_services
        .create(&PostParams::default(), &staging)
        .await
        .unwrap();

    let slipway = setup.slipway().await;
    // Until its first pass a deployment reads "not reconciled yet".
    let refused = deployment_when(&slipway, &seldoned, |detail| {
        detail.view.message.contains("not by this Slipway") && !detail.history.is_empty()
    })
    .await;
    assert_eq!(
        refused.view.message,
        format!(
            "the SeldonDeployment {seldon_name} in namespace {} was made by someone else (it has no \
             app.kubernetes.io/managed-by label), not by this Slipway, which leaves it alone: give \
             this deployment another object name",
            namespace.name
        )
    );
    assert_eq!(refused.history[0].outcome, "failed");
    assert_eq!(refused.history[0].message, refused.view.message);
    let refused = deployment_when(&slipway, &kserved, |detail| {
        detail.view.message.contains("not by this Slipway")
    })
    .await;
    assert_eq!(refused.view.state, "Failed");
    assert!(
        refused
            .view
            .message
            .contains("was made by another Slipway install (\"staging\")"),
        "{}",
        refused.view.message
    );
    // Passes go on every second: still nobody touches them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let untouched = |before: &DynamicObject, now: &DynamicObject| {
        assert_eq!(
            before.metadata.resource_version, now.metadata.resource_version,
            "{now:?}"
        );
        assert!(
            now.metadata
                .managed_fields
                .iter()
                .flatten()
                .all(|fields| fields.manager.as_deref() != Some("slipway")),
            "{now:?}"
        );
    };
    untouched(
        &theirs,
        &seldon_api(namespace).get(&seldon_name).await.unwrap(),
    );
    untouched(
        &staging,
        &inference_services.get(&kserve_name).await.unwrap(),
    );
    drop(slipway);

    // The deployments go: the objects they never owned stay.
    assert_eq!(catalog(setup.data.path(), ""), setup.catalog);
    let slipway = setup.slipway().await;
    let listed = eventually(A_WHILE, || async {
        let list: Vec<app::model::DeploymentView> = slipway
            .server_fn(app::server_fns::ListDeployments::PATH, &[])
            .await;
        list.is_empty().then_some(())
    })
    .await;
    assert!(listed.is_some());
    tokio::time::sleep(Duration::from_secs(3)).await;
    untouched(
        &theirs,
        &seldon_api(namespace).get(&seldon_name).await.unwrap(),
    );
    untouched(
        &staging,
        &inference_services.get(&kserve_name).await.unwrap(),
    );
}

/// Canaries where the operator splits traffic itself, applied as the
/// shipped ServiceAccount with strict validation against the CRDs: KServe's
/// `canaryTrafficPercent` with the canary's `storageUri` (re-weighted, then
/// aborted: the stable object back), and a SeldonDeployment's second
/// predictor with traffic weights (promoted: the canary's version alone).
#[tokio::test(flavor = "multi_thread")]
async fn canaries_on_kserve_and_seldon_split_in_the_objects_and_end_promoted_or_aborted() {
    let mlflow = MlflowRest::new(&mlflow_url());
    let (kserved, kserve_versions) = registered_model(2).await;
    let (seldoned, seldon_versions) = registered_model(2).await;
    let (core2, core2_versions) = registered_model(2).await;
    for (model, versions) in [
        (&kserved, &kserve_versions),
        (&seldoned, &seldon_versions),
        (&core2, &core2_versions),
    ] {
        mlflow
            .transition_stage(model, &versions[0], "Production")
            .await;
    }
    let bindings = |namespace: &str| {
        format!(
            "[[deployment]]\nmodel = {kserved:?}\ntarget = \"kserve\"\nnamespace = {namespace:?}\n\
             replicas = 1\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n\
             [[deployment]]\nmodel = {core2:?}\ntarget = \"seldon-core-2\"\nnamespace = {namespace:?}\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n{}",
            seldon_binding(&seldoned, namespace)
        )
    };
    let setup = Setup::new("canary", bindings).await;
    let namespace = &setup.namespace;
    let slipway = setup.slipway().await;
    let services = kind_api(namespace, server::adapters::serving::kserve::api_resource());
    let seldons = seldon_api(namespace);
    let (kserve_name, seldon_name) = (
        server::catalog::dns_name(&kserved),
        server::catalog::dns_name(&seldoned),
    );
    object_serves(&services, &kserve_name, Some(&kserve_versions[0])).await;
    object_serves(&seldons, &seldon_name, Some(&seldon_versions[0])).await;
    let core2_models = kind_api(
        namespace,
        server::adapters::serving::seldon_core2::api_resource(),
    );
    let experiments = kind_api(
        namespace,
        server::adapters::serving::seldon_core2::experiment_resource(),
    );
    let core2_name = server::catalog::dns_name(&core2);
    let core2_canary = format!("{core2_name}-canary");
    object_serves(&core2_models, &core2_name, Some(&core2_versions[0])).await;
    let stable_uri =
        services.get(&kserve_name).await.unwrap().data["spec"]["predictor"]["model"]["storageUri"]
            .clone();
    // Slipway reads no numbers of KServe's own: an analysis without a query
    // gate is refused, nothing started.
    let refused = slipway
        .post_form(
            &format!("/deployments/{kserved}/canary"),
            &[("version", "2"), ("weight", "20"), ("interval_secs", "10")],
        )
        .await;
    assert!(refused.contains("notice="), "{refused}");
    assert!(deployment(&slipway, &kserved).await.rollout.is_none());
    for model in [&kserved, &seldoned, &core2] {
        let back = slipway
            .post_form(
                &format!("/deployments/{model}/canary"),
                &[("version", "2"), ("weight", "20")],
            )
            .await;
        assert!(back.ends_with("#canary"), "{back}");
    }
    let service = object_when(&services, &kserve_name, |service| {
        service["spec"]["predictor"]["canaryTrafficPercent"] == 20
    })
    .await;
    let canary_uri = &service["spec"]["predictor"]["model"]["storageUri"];
    assert_ne!(canary_uri, &stable_uri, "the canary's model");
    assert!(
        canary_uri
            .as_str()
            .unwrap()
            .starts_with("s3://mlflow-artifacts/")
    );
    assert_eq!(
        service["metadata"]["annotations"]["slipway.dev/canary"],
        "2:20"
    );
    assert_eq!(
        service["metadata"]["labels"]["slipway.dev/model-version"],
        "1"
    );
    let split = object_when(&seldons, &seldon_name, |deployment| {
        deployment["spec"]["predictors"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let predictors = &split["spec"]["predictors"];
    assert_eq!(
        (&predictors[0]["name"], &predictors[0]["traffic"]),
        (&json!("default"), &json!(80))
    );
    assert_eq!(
        (&predictors[1]["name"], &predictors[1]["traffic"]),
        (&json!("canary"), &json!(20))
    );
    assert_ne!(
        predictors[0]["graph"]["modelUri"],
        predictors[1]["graph"]["modelUri"]
    );
    assert_eq!(predictors[1]["labels"]["slipway.dev/model-version"], "2");
    // Seldon Core 2: the canary's own Model and an Experiment splitting the
    // stable Model's requests.
    let experiment = object_when(&experiments, &core2_canary, |_| true).await;
    assert_eq!(
        experiment["spec"],
        json!({"default": core2_name, "candidates": [
            {"name": core2_name, "weight": 80},
            {"name": core2_canary, "weight": 20},
        ]})
    );
    let canary_model = object_when(&core2_models, &core2_canary, |_| true).await;
    assert_eq!(
        canary_model["metadata"]["labels"]["slipway.dev/model-version"],
        "2"
    );
    assert_ne!(
        canary_model["spec"]["storageUri"],
        core2_models.get(&core2_name).await.unwrap().data["spec"]["storageUri"]
    );
    // Seldon Core 2's words on the two, as its page shows them.
    write_status(
        &core2_models,
        &core2_canary,
        json!({"conditions": [
            {"type": "ModelReady", "status": "True", "reason": "ModelAvailable", "lastTransitionTime": ready_now()},
            {"type": "Ready", "status": "True", "lastTransitionTime": ready_now()},
        ], "availableReplicas": 1, "replicas": 1}),
    )
    .await;
    write_status(
        &experiments,
        &core2_canary,
        json!({"conditions": [
            {"type": "CandidatesReady", "status": "False", "reason": "CandidatesNotReady",
             "message": "candidate models not ready", "lastTransitionTime": ready_now()},
            {"type": "Ready", "status": "False", "lastTransitionTime": ready_now()},
        ]}),
    )
    .await;
    let said = deployment_when(&slipway, &core2, |detail| {
        detail
            .rollout
            .as_ref()
            .and_then(|panel| panel.canary_objects.as_deref())
            .is_some_and(|said| said.contains("not ready: candidate models not ready"))
    })
    .await;
    assert_eq!(
        said.rollout.unwrap().canary_objects.unwrap(),
        format!(
            "its Model {core2_canary} is available: 1 of 1 replicas available; \
             its Experiment {core2_canary} is not ready: candidate models not ready"
        )
    );
    slipway
        .post_form(
            &format!("/deployments/{core2}/canary/weight"),
            &[("weight", "60")],
        )
        .await;
    object_when(&experiments, &core2_canary, |experiment| {
        experiment["spec"]["candidates"][1]["weight"] == 60
            && experiment["spec"]["candidates"][0]["weight"] == 40
    })
    .await;
    slipway
        .post_form(
            &format!("/deployments/{core2}/canary/abort"),
            &[("reason", "enough")],
        )
        .await;
    let removed = eventually(A_WHILE, || async {
        (experiments.get_opt(&core2_canary).await.unwrap().is_none()
            && core2_models.get_opt(&core2_canary).await.unwrap().is_none())
        .then_some(())
    })
    .await;
    assert!(
        removed.is_some(),
        "the canary's Experiment and Model outlived it"
    );
    assert_eq!(
        core2_models
            .get(&core2_name)
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap()["slipway.dev/model-version"],
        "1"
    );
    // A shadow: the stable Model answers all, a copy of 30 % is mirrored.
    slipway
        .post_form(
            &format!("/deployments/{core2}/canary"),
            &[("version", "2"), ("weight", "30"), ("mode", "shadow")],
        )
        .await;
    let mirrored = object_when(&experiments, &core2_canary, |_| true).await;
    assert_eq!(
        mirrored["spec"],
        json!({"default": core2_name, "candidates": [{"name": core2_name, "weight": 100}],
            "mirror": {"name": core2_canary, "percent": 30}})
    );
    slipway
        .post_form(
            &format!("/deployments/{core2}/canary/abort"),
            &[("reason", "seen enough")],
        )
        .await;
    let removed = eventually(A_WHILE, || async {
        experiments
            .get_opt(&core2_canary)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(removed.is_some(), "the shadow's Experiment outlived it");

    // A canary is Slipway's change, not an edit outside it to put back.
    let detail = deployment(&slipway, &kserved).await;
    assert!(
        detail.history.iter().all(|event| event.cause != "drift"),
        "{:#?}",
        detail.history
    );

    // Re-weighted.
    slipway
        .post_form(
            &format!("/deployments/{kserved}/canary/weight"),
            &[("weight", "50")],
        )
        .await;
    object_when(&services, &kserve_name, |service| {
        service["spec"]["predictor"]["canaryTrafficPercent"] == 50
            && service["metadata"]["annotations"]["slipway.dev/canary"] == "2:50"
    })
    .await;

    // KServe's aborted by its rollback: the canary at 0 %, so every request
    // goes to the revision rolled out before at once; the object still says
    // v1 serves, and a later pass leaves it so.
    slipway
        .post_form(
            &format!("/deployments/{kserved}/canary/abort"),
            &[("reason", "p99 too high")],
        )
        .await;
    let aborted = object_when(&services, &kserve_name, |service| {
        service["spec"]["predictor"]["canaryTrafficPercent"] == 0
    })
    .await;
    assert_eq!(
        aborted["spec"]["predictor"]["model"]["storageUri"],
        *canary_uri
    );
    assert_eq!(
        aborted["metadata"]["annotations"]["slipway.dev/canary"],
        "2:0"
    );
    assert_eq!(
        aborted["metadata"]["labels"]["slipway.dev/model-version"],
        "1"
    );
    let generation = aborted["metadata"]["generation"].clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = services.get(&kserve_name).await.unwrap();
    assert_eq!(
        serde_json::to_value(&later).unwrap()["metadata"]["generation"],
        generation,
        "a pass after the abort changed the object"
    );
    // Again, and promoted: the canary's version without the field (100 %
    // to its revision).
    slipway
        .post_form(
            &format!("/deployments/{kserved}/canary"),
            &[("version", "2"), ("weight", "20")],
        )
        .await;
    object_when(&services, &kserve_name, |service| {
        service["spec"]["predictor"]["canaryTrafficPercent"] == 20
    })
    .await;
    slipway
        .post_form(
            &format!("/deployments/{kserved}/canary/promote"),
            &[("reason", "good numbers")],
        )
        .await;
    let promoted = object_when(&services, &kserve_name, |service| {
        service["spec"]["predictor"]
            .get("canaryTrafficPercent")
            .is_none()
            && service["metadata"]["labels"]["slipway.dev/model-version"] == "2"
    })
    .await;
    assert_eq!(
        promoted["spec"]["predictor"]["model"]["storageUri"],
        *canary_uri
    );

    // Seldon's promoted: one predictor serving v2.
    slipway
        .post_form(
            &format!("/deployments/{seldoned}/canary/promote"),
            &[("reason", "good numbers")],
        )
        .await;
    let promoted = object_when(&seldons, &seldon_name, |deployment| {
        deployment["spec"]["predictors"].as_array().map(Vec::len) == Some(1)
            && deployment["metadata"]["labels"]["slipway.dev/model-version"] == "2"
    })
    .await;
    assert_eq!(promoted["spec"]["predictors"][0]["traffic"], 100);
    assert_eq!(
        promoted["spec"]["predictors"][0]["graph"]["modelUri"],
        predictors[1]["graph"]["modelUri"]
    );
    let ended = deployment_when(&slipway, &seldoned, |detail| {
        detail
            .rollout
            .as_ref()
            .is_some_and(|panel| panel.rollout.state == app::model::RolloutState::Succeeded)
    })
    .await;
    assert_eq!(
        ended.rollout.unwrap().rollout.outcome,
        "v2 serves all requests"
    );
    // v1 as Seldon's shadow: only at 100 % (it mirrors every request).
    let refused = slipway
        .post_form(
            &format!("/deployments/{seldoned}/canary"),
            &[("version", "1"), ("weight", "50"), ("mode", "shadow")],
        )
        .await;
    assert!(refused.contains("notice="), "{refused}");
    slipway
        .post_form(
            &format!("/deployments/{seldoned}/canary"),
            &[("version", "1"), ("weight", "100"), ("mode", "shadow")],
        )
        .await;
    let shadowed = object_when(&seldons, &seldon_name, |deployment| {
        deployment["spec"]["predictors"][1]["shadow"] == true
    })
    .await;
    assert_eq!(shadowed["spec"]["predictors"][0]["traffic"], 100);
    assert_eq!(
        shadowed["metadata"]["annotations"]["slipway.dev/canary"],
        "1:100:shadow"
    );
    slipway
        .post_form(
            &format!("/deployments/{seldoned}/canary/abort"),
            &[("reason", "seen enough")],
        )
        .await;
    object_when(&seldons, &seldon_name, |deployment| {
        deployment["spec"]["predictors"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    for object in [
        services.get(&kserve_name).await.unwrap(),
        seldons.get(&seldon_name).await.unwrap(),
    ] {
        assert_eq!(field_managers(&object), ["slipway"]);
    }
}

/// Canary analyses on cluster targets read Prometheus: a SeldonDeployment's
/// canary by its own predictor's executor metrics (here from an exporter
/// playing the executor: the stable predictor answers, the canary fails
/// every request), whose two sides the page shows, and which is aborted by
/// its failed checks; an InferenceService's by a query gate of the team's
/// own, stepped and promoted by its passed checks. An analysis nothing
/// could read, or a query Prometheus refuses, is refused at the start.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_canaries_are_judged_by_their_numbers_in_prometheus() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let mlflow = MlflowRest::new(&mlflow_url());
    let (kserved, kserve_versions) = registered_model(2).await;
    let (seldoned, seldon_versions) = registered_model(2).await;
    for (model, versions) in [(&kserved, &kserve_versions), (&seldoned, &seldon_versions)] {
        mlflow
            .transition_stage(model, &versions[0], "Production")
            .await;
    }
    let setup = Setup::new("gates", |namespace| {
        format!(
            "[[deployment]]\nmodel = {kserved:?}\ntarget = \"kserve\"\nnamespace = {namespace:?}\n\
             replicas = 1\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://mlflow-artifacts/\" }}]\n{}",
            seldon_binding(&seldoned, namespace)
        )
    })
    .await;
    let namespace = setup.namespace.name.clone();
    let (kserve_name, seldon_name) = (
        server::catalog::dns_name(&kserved),
        server::catalog::dns_name(&seldoned),
    );

    // The executor's histogram per predictor: ten requests a second each,
    // 20 ms apiece; the stable predictor's succeed, the canary's fail.
    let served = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let counting = served.clone();
    let ticking = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            counting.0.fetch_add(1, Ordering::SeqCst);
            counting.1.fetch_add(1, Ordering::SeqCst);
        }
    });
    let exposed = served.clone();
    let (exported_name, exported_namespace) = (seldon_name.clone(), namespace.clone());
    let exporter = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let served = exposed.clone();
            let (name, namespace) = (exported_name.clone(), exported_namespace.clone());
            async move {
                let mut text = String::new();
                for (predictor, code, count) in [
                    ("default", "200", served.0.load(Ordering::SeqCst)),
                    ("canary", "500", served.1.load(Ordering::SeqCst)),
                ] {
                    let labels = format!(
                        "deployment_name=\"{name}\",namespace=\"{namespace}\",predictor_name=\"{predictor}\",model_name=\"model\",method=\"post\",code=\"{code}\""
                    );
                    for le in ["0.01", "0.025", "+Inf"] {
                        let within = if le == "0.01" { 0 } else { count };
                        text.push_str(&format!(
                            "seldon_api_executor_server_requests_seconds_bucket{{{labels},le=\"{le}\"}} {within}\n"
                        ));
                    }
                    text.push_str(&format!(
                        "seldon_api_executor_server_requests_seconds_count{{{labels}}} {count}\n"
                    ));
                }
                text
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exporter_address = listener.local_addr().unwrap().to_string();
    let exporting = tokio::spawn(async move { axum::serve(listener, exporter).await.unwrap() });
    let prometheus_port = support::free_port();
    let prometheus =
        support::prometheus::Prometheus::start(&exporter_address, prometheus_port).await;
    // `up` has a sample for the queries below.
    prometheus.scraped_again().await;
    let mut settings = setup.settings();
    settings.extra_env = vec![("SLIPWAY_PROMETHEUS_URL", prometheus.url.clone())];
    let slipway = Slipway::start(settings).await;
    let services = kind_api(
        &setup.namespace,
        server::adapters::serving::kserve::api_resource(),
    );
    let seldons = seldon_api(&setup.namespace);
    object_serves(&services, &kserve_name, Some(&kserve_versions[0])).await;
    object_serves(&seldons, &seldon_name, Some(&seldon_versions[0])).await;

    // Refused, nothing started: no numbers of KServe's own, and a query
    // that does not parse.
    let gates = |query: &'static str| {
        [
            ("version", "2"),
            ("weight", "20"),
            ("interval_secs", "2"),
            ("step_weight", "20"),
            ("max_weight", "40"),
            ("failed_checks_limit", "2"),
            ("query", query),
            ("query_min", "2"),
            ("query_max", "2"),
        ]
    };
    for (query, said) in [
        ("", "give the analysis a query gate"),
        ("max(up", "does not run"),
        (
            r#"label_replace(up, "copy", "a", "", "") or label_replace(up, "copy", "b", "", "")"#,
            "numbers (one per series), not one",
        ),
    ] {
        let refused = refusal(
            &slipway,
            &format!("/deployments/{kserved}/canary"),
            &gates(query),
        )
        .await;
        assert!(refused.contains(said), "{said:?} not on the page");
        assert!(deployment(&slipway, &kserved).await.rollout.is_none());
    }

    // KServe by a query gate: its number is the canary's version only if
    // the query was given it, so each check passes, steps 20 → 40 %, and
    // the one at 40 % promotes v2.
    let back = slipway
        .post_form(
            &format!("/deployments/{kserved}/canary"),
            &gates("max(max_over_time(up[{{interval}}])) * {{version}}"),
        )
        .await;
    assert!(back.ends_with("#canary"), "{back}");
    let promoted = eventually(Duration::from_secs(120), || async {
        let panel = deployment(&slipway, &kserved).await.rollout?;
        (panel.rollout.state == app::model::RolloutState::Succeeded).then_some(panel)
    })
    .await
    .expect("the KServe canary promoted by its checks");
    let passed: Vec<(u8, Option<f64>)> = promoted
        .checks
        .iter()
        .rev()
        .filter(|check| check.verdict == app::model::CheckVerdict::Passed)
        .map(|check| (check.weight, check.query_value))
        .collect();
    assert_eq!(passed, [(20, Some(2.0)), (40, Some(2.0))]);
    let service = object_when(&services, &kserve_name, |service| {
        service["metadata"]["labels"]["slipway.dev/model-version"] == "2"
            && service["spec"]["predictor"]
                .get("canaryTrafficPercent")
                .is_none()
    })
    .await;
    assert!(
        service["metadata"]["annotations"]
            .get("slipway.dev/canary")
            .is_none()
    );

    // Seldon Core v1 by its canary predictor's own answers.
    let back = slipway
        .post_form(
            &format!("/deployments/{seldoned}/canary"),
            &[
                ("version", "2"),
                ("weight", "20"),
                ("interval_secs", "3"),
                ("min_success_percent", "95"),
                ("failed_checks_limit", "2"),
            ],
        )
        .await;
    assert!(back.ends_with("#canary"), "{back}");
    let sides = eventually(A_WHILE, || async {
        let panel = deployment(&slipway, &seldoned).await.rollout?;
        let (stable, canary) = (panel.stable?, panel.canary?);
        (stable.requests > 0 && canary.requests > 0).then_some((stable, canary, panel.sides_note))
    })
    .await
    .expect("both sides' numbers on the page");
    let (stable, canary, note) = sides;
    assert_eq!(
        (stable.version.as_str(), canary.version.as_str()),
        ("1", "2")
    );
    assert_eq!(stable.over_window.error_percent, Some(0.0));
    assert_eq!(canary.over_window.error_percent, Some(100.0));
    assert!(
        canary
            .over_window
            .p99_ms
            .is_some_and(|ms| (10.0..=25.0).contains(&ms)),
        "{canary:?}"
    );
    assert!(note.contains("Prometheus at http://127.0.0.1:"), "{note}");
    let aborted = eventually(Duration::from_secs(120), || async {
        let panel = deployment(&slipway, &seldoned).await.rollout?;
        (panel.rollout.state == app::model::RolloutState::Aborted).then_some(panel)
    })
    .await
    .expect("the Seldon canary aborted by its checks");
    assert!(
        aborted.rollout.outcome.starts_with(
            "aborted by its analysis after 2 failed checks; the last: success 0.0 % below 95 %"
        ),
        "{}",
        aborted.rollout.outcome
    );
    object_when(&seldons, &seldon_name, |deployment| {
        deployment["spec"]["predictors"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    ticking.abort();
    exporting.abort();
}

/// Posts a form Slipway refuses; returns the page it sent back to, with its
/// notice.
async fn refusal(slipway: &Slipway, path: &str, fields: &[(&str, &str)]) -> String {
    let back = slipway.post_form(path, fields).await;
    assert!(back.contains("notice="), "{path} was not refused: {back}");
    slipway.get(&back).await.text().await.unwrap()
}

/// `api`'s object `name` (as JSON) once `wanted` holds; panics with how it
/// last looked.
async fn object_when(api: &Api<DynamicObject>, name: &str, wanted: fn(&Value) -> bool) -> Value {
    let read = || async {
        let found = api.get_opt(name).await.unwrap();
        serde_json::to_value(found).unwrap()
    };
    let found = eventually(A_WHILE, || async {
        let data = read().await;
        (!data.is_null() && wanted(&data)).then_some(data)
    })
    .await;
    match found {
        Some(data) => data,
        None => panic!("{name} never as wanted: {:#}", read().await),
    }
}

/// Who manages the fields of `object` (server-side apply's managers).
fn field_managers(object: &DynamicObject) -> Vec<String> {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|fields| fields.manager.clone())
        .collect()
}
