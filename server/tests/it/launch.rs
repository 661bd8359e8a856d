//! Launching training on the local executor against a real MLflow: the order
//! of steps, what lands in MLflow, and every way it can go wrong.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{MlflowRest, eventually, free_port, mlflow_url, run_pairs, unique, user};
use app::access::Role;
use app::model::{Launch, LaunchRequest, LaunchStatus};
use server::adapters::executor::local::LocalExecutor;
use server::adapters::mlflow::MlflowClient;
use server::catalog::Catalog;
use server::error::{Error, Invalid};
use server::services::launches::Launches;
use server::store::Store;

const CATALOG: &str = r#"
[[profile]]
name = "cpu"
cpu = { request = "100m", limit = "1" }

[[profile]]
name = "gpu-2"
gpu = { request = 2 }

[[profile]]
name = "brief"
max_runtime_secs = 1

[[project]]
name = "trainer"
directory = "trainer"

[[project]]
name = "boxed"
directory = "boxed"

[[project]]
name = "pinned"
directory = "pinned"

[[project]]
name = "condaonly"
directory = "condaonly"
"#;

struct Harness {
    launcher: Arc<Launches>,
    executor: Arc<LocalExecutor>,
    store: Store,
    _data: tempfile::TempDir,
}

async fn harness(mlflow: &str) -> Harness {
    let data = tempfile::tempdir().unwrap();
    let (launcher, executor, store) = start_launcher(mlflow, data.path()).await;
    Harness {
        launcher,
        executor,
        store,
        _data: data,
    }
}

/// A launcher on `data`'s database and log directory, as a Slipway that
/// starts there would build it.
async fn start_launcher(mlflow: &str, data: &Path) -> (Arc<Launches>, Arc<LocalExecutor>, Store) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let catalog = Catalog::parse(CATALOG, &fixtures).unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.display()))
        .await
        .unwrap();
    let client = MlflowClient::new(
        &mlflow.parse().unwrap(),
        server::adapters::mlflow::MlflowAuth::None,
        Duration::from_secs(20),
    )
    .unwrap();
    let (sink, reports) = tokio::sync::mpsc::unbounded_channel();
    let executor = Arc::new(
        LocalExecutor::new(
            data.join("launches"),
            server::adapters::process::ChildEnv::new(
                mlflow,
                &server::adapters::mlflow::MlflowAuth::None,
                &[],
            ),
            sink,
            server::adapters::process::Children::open(data.join("children")).unwrap(),
        )
        .unwrap(),
    );
    let launcher = Arc::new(Launches::new(
        store.clone(),
        client,
        Arc::new(catalog),
        executor.clone(),
    ));
    launcher.follow(reports);
    launcher.settle_interrupted(i64::MAX).await.unwrap();
    (launcher, executor, store)
}

fn request(params: &[(&str, &str)], profile: &str, new_experiment: &str) -> LaunchRequest {
    LaunchRequest {
        submission: uuid::Uuid::new_v4().to_string(),
        project: "trainer".into(),
        entry_point: "main".into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        experiment_id: String::new(),
        new_experiment: new_experiment.into(),
        profile: profile.into(),
        run_name: String::new(),
        env_manager: String::new(),
        commit: String::new(),
    }
}

async fn launched(harness: &Harness, request: &LaunchRequest) -> Launch {
    match harness
        .launcher
        .submit(&user("tester", Role::Admin), request)
        .await
    {
        Ok(launch) => launch,
        Err(err) => panic!("refused: {err:?}"),
    }
}

/// Waits for the launch to reach `status` (the training's own pace, not a timing assertion).
async fn wait_for(harness: &Harness, id: &str, status: LaunchStatus) -> Launch {
    wait_for_within(harness, id, status, Duration::from_secs(60)).await
}

