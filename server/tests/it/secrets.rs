//! Slipway's secrets stay Slipway's: the binary is started with a database
//! URL, a webhook secret and an MLflow password in its environment, and a
//! local training that prints its whole environment gets none of them, but
//! does get the MLflow credentials meant for training code. The secrets
//! appear in no page, no API answer, `/metrics` or Slipway's log either.
//! Run as a service user, Slipway keeps its `/proc` files from its own
//! children, its data directory and database from everyone else, and
//! takes secrets from files. Run as root, it runs its children as
//! `--child-user`, who cannot write its database.

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
        run_as: None,
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
    // Run as root without --child-user (as this suite runs), it warns.
    assert!(slipway.log().contains("set --child-user"));
    shown.push_str(&slipway.log());
    for secret in secrets.into_iter().chain([&job_password]) {
        assert!(
            !shown.contains(secret.as_str()),
            "{secret} appears in a page, /metrics, /readyz or the log"
        );
    }
}

/// The training's log, once it has ended.
async fn launched_log(slipway: &Slipway, entry_point: &str, fields: &[(&str, &str)]) -> String {
    let submission = uuid::Uuid::new_v4().to_string();
    let experiment = unique("peek");
    let mut form = vec![
        ("submission", submission.as_str()),
        ("project", "trainer"),
        ("entry_point", entry_point),
        ("new_experiment", experiment.as_str()),
        ("profile", "cpu"),
    ];
    form.extend_from_slice(fields);
    let page = slipway.post_form("/launches", &form).await;
    let mut events = slipway.events(&format!("/api{page}/events")).await;
    events
        .until_end(Duration::from_secs(60))
        .await
        .into_iter()
        .filter(|(name, _)| name == "log")
        .map(|(_, data)| data)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_training_cannot_read_slipways_environment_nor_anyone_its_files() {
    use std::os::unix::fs::PermissionsExt;
    const SERVICE_USER: u32 = 65532;
    let data = tempfile::tempdir().unwrap();
    let catalog = trainer_catalog(data.path(), "");
    let slipway_data = data.path().join("slipway");
    std::fs::create_dir(&slipway_data).unwrap();
    let canary = unique("webhook-secret");
    let git_secret = unique("git-secret");
    let secret_file = data.path().join("git-webhook-secret");
    std::fs::write(&secret_file, format!("{git_secret}\n")).unwrap();
    let slipway = Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: &slipway_data,
        mlflow_url: mlflow_url(),
        extra_env: vec![
            ("SLIPWAY_WEBHOOK_SECRET", canary.clone()),
            // In a file, as a mounted Secret is.
            (
                "SLIPWAY_GIT_WEBHOOK_SECRET_FILE",
                secret_file.display().to_string(),
            ),
        ],
        run_as: Some(SERVICE_USER),
    })
    .await;
    let pid = slipway.pid().to_string();
    // Read as root, its environment holds the secret it was given there
    // (and not the one from the file).
    let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
        .into_owned();
    assert!(environ.contains(&canary));
    assert!(!environ.contains(&git_secret));
    // The one from the file is the one in force.
    let push = serde_json::json!({"ref": "refs/heads/main", "after": "a".repeat(40),
        "repository": {"clone_url": "file:///nowhere.git"}})
    .to_string();
    let deliver = |secret: &str| {
        reqwest::Client::new()
            .post(format!("{}/webhooks/git", slipway.url))
            .header("x-github-event", "push")
            .header(
                "x-hub-signature-256",
                server::services::notifications::signature(secret, push.as_bytes()),
            )
            .body(push.clone())
            .send()
    };
    assert_eq!(deliver(&git_secret).await.unwrap().status(), 200);
    assert_eq!(deliver(&canary).await.unwrap().status(), 401);

    // A training of the same user is refused Slipway's environment...
    let peeked = launched_log(&slipway, "peek", &[("param.pid", &pid)]).await;
    assert!(peeked.contains("Permission denied"), "{peeked}");
    assert!(
        !peeked.contains(&canary),
        "the training read Slipway's secret"
    );
    // ...where that user's other processes are open to it: the refusal is Slipway's doing.
    let mut neighbour = std::process::Command::new("sleep");
    std::os::unix::process::CommandExt::uid(&mut neighbour, SERVICE_USER);
    std::os::unix::process::CommandExt::gid(&mut neighbour, SERVICE_USER);
    let mut neighbour = neighbour
        .arg("60")
        .env_clear()
        .env("NEIGHBOUR_MARK", "readable")
        .spawn()
        .unwrap();
    let read = launched_log(
        &slipway,
        "peek",
        &[("param.pid", &neighbour.id().to_string())],
    )
    .await;
    neighbour.kill().unwrap();
    neighbour.wait().unwrap();
    assert!(read.contains("NEIGHBOUR_MARK=readable"), "{read}");

    // Its data directory and database are its user's alone.
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&slipway_data), 0o700);
    assert_eq!(mode(&slipway_data.join("slipway.db")), 0o600);
    let log = slipway.log();
    assert!(!log.contains(&canary), "the secret is in the log");
    assert!(!log.contains("given on the command line"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_as_root_its_trainings_run_as_the_child_user_and_cannot_write_its_database() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts Slipway as root, as the suite runs"
    );
    const CHILD: u32 = 65534;
    let data = tempfile::tempdir().unwrap();
    let catalog = trainer_catalog(data.path(), "");
    let slipway_data = data.path().join("slipway");
    let slipway = Slipway::start(SlipwaySettings {
        namespace: None,
        catalog: &catalog,
        data_dir: &slipway_data,
        mlflow_url: mlflow_url(),
        extra_env: vec![("SLIPWAY_CHILD_USER", format!("{CHILD}:{CHILD}"))],
        run_as: None,
    })
    .await;
    let identity = launched_log(&slipway, "identity", &[]).await;
    assert!(
        identity.contains(&format!("uid={CHILD}")) && identity.contains(&format!("gid={CHILD}")),
        "{identity}"
    );
    assert!(
        !identity.contains("groups=0") && !identity.contains("(root)"),
        "root's groups were dropped: {identity}"
    );
    let environment = launched_log(&slipway, "environment", &[]).await;
    let home = slipway_data.join("child-home");
    assert!(
        environment.contains(&format!("HOME={}\n", home.display())),
        "{environment}"
    );
    assert_eq!(std::fs::metadata(&home).unwrap().uid(), CHILD);

    // Slipway writes its database all along, so the refusal is the proof.
    let database = slipway_data.join("slipway.db");
    let touched = launched_log(
        &slipway,
        "touch",
        &[("param.path", &database.display().to_string())],
    )
    .await;
    assert!(touched.contains("Permission denied"), "{touched}");
    // The data directory lets the child pass to its home, not look around.
    let mode = std::fs::metadata(&slipway_data)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o711);
    assert_eq!(
        std::fs::metadata(&database).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!slipway.log().contains("set --child-user"));
}
