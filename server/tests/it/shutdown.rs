//! Slipway's children stop with it: on SIGTERM (Ctrl-C of `make run`, or
//! Kubernetes stopping a pod) a model server that is still starting and a
//! local training meant to run for minutes are gone once Slipway has exited.

use crate::support;

use std::time::Duration;

use leptos::server_fn::ServerFn;

use crate::support::binary::{Slipway, SlipwaySettings};
use crate::support::{MlflowRest, mlflow_url, register_sklearn_model, trainer_catalog, unique};

/// Live processes whose command line contains `text` (a zombie's is empty).
fn processes_with(text: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let words: Vec<String> = cmdline
                .split(|byte| *byte == 0)
                .map(|word| String::from_utf8_lossy(word).into_owned())
                .collect();
            words.join(" ").contains(text)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_child_outlives_slipway() {
    let setup = LocalDeployment::new("shutdown");
    let model = setup.model.clone();
    MlflowRest::new(&mlflow_url())
        .transition_stage(&model, "1", "Production")
        .await;
    let slipway = Slipway::start(setup.settings()).await;
    // A value no other process has on its command line.
    let alpha = format!("0.{}", uuid::Uuid::new_v4().as_u128() % 1_000_000_007);
    slipway
        .post_form(
            "/launches",
            &[
                ("submission", &uuid::Uuid::new_v4().to_string()),
                ("project", "trainer"),
                ("entry_point", "main"),
                ("param.alpha", &alpha),
                ("param.sleep", "600"),
                ("new_experiment", &unique("shutdown")),
                ("profile", "cpu"),
            ],
        )
        .await;
    let served = format!("models:/{model}/1");
    let training = format!("--alpha {alpha}");
    let both_running = support::eventually(Duration::from_secs(60), || async {
        (processes_with(&served) > 0 && processes_with(&training) > 0).then_some(())
    })
    .await;
    assert!(
        both_running.is_some(),
        "the model server and the training started:\n{}",
        slipway.log()
    );

    let status = slipway.stop().await;
    assert!(status.success(), "{status}");
    assert_eq!(
        processes_with(&served),
        0,
        "the model server outlived Slipway"
    );
    assert_eq!(
        processes_with(&training),
        0,
        "the training outlived Slipway"
    );
}

/// SIGKILL right after MLflow accepted a promotion, before its model server
/// was ready: nothing of Slipway's shutdown runs, and the model server it
/// was starting is left behind. The next Slipway on the same data
/// directory stops that orphan, serves the promoted version, and the
/// promotion's audit entry is whole.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_kill_the_next_slipway_finishes_the_promotion_and_stops_the_orphans() {
    let setup = LocalDeployment::new("killed");
    let model = setup.model.clone();
    let first = Slipway::start(setup.settings()).await;
    let back_to = first
        .post_form(
            &format!("/deployments/{model}/promote"),
            &[("version", "1"), ("reason", "before the crash")],
        )
        .await;
    assert_eq!(
        back_to,
        format!("/deployments/{model}?done=promoted&version=1")
    );
    let starting = support::eventually(Duration::from_secs(30), || async {
        (support::model_servers(&model, Some("1")) == 1).then_some(())
    })
    .await;
    assert!(
        starting.is_some(),
        "the model server was started:\n{}",
        first.log()
    );
    first.crash().await;
    assert_eq!(
        support::model_servers(&model, Some("1")),
        1,
        "a kill leaves the model server behind"
    );

    let second = Slipway::start(setup.settings()).await;
    let served = support::eventually(Duration::from_secs(120), || async {
        let detail: app::model::DeploymentDetail = second
            .server_fn(app::server_fns::GetDeployment::PATH, &[("model", &model)])
            .await;
        (detail.view.serving_version.as_deref() == Some("1") && detail.view.state == "Available")
            .then_some(detail)
    })
    .await
    .unwrap_or_else(|| panic!("v1 never served after the restart:\n{}", second.log()));
    assert_eq!(
        support::model_servers(&model, Some("1")),
        1,
        "the orphan was stopped, one server serves"
    );
    assert!(
        second
            .log()
            .contains("stopping a process group a previous Slipway left running")
    );
    let store = server::store::Store::connect(&format!(
        "sqlite://{}?mode=rwc",
        setup.data.path().join("slipway.db").display()
    ))
    .await
    .unwrap();
    let audit = store
        .search_events("", "promote", &format!("model:{model}"), 0, i64::MAX, 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].outcome, "done");
    // The start the kill cut short is ended as soon as a later one serves,
    // not left pending.
    let history = support::eventually(Duration::from_secs(10), || async {
        let history = store.deployment_history(&model, 10).await.unwrap();
        let outcomes: Vec<_> = history.iter().map(|event| event.outcome).collect();
        (outcomes == ["serving", "interrupted"]).then_some(outcomes)
    })
    .await;
    assert!(
        history.is_some(),
        "{:#?}",
        store.deployment_history(&model, 10).await.unwrap()
    );
    assert_eq!(served.history[0].version.as_deref(), Some("1"));

    let status = second.stop().await;
    assert!(status.success(), "{status}");
    assert_eq!(
        support::model_servers(&model, Some("1")),
        0,
        "nothing outlives the second Slipway"
    );
}