async fn wait_for_within(
    harness: &Harness,
    id: &str,
    status: LaunchStatus,
    within: Duration,
) -> Launch {
    for _ in 0..within.as_millis() / 100 {
        let launch = harness.store.launch(id).await.unwrap().unwrap();
        if launch.status == status {
            return launch;
        }
        assert!(
            !launch.status.is_terminal(),
            "ended {:?} ({}) while waiting for {status:?}",
            launch.status,
            launch.reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("launch {id} never reached {status:?}");
}

async fn log_text(harness: &Harness, launch: &Launch) -> String {
    use futures::StreamExt;
    let stream = harness.launcher.logs(launch).await.unwrap();
    stream
        .map(|chunk| chunk.unwrap())
        .collect::<Vec<_>>()
        .await
        .concat()
}

#[tokio::test]
async fn a_launch_runs_to_the_end_and_its_mlflow_run_holds_params_tags_and_metrics() {
    let harness = harness(&mlflow_url()).await;
    let experiment = unique("launch");
    let mut form = request(
        &[
            ("alpha", "0.5"),
            ("note", "it's \"quoted\"; echo $HOME"),
            ("max_iter", "200"),
        ],
        "cpu",
        &experiment,
    );
    form.run_name = "first try".into();
    let launch = launched(&harness, &form).await;
    assert!(
        matches!(launch.status, LaunchStatus::Pending | LaunchStatus::Running),
        "{launch:?}"
    );
    let run_id = launch
        .run_id
        .clone()
        .expect("the run is created before the start");
    let launch = wait_for(&harness, &launch.id, LaunchStatus::Succeeded).await;
    assert_eq!(launch.reason, "exited with code 0");
    assert!(launch.finished_ms.is_some());

    let rest = MlflowRest::new(&mlflow_url());
    let run = rest.get_run(&run_id).await;
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "first try");
    let params = run_pairs(&run, "params");
    assert_eq!(
        params,
        BTreeMap::from([
            ("alpha".into(), "0.5".into()),
            ("exit_code".into(), "0".into()),
            ("max_iter".into(), "200".into()),
            ("note".into(), "it's \"quoted\"; echo $HOME".into()),
            ("sleep".into(), "0".into()),
        ])
    );
    let tags = run_pairs(&run, "tags");
    assert_eq!(tags["mlflow.source.type"], "PROJECT");
    assert_eq!(tags["mlflow.source.name"], "trainer");
    assert_eq!(tags["mlflow.project.entryPoint"], "main");
    assert_eq!(tags["mlflow.project.backend"], "local");
    assert_eq!(tags["mlflow.user"], "tester");
    assert_eq!(tags["slipway.launch_id"], launch.id);
    assert_eq!(tags["slipway.profile"], "cpu");
    // The code it ran, as `mlflow run` records it: the fixture is in this
    // repository's checkout.
    let head = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .unwrap();
    assert_eq!(
        tags["mlflow.source.git.commit"],
        String::from_utf8(head.stdout).unwrap().trim()
    );
    let metrics = run["data"]["metrics"].as_array().unwrap();
    assert_eq!(metrics[0]["key"], "alpha_squared");
    assert_eq!(metrics[0]["value"], 0.25);

    let logs = log_text(&harness, &launch).await;
    // The value reached the program as one argument, untouched by any shell.
    assert!(
        logs.contains("note=it's \"quoted\"; echo $HOME\n"),
        "{logs}"
    );
    assert!(
        logs.contains("extra=['--max_iter', '200']\n"),
        "an undeclared parameter is passed on as mlflow run -P does: {logs}"
    );
    assert!(
        logs.contains(&format!("MLFLOW_RUN_ID={run_id}\n")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "MLFLOW_EXPERIMENT_ID={}\n",
            run["info"]["experiment_id"].as_str().unwrap()
        )),
        "{logs}"
    );
    assert!(
        logs.contains("CUDA_VISIBLE_DEVICES=\n"),
        "a CPU profile hides GPUs: {logs}"
    );
    assert!(logs.contains("logged\n"), "{logs}");
}

#[tokio::test]
async fn a_gpu_profile_exposes_as_many_gpus_as_it_asks_for() {
    let harness = harness(&mlflow_url()).await;
    let launch = launched(
        &harness,
        &request(&[("alpha", "1")], "gpu-2", &unique("gpu")),
    )
    .await;
    let launch = wait_for(&harness, &launch.id, LaunchStatus::Succeeded).await;
    let logs = log_text(&harness, &launch).await;
    assert!(logs.contains("CUDA_VISIBLE_DEVICES=0,1\n"), "{logs}");
    // The form said beforehand what this machine lacks.
    let present = server::adapters::executor::local::gpus_present();
    let profiles = harness.launcher.catalog().profiles;
    let warning = |name: &str| {
        profiles
            .iter()
            .find(|profile| profile.name == name)
            .unwrap()
            .warning
            .clone()
    };
    assert_eq!(warning("cpu"), None);
    if present < 2 {
        assert_eq!(
            warning("gpu-2").as_deref(),
            Some(
                format!(
                    "This machine has {present} GPU{}: a launch on gpu-2 runs without the 2 GPUs it asks for.",
                    if present == 1 { "" } else { "s" }
                )
                .as_str()
            )
        );
    }
}

