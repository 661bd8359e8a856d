//! Promotion to serving on the embedded default, against a real MLflow and
//! real `mlflow models serve` processes: promote, replace without a gap,
//! roll back, pick up a stage change made elsewhere, and converge after a
//! restart from MLflow alone.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{
    MlflowRest, mlflow_url, register_sklearn_model as register, register_sklearn_model_in, unique,
    user,
};
use app::access::Role;
use app::model::DeploymentView;
use server::adapters::mlflow::MlflowClient;
use server::adapters::serving::local::{LocalServing, NotServing};
use server::error::{Error, Invalid};
use server::services::deployments::Saved;
use server::services::promotions::{Expected, Promotions};
use server::serving::reconciler::Reconciler;
use server::serving::target::Trigger;
use server::store::Store;

struct Setup {
    reconciler: Arc<Reconciler>,
    promotions: Arc<Promotions>,
    store: Store,
    local: Arc<LocalServing>,
}

async fn setup(data: &Path, model: &str) -> Setup {
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.display()))
        .await
        .unwrap();
    let catalog = format!("[[deployment]]\nmodel = \"{model}\"\ntarget = \"local\"\n");
    let support::Serving {
        reconciler,
        promotions,
        local,
        ..
    } = support::serving(&store, data, &catalog, Duration::from_secs(1)).await;
    Setup {
        reconciler,
        promotions,
        store,
        local,
    }
}

