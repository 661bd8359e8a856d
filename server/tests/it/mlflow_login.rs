//! Slipway in front of an MLflow that requires login (`mlflow server
//! --app-name basic-auth`): Slipway signs in with its own credentials, and
//! the training it launches and the model server it starts sign in with the
//! credentials configured for them, never with Slipway's.

use crate::support;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use crate::support::site::Site;
use crate::support::{
    MlflowRest, OwnMlflow, config, eventually, free_port, trainer_catalog, unique,
};
use app::access::Role;
use app::model::LaunchStatus;
use futures::FutureExt;
use server::adapters::mlflow::MlflowAuth;
use server::adapters::mlflow::MlflowClient;

const ADMIN_PASSWORD: &str = "login-test-admin-password";

/// Registers a servable scikit-learn model as MLflow's `admin`.
fn register(mlflow: &str, model: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/register_model.py");
    let output = std::process::Command::new("python")
        .arg(script)
        .args([mlflow, model, &unique("login-model"), "1"])
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        .output()
        .expect("python with mlflow on PATH (make test puts the venv first)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().last().unwrap_or_default().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn slipway_its_trainings_and_its_model_servers_sign_in_to_mlflow() {
    let port = free_port();
    let _mlflow = OwnMlflow::start_with_login(port, ADMIN_PASSWORD);
    let mlflow = format!("http://127.0.0.1:{port}");
    let as_admin = format!("http://admin:{ADMIN_PASSWORD}@127.0.0.1:{port}");

    // Without credentials, or with wrong ones, MLflow refuses Slipway, and
    // the error says so without repeating the password.
    for auth in [
        MlflowAuth::None,
        MlflowAuth::Basic {
            username: "admin".into(),
            password: "not-the-password".into(),
        },
    ] {
        let client =
            MlflowClient::new(&mlflow.parse().unwrap(), auth, Duration::from_secs(20)).unwrap();
        let err = client
            .get_experiment("0")
            .await
            .expect_err("MLflow requires login")
            .to_string();
        assert!(err.contains("401"), "{err}");
        assert!(!err.contains("not-the-password"), "{err}");
    }

    let model = unique("login-served");
    assert_eq!(register(&mlflow, &model), "1");

    // Slipway's own credentials ride in the URI; those of its children are
    // configured apart (here the same account, as a small team would start).
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&as_admin, data.path());
    config.catalog = Some(trainer_catalog(
        data.path(),
        &format!("[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\n"),
    ));
    config.job_mlflow_username = Some("admin".into());
    config.job_mlflow_password = Some(ADMIN_PASSWORD.into());
    let site = Site::start(config, data).await;
    // The model server is stopped however the test ends.
    let outcome = AssertUnwindSafe(launch_promote_and_try(&site, &as_admin, &model))
        .catch_unwind()
        .await;
    site.services.deployments.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn launch_promote_and_try(site: &Site, as_admin: &str, model: &str) {
    // A training logs to its run: MLflow took the job's credentials.
    let experiment = unique("login-launch");
    let launched = site
        .post(
            Role::Trainer,
            "/launches",
            &[
                ("submission", &uuid::Uuid::new_v4().to_string()),
                ("project", "trainer"),
                ("entry_point", "main"),
                ("param.alpha", "3"),
                ("new_experiment", &experiment),
                ("profile", "cpu"),
            ],
        )
        .await;
    let location = support::site::location(&launched);
    let launch_id = location
        .strip_prefix("/launches/")
        .unwrap_or_else(|| panic!("launched: {location}"))
        .to_string();
    let launch = eventually(Duration::from_secs(120), || async {
        let launch = site.store.launch(&launch_id).await.unwrap().unwrap();
        launch.status.is_terminal().then_some(launch)
    })
    .await
    .expect("the training ends");
    assert_eq!(launch.status, LaunchStatus::Succeeded, "{}", launch.reason);
    let rest = MlflowRest::new(as_admin);
    let run = rest.get_run(launch.run_id.as_deref().unwrap()).await;
    assert_eq!(run["info"]["status"], "FINISHED");
    let metrics = run["data"]["metrics"].as_array().unwrap();
    assert_eq!(metrics[0]["key"], "alpha_squared");
    assert_eq!(metrics[0]["value"], 9.0);

    // The model server downloads the version's artifacts: it took them too.
    let promoted = site
        .post(
            Role::Deployer,
            &format!("/deployments/{model}/promote"),
            &[("version", "1"), ("reason", "behind a login")],
        )
        .await;
    assert_eq!(
        support::site::location(&promoted),
        format!("/deployments/{model}?done=promoted&version=1")
    );
    let served = eventually(Duration::from_secs(120), || async {
        let view = site
            .services
            .reads
            .get_deployment(model.to_string())
            .await
            .unwrap()
            .view;
        assert_ne!(view.state, "Failed", "{view:?}");
        (view.state == "Available").then_some(view)
    })
    .await
    .expect("version 1 serves");
    assert_eq!(served.serving_version.as_deref(), Some("1"));

    let tried = site
        .post(
            Role::Viewer,
            &format!("/deployments/{model}/try"),
            &[("input", r#"{"inputs": [[1.0, 2.0]]}"#)],
        )
        .await;
    let back = support::site::location(&tried);
    let id = back
        .strip_prefix(&format!("/deployments/{model}?answer="))
        .unwrap_or_else(|| panic!("{back}"));
    let answer = site.store.try_answer("viewer", id).await.unwrap().unwrap();
    let prediction = answer.outcome.expect("the model answered");
    assert_eq!(prediction.status, 200, "{}", prediction.body);
    let body: serde_json::Value = serde_json::from_str(&prediction.body).unwrap();
    let predicted = body["predictions"][0].as_f64().unwrap();
    assert!((predicted - 3.0).abs() < 1e-6, "{body}");
}
