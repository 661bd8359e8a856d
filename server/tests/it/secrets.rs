//! Slipway's secrets stay Slipway's: the binary is started with a database
//! URL, a webhook secret and an MLflow password in its environment, and a
//! local training that prints its whole environment gets none of them, but
//! does get the MLflow credentials meant for training code. The secrets
//! appear in no page, no API answer, `/metrics` or Slipway's log either.

use std::time::Duration;

use crate::support::binary::{Slipway, SlipwaySettings};
use crate::support::{mlflow_url, trainer_catalog, unique};

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_a_training_a_page_the_metrics_or_the_log() {
    let data = tempfile::tempdir().unwrap();
    let catalog = trainer_catalog(data.path(), "");
    let database_marker = unique("database-file");
    let webhook_secret = unique("webhook-secret");
    let mlflow_password = unique("slipway-mlflow-password");
    let job_password = unique("job-mlflow-password");
    let secrets = [&database_marker, &webhook_secret, &mlflow_password];
    let slipway = Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: data.path(),
        mlflow_url: mlflow_url(),
        extra_env: vec![
            (
                "SLIPWAY_DATABASE_URL",
                format!(
                    "sqlite://{}/{database_marker}.db?mode=rwc",
                    data.path().display()
                ),
            ),
            ("SLIPWAY_WEBHOOK_SECRET", webhook_secret.clone()),
            ("SLIPWAY_MLFLOW_USERNAME", "slipway-service".into()),
            ("SLIPWAY_MLFLOW_PASSWORD", mlflow_password.clone()),
            ("SLIPWAY_JOB_MLFLOW_USERNAME", "trainer-bot".into()),
            ("SLIPWAY_JOB_MLFLOW_PASSWORD", job_password.clone()),
        ],
    })
    .await;

    let page = slipway
        .post_form(
            "/launches",
            &[
                ("submission", &uuid::Uuid::new_v4().to_string()),
                ("project", "trainer"),
                ("entry_point", "environment"),
                ("new_experiment", &unique("secrets")),
                ("profile", "cpu"),
            ],
        )
        .await;
    let mut events = slipway.events(&format!("/api{page}/events")).await;
    let seen = events.until_end(Duration::from_secs(60)).await;
    let environment: String = seen
        .iter()
        .filter(|(name, _)| name == "log")
        .map(|(_, data)| data.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let variables: Vec<&str> = environment
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(variables.contains(&"PATH"), "{environment}");
    assert!(
        environment.contains("MLFLOW_TRACKING_USERNAME=trainer-bot\n")
            && environment.contains(&format!("MLFLOW_TRACKING_PASSWORD={job_password}")),
        "the training gets the credentials meant for it: {environment}"
    );
    assert!(
        !variables.iter().any(|name| name.starts_with("SLIPWAY_")),
        "nothing of Slipway's own settings: {variables:?}"
    );
    for secret in secrets {
        assert!(
            !environment.contains(secret.as_str()),
            "{secret} reached the training"
        );
    }

    let mut shown = String::new();
    for path in [page.as_str(), "/launches", "/experiments", "/deployments"] {
        let response = slipway.get(path).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        shown.push_str(&response.text().await.unwrap());
    }
    for path in ["/metrics", "/readyz"] {
        shown.push_str(&slipway.get(path).await.text().await.unwrap());
    }
    shown.push_str(&slipway.log());
    for secret in secrets.into_iter().chain([&job_password]) {
        assert!(
            !shown.contains(secret.as_str()),
            "{secret} appears in a page, /metrics, /readyz or the log"
        );
    }
}