/// Waits until `version` serves and is ready (the servers' own pace).
async fn serving(reconciler: &Reconciler, model: &str, version: &str) -> DeploymentView {
    for _ in 0..1200 {
        let view = reconciler.view(model).unwrap();
        if view.serving_version.as_deref() == Some(version) && view.state == "Available" {
            return view;
        }
        assert_ne!(view.state, "Failed", "{view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "version {version} of {model} never served: {:?}",
        reconciler.view(model)
    );
}

async fn predict(address: &str) -> Result<f64, String> {
    let response = reqwest::Client::new()
        .post(address)
        .json(&serde_json::json!({"inputs": [[1.0, 2.0]]}))
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let body: serde_json::Value = response.json().await.map_err(|err| err.to_string())?;
    // Rounded: a linear regression answers 2.9999999999999947 for 3.
    let prediction = body["predictions"][0].as_f64().ok_or(format!("{body}"))?;
    Ok((prediction * 1000.0).round() / 1000.0)
}

/// A rollback while the next version is still starting goes back to what
/// serves: that server stays (nothing restarts), the start is stopped, and
/// the history says so, as the audit log does.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_while_the_next_version_starts_keeps_what_serves() {
    let model = unique("kept");
    let experiment = unique("kept");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    assert_eq!(register(&model, &experiment, 10.0), "2");
    let data = tempfile::tempdir().unwrap();
    let setup = setup(data.path(), &model).await;
    let (reconciler, promotions) = (&setup.reconciler, &setup.promotions);
    let deployer = user("promoter", Role::Deployer);
    promotions
        .promote(&deployer, &model, "1", "", Expected::Any)
        .await
        .unwrap();
    serving(reconciler, &model, "1").await;
    let v1_pids = support::model_server_pids(&model, Some("1"));
    assert_eq!(v1_pids.len(), 1);

    promotions
        .promote(&deployer, &model, "2", "", Expected::Any)
        .await
        .unwrap();
    let starting = support::eventually(Duration::from_secs(30), || async {
        let view = reconciler.view(&model).ok()?;
        (view.state == "Creating" && view.serving_version.as_deref() == Some("1")).then_some(())
    })
    .await;
    assert!(starting.is_some(), "{:?}", reconciler.view(&model));
    let back_to = promotions
        .rollback(&deployer, &model, "v2 looked wrong", Expected::Any)
        .await
        .unwrap();
    assert_eq!(back_to, "1");

    let settled = support::eventually(Duration::from_secs(30), || async {
        let history = setup.store.deployment_history(&model, 10).await.ok()?;
        history
            .iter()
            .all(|event| event.outcome != "pending")
            .then_some(history)
    })
    .await
    .expect("every change ends");
    let rows: Vec<_> = settled
        .iter()
        .map(|event| {
            (
                event.cause.as_str(),
                event.version.as_deref(),
                event.previous_version.as_deref(),
                event.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("rollback", Some("1"), Some("1"), "serving"),
            ("promote", Some("2"), Some("1"), "superseded"),
            ("promote", Some("1"), None, "serving"),
        ]
    );
    let kept = &settled[0];
    assert_eq!(
        kept.message,
        "v1 was still serving: kept, and the newer version's start stopped"
    );
    assert!(kept.ready_ms.unwrap() - kept.started_ms < 1000, "{kept:?}");
    assert!(
        settled[1].message.contains("version 1 was asked for"),
        "{:?}",
        settled[1]
    );
    let audit = setup
        .store
        .recent_events(Some(&format!("model:{model}")), 1)
        .await
        .unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].detail.as_str()),
        ("rollback", "v2 → v1: v2 looked wrong")
    );

    // The same server serves on; v2's is gone.
    assert_eq!(serving(reconciler, &model, "1").await.state, "Available");
    assert_eq!(support::model_server_pids(&model, Some("1")), v1_pids);
    let stopped = support::eventually(Duration::from_secs(30), || async {
        support::model_server_pids(&model, Some("2"))
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(stopped.is_some(), "v2's start was stopped");
    setup.reconciler.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_replace_rollback_and_outside_changes_all_end_up_serving() {
    let model = unique("served");
    let experiment = unique("served");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    assert_eq!(register(&model, &experiment, 10.0), "2");
    assert_eq!(register(&model, &experiment, 100.0), "3");
    let data = tempfile::tempdir().unwrap();
    let setup = setup(data.path(), &model).await;
    let reconciler = &setup.reconciler;
    let promotions = &setup.promotions;

    promotions
        .promote(
            &user("promoter", Role::Deployer),
            &model,
            "1",
            "",
            Expected::Any,
        )
        .await
        .unwrap();
    let v1 = serving(reconciler, &model, "1").await;
    let v1_address = v1.address.clone().unwrap();
    assert_eq!(predict(&v1_address).await.unwrap(), 3.0);

    // Replaced without a gap: the old server answers until the new one is ready.
    promotions
        .promote(
            &user("promoter", Role::Deployer),
            &model,
            "2",
            "",
            Expected::Any,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = reconciler.view(&model).unwrap();
    assert_eq!(during.state, "Creating", "{during:?}");
    assert_eq!(during.serving_version.as_deref(), Some("1"));
    assert_eq!(
        predict(&v1_address).await.unwrap(),
        3.0,
        "v1 still serves while v2 starts"
    );
    let v2 = serving(reconciler, &model, "2").await;
    assert_eq!(predict(v2.address.as_deref().unwrap()).await.unwrap(), 30.0);
    // The old server stops right after the new one takes over.
    let mut stopped = false;
    for _ in 0..100 {
        if predict(&v1_address).await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the old server is stopped once the new one serves");

    let back_to = promotions
        .rollback(
            &user("promoter", Role::Deployer),
            &model,
            "v2 is slower",
            Expected::Any,
        )
        .await
        .unwrap();
    assert_eq!(back_to, "1");
    let rolled = serving(reconciler, &model, "1").await;
    assert_eq!(
        predict(rolled.address.as_deref().unwrap()).await.unwrap(),
        3.0
    );

    // A stage transition made with MLflow's own API: no webhook for that, the poll finds it.
    MlflowRest::new(&mlflow_url()).post(
        "model-versions/transition-stage",
        serde_json::json!({"name": model, "version": "3", "stage": "Production", "archive_existing_versions": true}),
    ).await;
    let v3 = serving(reconciler, &model, "3").await;
    assert_eq!(
        predict(v3.address.as_deref().unwrap()).await.unwrap(),
        300.0
    );

    // The in-memory state flips first; the record of it follows.
    let mut history = setup.store.deployment_history(&model, 10).await.unwrap();
    for _ in 0..50 {
        if history.iter().all(|event| event.outcome != "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        history = setup.store.deployment_history(&model, 10).await.unwrap();
    }
    let summary: Vec<_> = history
        .iter()
        .rev()
        .map(|event| {
            (
                event.version.clone().unwrap_or_default(),
                event.cause.as_str(),
                event.actor.as_str(),
                event.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("1".to_string(), "promote", "promoter", "serving"),
            ("2".to_string(), "promote", "promoter", "serving"),
            ("1".to_string(), "rollback", "promoter", "serving"),
            ("3".to_string(), "poll", "slipway", "serving"),
        ]
    );
    assert!(history.iter().all(|event| {
        event
            .ready_ms
            .is_some_and(|ready| ready >= event.started_ms)
    }));
    let audit = setup
        .store
        .recent_events(Some(&format!("model:{model}")), 10)
        .await
        .unwrap();
    let actions: Vec<_> = audit
        .iter()
        .rev()
        .map(|event| (event.action.as_str(), event.detail.as_str()))
        .collect();
    assert_eq!(
        actions[0],
        ("deployment-settings", "bound by the catalog file")
    );
    assert_eq!(actions[1], ("promote", "nothing → v1"));
    assert_eq!(actions[3], ("rollback", "v2 → v1: v2 is slower"));
    setup.reconciler.shutdown().await;
}

/// Slipway stopped after MLflow's transition and before the deployment:
/// started again, it deploys from what MLflow says, with no click. And a
/// model server killed behind its back is started again (drift).
#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_it_converges_from_mlflow_alone_and_repairs_a_killed_server() {
    let model = unique("restarted");
    assert_eq!(register(&model, &unique("restarted"), 2.0), "1");
    // The promotion happened; the Slipway that would have deployed it did not survive.
    MlflowClient::new(
        &mlflow_url().parse().unwrap(),
        server::adapters::mlflow::MlflowAuth::None,
        Duration::from_secs(20),
    )
    .unwrap()
    .transition_to_production(&model, "1")
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let setup = setup(data.path(), &model).await;
    let metrics = server::metrics::Metrics::new();
    setup.reconciler.report_to(metrics.clone());
    let view = serving(&setup.reconciler, &model, "1").await;
    assert_eq!(
        predict(view.address.as_deref().unwrap()).await.unwrap(),
        6.0
    );
    let history = setup.store.deployment_history(&model, 10).await.unwrap();
    assert_eq!(history[0].cause, "startup");

    // Someone kills the model server: the next pass notices and starts it again.
    let server = setup.local.status(&model).0.unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(server.pgid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    setup.reconciler.trigger(Trigger::new("poll", "slipway"));
    let mut restarted = None;
    for _ in 0..1200 {
        let (current, _) = setup.local.status(&model);
        if let Some(current) = current.filter(|current| current.pgid != server.pgid) {
            restarted = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restarted = restarted.expect("the killed server was started again");
    assert_eq!(predict(&restarted.address()).await.unwrap(), 6.0);
    let history = setup.store.deployment_history(&model, 10).await.unwrap();
    assert_eq!(
        (history[0].cause.as_str(), history[0].version.as_deref()),
        ("drift", Some("1"))
    );

    // Someone freezes it (SIGSTOP): its process is there, but it answers
    // nothing; missed /ping checks get it replaced.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(restarted.pgid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let said = support::eventually(Duration::from_secs(30), || async {
        let view = setup.reconciler.view(&model).unwrap();
        view.message.contains("not answering /ping").then_some(view)
    })
    .await
    .expect("the frozen server is reported");
    assert_eq!(said.state, "Failed");
    let replaced = support::eventually(Duration::from_secs(120), || async {
        let (current, _) = setup.local.status(&model);
        current.filter(|current| current.pgid != restarted.pgid)
    })
    .await
    .expect("the frozen server was replaced");
    assert_eq!(predict(&replaced.address()).await.unwrap(), 6.0);
    assert!(
        !server::adapters::process::group_alive(restarted.pgid),
        "the frozen server was stopped"
    );
    let restarted = replaced;
    assert!(
        metrics.render().contains(&format!(
            "slipway_model_server_restarts_total{{model=\"{model}\"}} 2"
        )),
        "a killed and a frozen server: {}",
        metrics.render()
    );
    let history = support::eventually(Duration::from_secs(10), || async {
        let history = setup.store.deployment_history(&model, 10).await.unwrap();
        (history[0].outcome == "serving").then_some(history)
    })
    .await
    .expect("the replacement is recorded");
    assert_eq!(
        (history[0].cause.as_str(), history[0].version.as_deref()),
        ("drift", Some("1"))
    );

    // Taken out of production in MLflow: by default what serves keeps
    // serving, and the view says so (the same rule as on a cluster).
    MlflowRest::new(&mlflow_url())
        .transition_stage(&model, "1", "Archived")
        .await;
    let mut kept = None;
    for _ in 0..100 {
        let view = setup.reconciler.view(&model).unwrap();
        if view.desired_version.is_none() {
            kept = Some(view);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = kept.expect("a pass saw the archived version");
    assert_eq!(kept.serving_version.as_deref(), Some("1"));
    assert_eq!(
        kept.message,
        "no version is in production in MLflow; v1 keeps serving until one is"
    );
    setup.reconciler.trigger(Trigger::new("poll", "slipway"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(predict(&restarted.address()).await.unwrap(), 6.0);
    let after = setup.store.deployment_history(&model, 10).await.unwrap();
    assert_eq!(after.len(), history.len(), "nothing was undeployed");

    // Slipway stops: its model servers stop with it, and no pass that was
    // still to come starts one again.
    setup.reconciler.shutdown().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("models:/{model}/")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "model servers outlived Slipway: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_start_supersedes_an_older_one_one_server_remains_and_none_outlives_its_owner() {
    let model = unique("superseded");
    let experiment = unique("superseded");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    assert_eq!(register(&model, &experiment, 10.0), "2");
    let data = tempfile::tempdir().unwrap();
    let local = support::local_serving(data.path());

    let older = local.begin(&model, "1").unwrap();
    let (wanted, _) = local.wanted_version(&model);
    assert_eq!(
        wanted.as_deref(),
        Some("1"),
        "starting is known before the spawn"
    );
    let deploying_older = tokio::spawn({
        let local = local.clone();
        async move { local.deploy(older).await }
    });
    let spawned = support::eventually(Duration::from_secs(30), || async {
        (support::model_servers(&model, None) == 1).then_some(())
    })
    .await;
    assert!(spawned.is_some(), "v1's server process started");

    // v2 is asked for while v1 is still starting.
    let newer = local.begin(&model, "2").unwrap();
    let v2 = local.deploy(newer).await.unwrap();
    assert_eq!(v2.version, "2");
    assert_eq!(predict(&v2.address()).await.unwrap(), 30.0);
    let older_outcome = deploying_older.await.unwrap();
    assert_eq!(
        older_outcome,
        Err(NotServing::Superseded(
            "version 2 was asked for before this one was ready".into()
        )),
        "{older_outcome:?}"
    );
    assert_eq!(
        local
            .status(&model)
            .0
            .map(|server| server.version)
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        support::model_servers(&model, None),
        1,
        "only v2's server runs"
    );

    // Removed while a start is under way (a deployment deleted, a canary
    // aborted): the starting server stops as well as the serving one.
    let again = local.begin(&model, "1").unwrap();
    let deploying_again = tokio::spawn({
        let local = local.clone();
        async move { local.deploy(again).await }
    });
    let spawned = support::eventually(Duration::from_secs(30), || async {
        (support::model_servers(&model, Some("1")) == 1).then_some(())
    })
    .await;
    assert!(spawned.is_some(), "v1's server process started again");
    local.undeploy(&model).await;
    assert!(deploying_again.await.unwrap().is_err());
    let none = support::eventually(Duration::from_secs(10), || async {
        (support::model_servers(&model, None) == 0).then_some(())
    })
    .await;
    assert!(
        none.is_some(),
        "a server that was starting outlived its removal"
    );

    // Dropped without a shutdown (as when a test fails): nothing outlives it.
    drop(local);
    let gone = support::eventually(Duration::from_secs(5), || async {
        (support::model_servers(&model, None) == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "model servers outlived their LocalServing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_made_in_the_app_serves_changes_and_once_deleted_stops_its_server() {
    let model = unique("app-made");
    let experiment = unique("app-made");
    assert_eq!(register(&model, &experiment, 1.0), "1");
    let data = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.path().display()))
        .await
        .unwrap();
    let support::Serving {
        reconciler,
        promotions,
        deployments,
        local: _local,
        ..
    } = support::serving(&store, data.path(), "", Duration::from_secs(1)).await;
    let settings = app::model::DeploymentSettings {
        model: model.clone(),
        ..app::model::DeploymentSettings::new_deployment()
    };

    // Only an admin may; the form's values are checked as the catalog's.
    let refused = deployments
        .create(&user("promoter", Role::Deployer), &settings)
        .await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    let invalid = app::model::DeploymentSettings {
        target: "seldon".into(),
        replicas: "-1".into(),
        ..settings.clone()
    };
    let Err(Error::Invalid(Invalid { problems, .. })) = deployments
        .create(&user("admin", Role::Admin), &invalid)
        .await
    else {
        panic!("refused as invalid");
    };
    assert_eq!(
        problems,
        [
            "the seldon target needs Slipway to run with a cluster (SLIPWAY_EXECUTOR=kubernetes)"
                .to_string(),
            format!("deployment of {model:?}: a seldon target needs a `namespace`"),
            format!("deployment of {model:?}: replicas must not be negative"),
        ]
    );
    assert!(
        store.binding(&model).await.unwrap().is_none(),
        "nothing written"
    );

    assert!(matches!(
        deployments
            .create(&user("admin", Role::Admin), &settings)
            .await,
        Ok(Saved::Now)
    ));
    let Err(Error::Invalid(Invalid {
        problems: twice, ..
    })) = deployments
        .create(&user("admin", Role::Admin), &settings)
        .await
    else {
        panic!("a second deployment of one model is refused");
    };
    assert_eq!(twice, [format!("{model} already has a deployment")]);

    // Served without a restart.
    promotions
        .promote(
            &user("promoter", Role::Deployer),
            &model,
            "1",
            "",
            Expected::Any,
        )
        .await
        .unwrap();
    let view = serving(&reconciler, &model, "1").await;
    assert_eq!(predict(&view.address.unwrap()).await.unwrap(), 3.0);

    // Changed from a stale form: refused; from a fresh one: saved.
    let form = deployments.form(Some(&model)).await.unwrap();
    assert!(form.exists && !form.from_catalog);
    let needs_approval = app::model::DeploymentSettings {
        requires_approval: true,
        ..form.settings.clone()
    };
    let stale = app::model::DeploymentSettings {
        revision: "0".into(),
        ..needs_approval.clone()
    };
    let conflict = deployments
        .update(&user("admin", Role::Admin), &model, &stale)
        .await;
    assert!(matches!(conflict, Err(Error::Conflict(_))), "{conflict:?}");
    assert!(!reconciler.binding(&model).unwrap().requires_approval);
    assert!(matches!(
        deployments
            .update(&user("admin", Role::Admin), &model, &needs_approval)
            .await,
        Ok(Saved::Now)
    ));
    assert!(reconciler.binding(&model).unwrap().requires_approval);
    // Now a deployer's promotion only asks, and asking needs a reason:
    // nothing is promoted directly.
    let asked = promotions
        .promote(
            &user("promoter", Role::Deployer),
            &model,
            "1",
            "",
            Expected::Any,
        )
        .await;
    assert!(
        matches!(&asked, Err(Error::Invalid(why)) if why.to_string().starts_with("Please say why")),
        "{asked:?}"
    );

    // Deleted: its model server stops, and the history says who and why.
    let revision = deployments
        .form(Some(&model))
        .await
        .unwrap()
        .settings
        .revision;
    deployments
        .delete(&user("admin", Role::Admin), &model, &model, &revision)
        .await
        .unwrap();
    let stopped = support::eventually(Duration::from_secs(30), || async {
        (support::model_servers(&model, None) == 0).then_some(())
    })
    .await;
    assert!(
        stopped.is_some(),
        "the model server outlived its deployment"
    );
    assert!(matches!(reconciler.view(&model), Err(Error::NotFound(_))));
    // Recorded once the whole process group has ended.
    let history = support::eventually(Duration::from_secs(30), || async {
        let history = store.deployment_history(&model, 10).await.unwrap();
        (history[0].outcome != "pending").then_some(history)
    })
    .await
    .expect("the removal ended");
    let steps: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|event| {
            (
                event.cause.as_str(),
                event.actor.as_str(),
                event.outcome.as_str(),
            )
        })
        .rev()
        .collect();
    assert_eq!(
        steps,
        [
            ("settings", "admin", "changed"),
            ("promote", "promoter", "serving"),
            ("settings", "admin", "changed"),
            ("settings", "admin", "changed"),
            ("settings", "admin", "removed"),
        ]
    );
    assert_eq!(history[1].message, "deleted");
    assert_eq!(history[2].message, "requires approval no → yes");
    let mut audit: Vec<String> = store
        .recent_events(Some(&format!("model:{model}")), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action)
        .collect();
    audit.sort();
    assert_eq!(
        audit,
        [
            "create-deployment",
            "delete-deployment",
            "edit-deployment",
            "promote"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_files_deployments_belong_to_the_file() {
    let model = unique("from-file");
    let data = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.path().display()))
        .await
        .unwrap();
    let catalog = format!("[[deployment]]\nmodel = \"{model}\"\ntarget = \"local\"\n");
    let support::Serving {
        reconciler,
        deployments,
        local: _local,
        ..
    } = support::serving(&store, data.path(), &catalog, Duration::from_secs(3600)).await;
    let form = deployments.form(Some(&model)).await.unwrap();
    assert!(form.from_catalog);
    let refused = deployments
        .update(&user("admin", Role::Admin), &model, &form.settings)
        .await;
    let Err(Error::Invalid(why)) = refused else {
        panic!("a file's deployment is changed in the file: {refused:?}");
    };
    let why = why.to_string();
    assert!(why.contains("catalog file"), "{why}");
    reconciler.shutdown().await;

    // Started again with the entry gone from the file: the deployment goes.
    let support::Serving {
        reconciler: again,
        local: _local,
        ..
    } = support::serving(&store, data.path(), "", Duration::from_secs(3600)).await;
    assert!(again.bindings().is_empty());
    assert!(store.binding(&model).await.unwrap().is_none());
    again.shutdown().await;
}

/// MLflow away for a minute just after a promotion: the deployment says
/// so, something keeps serving, and once MLflow answers again the promoted
/// version serves within seconds, recorded as the promotion's.
#[tokio::test(flavor = "multi_thread")]
async fn an_mlflow_outage_during_a_promotion_is_said_and_caught_up_on() {
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mlflow = support::OwnMlflow::start(port);
    let model = unique("outage");
    let experiment = unique("outage");
    assert_eq!(
        register_sklearn_model_in(&url, &model, &experiment, 1.0),
        "1"
    );
    assert_eq!(
        register_sklearn_model_in(&url, &model, &experiment, 10.0),
        "2"
    );
    let data = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.path().display()))
        .await
        .unwrap();
    let catalog = format!("[[deployment]]\nmodel = \"{model}\"\ntarget = \"local\"\n");
    // The default poll interval.
    let support::Serving {
        reconciler,
        promotions,
        local: _local,
        ..
    } = support::serving_of(&url, &store, data.path(), &catalog, Duration::from_secs(5)).await;
    promotions
        .promote(
            &user("promoter", Role::Deployer),
            &model,
            "1",
            "",
            Expected::Any,
        )
        .await
        .unwrap();
    serving(&reconciler, &model, "1").await;

    promotions
        .promote(
            &user("promoter", Role::Deployer),
            &model,
            "2",
            "",
            Expected::Any,
        )
        .await
        .unwrap();
    mlflow.freeze();
    let frozen = std::time::Instant::now();
    let said = support::eventually(Duration::from_secs(30), || async {
        let view = reconciler.view(&model).unwrap();
        view.message
            .starts_with("MLflow has not answered for")
            .then_some(view)
    })
    .await
    .expect("the deployment says MLflow is away");
    assert!(
        said.message.contains("what serves keeps serving"),
        "{}",
        said.message
    );
    let address = said.address.expect("something serves");
    assert!(predict(&address).await.is_ok(), "and answers");

    tokio::time::sleep(Duration::from_secs(60).saturating_sub(frozen.elapsed())).await;
    mlflow.thaw();
    let back = std::time::Instant::now();
    let view = serving(&reconciler, &model, "2").await;
    println!(
        "v2 served {:.1} s after MLflow came back",
        back.elapsed().as_secs_f64()
    );
    assert!(
        !view.message.contains("MLflow has not answered"),
        "{}",
        view.message
    );
    assert_eq!(predict(&view.address.unwrap()).await.unwrap(), 30.0);
    // Recorded just after the switch.
    let latest = support::eventually(Duration::from_secs(10), || async {
        let history = store.deployment_history(&model, 10).await.unwrap();
        history
            .into_iter()
            .find(|event| event.version.as_deref() == Some("2") && event.outcome == "serving")
    })
    .await
    .expect("v2's deployment is in the history");
    assert_eq!(
        (latest.cause.as_str(), latest.actor.as_str()),
        ("promote", "promoter")
    );
    reconciler.shutdown().await;
}

/// A new version of `model` made from `from`'s version `version`: the same
/// stored model, so it serves the same answers, without training again.
async fn copy_version(rest: &MlflowRest, from: &str, version: &str, model: &str) -> String {
    let (status, found) = rest
        .get(
            "model-versions/get",
            &[("name", from), ("version", version)],
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let source = &found["model_version"];
    let mut body = serde_json::json!({
        "name": model,
        "source": source["source"],
        "run_id": source["run_id"],
    });
    // MLflow 3 wants the logged model a `models:/m-…` source names.
    let logged_model = source["model_id"]
        .as_str()
        .or_else(|| source["source"].as_str()?.strip_prefix("models:/"));
    if let Some(model_id) = logged_model {
        body["model_id"] = model_id.into();
    }
    let created = rest.post("model-versions/create", body).await;
    created["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Fifty promotions and rollbacks at once over three models, on real local
/// serving: afterwards each model has one Production version in MLflow,
/// exactly one model server serves it and answers as that version does, and
/// the accepted changes are in the history in the order they were made.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_changes_at_once_over_three_models_end_served_as_mlflow_says() {
    let rest = MlflowRest::new(&mlflow_url());
    let seed = unique("seed");
    let experiment = unique("seed");
    // Version 1 answers (1 + 2) × 1, version 2 (1 + 2) × 10; the rest copy them.
    assert_eq!(register(&seed, &experiment, 1.0), "1");
    assert_eq!(register(&seed, &experiment, 10.0), "2");
    let answer = |version: &str| if version == "2" { 30.0 } else { 3.0 };
    let models = [unique("busy"), unique("busy"), unique("busy")];
    for model in &models {
        rest.create_registered_model(model).await;
        for from in ["1", "2", "1"] {
            copy_version(&rest, &seed, from, model).await;
        }
    }
    let data = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.path().display()))
        .await
        .unwrap();
    let catalog: String = models
        .iter()
        .map(|model| format!("[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\n\n"))
        .collect();
    let support::Serving {
        reconciler,
        promotions,
        local,
        ..
    } = support::serving(&store, data.path(), &catalog, Duration::from_secs(1)).await;
    for model in &models {
        promotions
            .promote(
                &user("promoter", Role::Deployer),
                model,
                "1",
                "",
                Expected::Any,
            )
            .await
            .unwrap();
    }

    // Every fifth click is a rollback; the others promote versions in turn.
    let clicks: Vec<_> = (0..50)
        .map(|click| {
            let promotions = promotions.clone();
            let model = models[click % models.len()].clone();
            let version = (1 + (click * 7) % 3).to_string();
            tokio::spawn(async move {
                if click % 5 == 4 {
                    promotions
                        .rollback(&user("promoter", Role::Deployer), &model, "", Expected::Any)
                        .await
                        .map(|_| ())
                } else {
                    promotions
                        .promote(
                            &user("promoter", Role::Deployer),
                            &model,
                            &version,
                            "",
                            Expected::Any,
                        )
                        .await
                        .map(|_| ())
                }
            })
        })
        .collect();
    let mut accepted = 0;
    for click in clicks {
        match click.await.unwrap() {
            Ok(()) => accepted += 1,
            // A rollback with no earlier serving version yet is refused.
            Err(Error::Invalid(why)) => {
                let why = why.to_string();
                assert!(why.contains("no earlier version"), "{why}")
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    assert!(accepted >= 40, "{accepted} of 50 accepted");

    let mut changes_made = 0;
    for model in &models {
        let filter = format!("name = '{model}'");
        let (_, found) = rest
            .get("model-versions/search", &[("filter", filter.as_str())])
            .await;
        let production: Vec<String> = found["model_versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|version| version["current_stage"] == "Production")
            .map(|version| version["version"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            production.len(),
            1,
            "one Production version: {production:?}"
        );
        let changes = store.promotions(model, 100).await.unwrap();
        assert_eq!(changes[0].version, production[0], "the last change's");
        for pair in changes.windows(2) {
            assert_eq!(
                pair[0].previous_version.as_ref(),
                Some(&pair[1].version),
                "{changes:?}"
            );
        }
        changes_made += changes.len() - 1;
        let view = serving(&reconciler, model, &production[0]).await;
        assert_eq!(
            predict(&view.address.unwrap()).await.unwrap(),
            answer(&production[0]),
            "{model} answers as v{} does",
            production[0]
        );
        let one = support::eventually(Duration::from_secs(30), || async {
            (support::model_servers(model, None) == 1).then_some(())
        })
        .await;
        assert!(
            one.is_some(),
            "{model}: {} model servers",
            support::model_servers(model, None)
        );
    }
    assert_eq!(changes_made, accepted, "every accepted change is recorded");
    drop(local);
    reconciler.shutdown().await;
}