#[tokio::test]
async fn a_docker_env_project_is_refused_here_and_no_experiment_means_default() {
    let harness = harness(&mlflow_url()).await;
    let mut boxed = request(&[], "cpu", &unique("boxed"));
    boxed.project = "boxed".into();
    let Err(Error::Invalid(Invalid { fields: errors, .. })) = harness
        .launcher
        .submit(&user("tester", Role::Admin), &boxed)
        .await
    else {
        panic!("ran a docker_env project without a container");
    };
    assert!(
        errors["project"].starts_with("\"boxed\" declares docker_env: it runs in a container"),
        "{errors:?}"
    );
    assert!(harness.store.recent_launches(10).await.unwrap().is_empty());

    // Neither an experiment nor a new name: MLflow's Default, as `mlflow run`.
    let launch = launched(&harness, &request(&[("alpha", "1")], "cpu", "")).await;
    let launch = wait_for(&harness, &launch.id, LaunchStatus::Succeeded).await;
    let run = MlflowRest::new(&mlflow_url())
        .get_run(launch.run_id.as_deref().unwrap())
        .await;
    let (_, default) = MlflowRest::new(&mlflow_url())
        .get("experiments/get-by-name", &[("experiment_name", "Default")])
        .await;
    assert_eq!(
        run["info"]["experiment_id"],
        default["experiment"]["experiment_id"]
    );
}

#[tokio::test]
async fn an_invalid_form_gets_an_error_per_field_and_records_nothing() {
    let harness = harness(&mlflow_url()).await;
    let mut form = request(
        &[("alpha", "abc"), ("exit_code", "1.5"), ("--gamma", "1")],
        "huge",
        "",
    );
    form.experiment_id = "the latest".into();

    let Err(Error::Invalid(Invalid { fields: errors, .. })) = harness
        .launcher
        .submit(&user("tester", Role::Admin), &form)
        .await
    else {
        panic!("launched an invalid form");
    };
    assert_eq!(errors["param.alpha"], "\"abc\" is not a number");
    assert_eq!(errors["param.exit_code"], "\"1.5\" is not a whole number");
    assert!(errors["param.--gamma"].contains("is not a parameter name"));
    assert_eq!(errors["profile"], "no hardware profile named \"huge\"");
    assert_eq!(
        errors["experiment"],
        "choose an experiment or name a new one"
    );
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(harness.store.recent_launches(10).await.unwrap().is_empty());

    form.project = "nope".into();
    form.submission = "not a token!".into();
    let errors = harness.launcher.check(&form);
    assert!(errors["project"].contains("no project named \"nope\""));
    assert!(
        !errors.contains_key("submission"),
        "the redisplayed form gets a new token"
    );
    let Err(Error::Invalid(Invalid { fields: errors, .. })) = harness
        .launcher
        .submit(&user("tester", Role::Admin), &form)
        .await
    else {
        panic!("launched with a bad token");
    };
    assert!(errors["submission"].contains("reload"));
}