/// SIGKILL while a model server serves: the next Slipway adopts it instead
/// of stopping it and starting another, so serving goes on without a gap;
/// and it still stops it when it stops itself.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_kill_the_next_slipway_adopts_the_model_server_still_serving() {
    let setup = LocalDeployment::new("adopted");
    let model = setup.model.clone();
    let first = Slipway::start(setup.settings()).await;
    first
        .post_form(
            &format!("/deployments/{model}/promote"),
            &[("version", "1"), ("reason", "before the crash")],
        )
        .await;
    support::eventually(Duration::from_secs(120), || {
        serves_first_version(&first, &model)
    })
    .await
    .unwrap_or_else(|| panic!("v1 never served:\n{}", first.log()));
    let before = support::model_server_pids(&model, Some("1"));
    assert_eq!(before.len(), 1);
    first.crash().await;

    let second = Slipway::start(setup.settings()).await;
    support::eventually(Duration::from_secs(30), || {
        serves_first_version(&second, &model)
    })
    .await
    .unwrap_or_else(|| panic!("v1 is not served after the restart:\n{}", second.log()));
    assert!(
        second
            .log()
            .contains("adopted a model server a previous Slipway left serving"),
        "{}",
        second.log()
    );
    // A few passes later: the same server, and no new start in the history.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(support::model_server_pids(&model, Some("1")), before);
    let detail: app::model::DeploymentDetail = second
        .server_fn(app::server_fns::GetDeployment::PATH, &[("model", &model)])
        .await;
    let starts = detail
        .history
        .iter()
        .filter(|event| event.outcome == "serving")
        .count();
    assert_eq!(starts, 1, "{:#?}", detail.history);

    let status = second.stop().await;
    assert!(status.success(), "{status}");
    assert!(
        support::model_server_pids(&model, None).is_empty(),
        "the adopted server stops with the Slipway that adopted it"
    );
}

/// Killed while a canary takes half the requests, the next Slipway serves
/// the same split from the rollout's row (adopting both servers); killed
/// again right after the canary was promoted, the next one finishes it:
/// v2 serves alone, the rollout succeeded, no server is left over.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_kill_mid_canary_the_next_slipway_resumes_the_split_or_finishes_the_promotion() {
    let setup = LocalDeployment::new("canary-kill");
    let model = setup.model.clone();
    assert_eq!(
        register_sklearn_model(&model, &unique("canary-kill"), 2.0),
        "2"
    );
    let first = Slipway::start(setup.settings()).await;
    first
        .post_form(
            &format!("/deployments/{model}/promote"),
            &[("version", "1"), ("reason", "stable")],
        )
        .await;
    support::eventually(Duration::from_secs(120), || {
        serves_first_version(&first, &model)
    })
    .await
    .unwrap_or_else(|| panic!("v1 never served:\n{}", first.log()));
    let started = first
        .post_form(
            &format!("/deployments/{model}/canary"),
            &[("version", "2"), ("weight", "50")],
        )
        .await;
    assert!(started.ends_with("#canary"), "{started}");
    support::eventually(Duration::from_secs(180), || async {
        (answered_by_canary(&first, &model, 10).await? > 0).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the canary never answered:\n{}", first.log()));
    let servers = support::model_server_pids(&model, None);
    assert_eq!(servers.len(), 2, "stable and canary");
    first.crash().await;

    let second = Slipway::start(setup.settings()).await;
    let resumed = support::eventually(Duration::from_secs(60), || async {
        (answered_by_canary(&second, &model, 100).await? == 50).then_some(())
    })
    .await;
    assert!(
        resumed.is_some(),
        "the split was not served again:\n{}",
        second.log()
    );
    assert_eq!(
        support::model_server_pids(&model, None),
        servers,
        "both servers adopted, none started anew"
    );
    second
        .post_form(
            &format!("/deployments/{model}/canary/promote"),
            &[("reason", "good numbers")],
        )
        .await;
    second.crash().await;

    let third = Slipway::start(setup.settings()).await;
    let finished = support::eventually(Duration::from_secs(180), || async {
        let detail: app::model::DeploymentDetail = third
            .server_fn(app::server_fns::GetDeployment::PATH, &[("model", &model)])
            .await;
        let rollout = detail.rollout?.rollout;
        (rollout.state == app::model::RolloutState::Succeeded
            && detail.view.serving_version.as_deref() == Some("2"))
        .then_some(rollout)
    })
    .await
    .unwrap_or_else(|| panic!("the promotion was not finished:\n{}", third.log()));
    assert_eq!(finished.outcome, "v2 serves all requests");
    let alone = support::eventually(Duration::from_secs(30), || async {
        (support::model_server_pids(&model, None).len() == 1).then_some(())
    })
    .await;
    assert!(alone.is_some(), "a server outlived the rollout");
    assert_eq!(answered_by_canary(&third, &model, 20).await, Some(20));
    let status = third.stop().await;
    assert!(status.success(), "{status}");
    assert!(support::model_server_pids(&model, None).is_empty());
}

/// How many of `count` requests in a row through `slipway`'s gateway (each
/// Slipway here has a port of its own) v2 answered: v1 predicts 3, v2 6.
async fn answered_by_canary(slipway: &Slipway, model: &str, count: usize) -> Option<usize> {
    let detail: app::model::DeploymentDetail = slipway
        .server_fn(app::server_fns::GetDeployment::PATH, &[("model", model)])
        .await;
    let address = detail.view.address?;
    let http = reqwest::Client::new();
    let mut canary = 0;
    for _ in 0..count {
        let answer: serde_json::Value = http
            .post(&address)
            .header("content-type", "application/json")
            .body(r#"{"inputs": [[1.0, 2.0]]}"#)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        canary += usize::from(answer["predictions"][0].as_f64()? > 4.5);
    }
    Some(canary)
}

/// Whether `slipway` says v1 of `model` serves and is available.
async fn serves_first_version(slipway: &Slipway, model: &str) -> Option<()> {
    let detail: app::model::DeploymentDetail = slipway
        .server_fn(app::server_fns::GetDeployment::PATH, &[("model", model)])
        .await;
    (detail.view.serving_version.as_deref() == Some("1") && detail.view.state == "Available")
        .then_some(())
}

/// A model with one servable version, bound to local serving by a catalog
/// in a data directory of its own, for Slipways started one after another.
struct LocalDeployment {
    model: String,
    data: tempfile::TempDir,
    catalog: std::path::PathBuf,
}

impl LocalDeployment {
    fn new(prefix: &str) -> Self {
        let model = unique(prefix);
        assert_eq!(register_sklearn_model(&model, &unique(prefix), 1.0), "1");
        let data = tempfile::tempdir().unwrap();
        let catalog = trainer_catalog(
            data.path(),
            &format!("[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\n"),
        );
        Self {
            model,
            data,
            catalog,
        }
    }

    fn settings(&self) -> SlipwaySettings<'_> {
        SlipwaySettings {
            namespace: None,
            catalog: &self.catalog,
            data_dir: self.data.path(),
            mlflow_url: mlflow_url(),
            extra_env: Vec::new(),
            run_as: None,
        }
    }
}