#[tokio::test]
async fn the_same_form_sent_twice_at_once_is_one_launch() {
    let harness = harness(&mlflow_url()).await;
    let form = request(&[("alpha", "2")], "cpu", &unique("twice"));
    let user = user("tester", Role::Admin);
    let (first, second) = tokio::join!(
        harness.launcher.submit(&user, &form),
        harness.launcher.submit(&user, &form)
    );
    let id = |submitted: server::error::Result<Launch>| match submitted {
        Ok(launch) => launch.id,
        Err(err) => panic!("{err:?}"),
    };
    assert_eq!(id(first), id(second));
    assert_eq!(harness.store.recent_launches(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_start_the_executor_refuses_fails_launch_and_run_with_the_reason() {
    let harness = harness(&mlflow_url()).await;
    let mut form = request(&[], "cpu", &unique("refused"));
    form.entry_point = "missing".into();
    let launch = launched(&harness, &form).await;
    assert_eq!(launch.status, LaunchStatus::Failed);
    assert!(
        launch
            .reason
            .contains("cannot start \"slipway-no-such-program\""),
        "{}",
        launch.reason
    );
    let run = MlflowRest::new(&mlflow_url())
        .get_run(launch.run_id.as_deref().unwrap())
        .await;
    assert_eq!(run["info"]["status"], "FAILED");
    assert_eq!(run_pairs(&run, "tags")["slipway.end_reason"], launch.reason);
}

#[tokio::test]
async fn a_training_that_crashes_fails_and_slipway_ends_its_run() {
    let harness = harness(&mlflow_url()).await;
    let launch = launched(
        &harness,
        &request(
            &[("alpha", "1"), ("exit_code", "3")],
            "cpu",
            &unique("crash"),
        ),
    )
    .await;
    let launch = wait_for(&harness, &launch.id, LaunchStatus::Failed).await;
    assert_eq!(launch.reason, "exited with code 3");
    // The launch row is written before MLflow is told, so the run follows it.
    let run_id = launch.run_id.clone().unwrap();
    let ended = eventually(Duration::from_secs(10), || async {
        let run = MlflowRest::new(&mlflow_url()).get_run(&run_id).await;
        (run["info"]["status"] != "RUNNING").then_some(run)
    })
    .await
    .expect("the code never touched MLflow; Slipway ends the run");
    assert_eq!(ended["info"]["status"], "FAILED");
    assert_eq!(
        run_pairs(&ended, "tags")["slipway.end_reason"],
        "exited with code 3"
    );
}

#[tokio::test]
async fn cancel_stops_the_whole_process_group_and_kills_the_run() {
    let harness = harness(&mlflow_url()).await;
    let launch = launched(
        &harness,
        &request(
            &[("alpha", "1"), ("sleep", "120")],
            "cpu",
            &unique("cancel"),
        ),
    )
    .await;
    let launch = wait_for(&harness, &launch.id, LaunchStatus::Running).await;
    let pgid: i32 = launch.executor_ref.as_deref().unwrap().parse().unwrap();
    // Wait until the child `sleep` runs, so there is a group to stop.
    for _ in 0..100 {
        if std::fs::read_to_string(format!("/proc/{pgid}/task/{pgid}/children"))
            .is_ok_and(|c| !c.trim().is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled = harness
        .launcher
        .cancel(&user("tester", Role::Admin), &launch.id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, LaunchStatus::Cancelled);
    assert_eq!(cancelled.reason, "cancelled by tester");
    let alive = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None);
    assert!(alive.is_err(), "the group, child included, is gone");
    let run = MlflowRest::new(&mlflow_url())
        .get_run(launch.run_id.as_deref().unwrap())
        .await;
    assert_eq!(run["info"]["status"], "KILLED");
    let again = harness
        .launcher
        .cancel(&user("tester", Role::Admin), &launch.id)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already ended"), "{again}");
}

#[tokio::test]
async fn the_profiles_runtime_limit_stops_a_training_that_runs_over() {
    let harness = harness(&mlflow_url()).await;
    let launch = launched(
        &harness,
        &request(
            &[("alpha", "1"), ("sleep", "60")],
            "brief",
            &unique("deadline"),
        ),
    )
    .await;
    let launch = wait_for(&harness, &launch.id, LaunchStatus::Failed).await;
    assert!(
        launch.reason.starts_with("DeadlineExceeded"),
        "{}",
        launch.reason
    );
}

#[tokio::test]
async fn with_mlflow_down_the_launch_is_recorded_as_failed_with_why() {
    let down = format!("http://127.0.0.1:{}", free_port());
    let harness = harness(&down).await;
    let launch = launched(&harness, &request(&[("alpha", "1")], "cpu", "anything")).await;
    assert_eq!(launch.status, LaunchStatus::Failed);
    assert!(
        launch
            .reason
            .starts_with("creating the experiment: cannot reach MLflow"),
        "{}",
        launch.reason
    );
    assert_eq!(launch.run_id, None);
    let mut form = request(&[("alpha", "1")], "cpu", "");
    form.experiment_id = "0".into();
    let launch = launched(&harness, &form).await;
    assert!(
        launch
            .reason
            .starts_with("creating the MLflow run: cannot reach MLflow"),
        "{}",
        launch.reason
    );
}

/// A restarted Slipway has no children: the trainings an earlier one left
/// unfinished are over, and MLflow says whether their code finished them.
#[tokio::test]
async fn a_restart_settles_the_trainings_an_earlier_slipway_left_running() {
    let first = harness(&mlflow_url()).await;
    let experiment = unique("restart");
    let abandoned = launched(
        &first,
        &request(&[("alpha", "1"), ("sleep", "60")], "cpu", &experiment),
    )
    .await;
    let finished = launched(
        &first,
        &request(&[("alpha", "1"), ("sleep", "60")], "cpu", &experiment),
    )
    .await;
    wait_for(&first, &abandoned.id, LaunchStatus::Running).await;
    wait_for(&first, &finished.id, LaunchStatus::Running).await;
    // Its code ended this one's run before Slipway went away.
    MlflowRest::new(&mlflow_url())
        .post(
            "runs/update",
            serde_json::json!({"run_id": finished.run_id, "status": "FINISHED"}),
        )
        .await;

    let (second, _, store) = start_launcher(&mlflow_url(), first._data.path()).await;
    let mut settled = Vec::new();
    for id in [&abandoned.id, &finished.id] {
        let mut launch = store.launch(id).await.unwrap().unwrap();
        for _ in 0..100 {
            if launch.status.is_terminal() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            launch = store.launch(id).await.unwrap().unwrap();
        }
        settled.push((launch.status, launch.reason));
    }
    assert_eq!(
        settled,
        [
            (
                LaunchStatus::Failed,
                "Slipway restarted while this training ran".to_string()
            ),
            (
                LaunchStatus::Succeeded,
                "Slipway restarted while this training ran; the MLflow run had finished"
                    .to_string()
            ),
        ]
    );
    drop(second);
    // The processes are still the first executor's children: stop them.
    use server::adapters::executor::Executor;
    for launch in [&abandoned, &finished] {
        let pid = store
            .launch(&launch.id)
            .await
            .unwrap()
            .unwrap()
            .executor_ref
            .unwrap();
        first.executor.cancel(&launch.id, &pid).await.unwrap();
        assert!(!first.executor.is_present(&launch.id, &pid).await.unwrap());
    }
}

/// A project's python_env is built into a virtualenv (once) and the training
/// runs in it, with its pinned packages; `local` runs in Slipway's Python; a
/// conda environment is refused with what to do instead.
#[tokio::test]
async fn a_python_env_project_runs_in_its_own_virtualenv() {
    let harness = harness(&mlflow_url()).await;
    let rest = MlflowRest::new(&mlflow_url());
    let experiment = unique("pinned");
    let launch_with = |env_manager: &str| {
        let mut form = request(&[], "cpu", &experiment);
        form.project = "pinned".into();
        form.env_manager = env_manager.into();
        form
    };
    let tags_of = |launch: &Launch| {
        let run_id = launch.run_id.clone().unwrap();
        let rest = &rest;
        async move { run_pairs(&rest.get_run(&run_id).await, "tags") }
    };

    // The default for a project with a python_env: building it takes a
    // while the first time (pip installs scikit-learn and its dependencies).
    let first = launched(&harness, &launch_with("")).await;
    let first = wait_for_within(
        &harness,
        &first.id,
        LaunchStatus::Succeeded,
        Duration::from_secs(600),
    )
    .await;
    let tags = tags_of(&first).await;
    assert_eq!(tags["sklearn_version"], "1.5.2", "the pinned version");
    assert_eq!(tags["mlflow.project.env"], "virtualenv");
    let logs = log_text(&harness, &first).await;
    assert!(logs.contains("slipway: building the environment"), "{logs}");
    assert!(logs.contains("python-envs"), "{logs}");

    let again = launched(&harness, &launch_with("virtualenv")).await;
    let again = wait_for(&harness, &again.id, LaunchStatus::Succeeded).await;
    assert!(
        log_text(&harness, &again)
            .await
            .contains("slipway: using the environment"),
        "built once, reused"
    );

    let local = launched(&harness, &launch_with("local")).await;
    let local = wait_for(&harness, &local.id, LaunchStatus::Succeeded).await;
    let tags = tags_of(&local).await;
    assert_ne!(
        tags["sklearn_version"], "1.5.2",
        "Slipway's own scikit-learn"
    );
    assert_eq!(tags["mlflow.project.env"], "local");

    // A conda project runs in Slipway's Python by default; conda itself,
    // asked for by name, is refused with what to do instead.
    let mut conda = request(&[], "cpu", &experiment);
    conda.project = "condaonly".into();
    let by_default = launched(&harness, &conda).await;
    let by_default = wait_for(&harness, &by_default.id, LaunchStatus::Succeeded).await;
    assert_eq!(by_default.env_manager, "local");
    assert_eq!(tags_of(&by_default).await["mlflow.project.env"], "local");
    conda.env_manager = "conda".into();
    conda.submission = uuid::Uuid::new_v4().to_string();
    let Err(Error::Invalid(Invalid { fields: errors, .. })) = harness
        .launcher
        .submit(&user("tester", Role::Admin), &conda)
        .await
    else {
        panic!("ran a conda project with conda");
    };
    assert!(
        errors["env_manager"]
            .contains("Slipway builds python_env virtualenvs, not conda environments"),
        "{errors:?}"
    );
}
