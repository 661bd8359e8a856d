//! Test support: the real services `make test` starts, and MLflow's own REST
//! API for arranging data the way users would.

pub mod binary;
pub mod cluster;
pub mod crd;
pub mod mock_api;
pub mod prometheus;
pub mod roles;
pub mod site;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::config::Config;

pub fn mlflow_url() -> String {
    required_env("SLIPWAY_TEST_MLFLOW_URL")
}

pub fn postgres_url() -> String {
    required_env("SLIPWAY_TEST_POSTGRES_URL")
}

/// A database of its own on the test PostgreSQL server, for Slipways that
/// must see only their own rows (replicas sharing one).
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let server = postgres_url();
    let name = unique("db").replace('-', "_");
    let mut connection = sqlx::AnyConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let (base, _) = server.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// The suite needs its services; a missing one is a failure, never a skip.
fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, which starts MLflow and PostgreSQL"
        )
    })
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A signed-in user with `role` everywhere.
pub fn user(name: &str, role: app::access::Role) -> app::access::User {
    app::access::User {
        name: name.into(),
        authenticated: true,
        grants: vec![app::access::Grant::global(role)],
        token: None,
    }
}

/// Running `mlflow models serve` processes of `model` (the servers
/// themselves, not the workers they start): of `version`, or of any.
pub fn model_servers(model: &str, version: Option<&str>) -> usize {
    model_server_pids(model, version).len()
}

/// The pids of [`model_servers`].
pub fn model_server_pids(model: &str, version: Option<&str>) -> Vec<u32> {
    let wanted = format!("models:/{model}/{}", version.unwrap_or_default());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            let serves = args
                .windows(2)
                .any(|pair| pair == [b"models".as_slice(), b"serve".as_slice()])
                && args.iter().any(|arg| match version {
                    Some(_) => *arg == wanted.as_bytes(),
                    None => arg.starts_with(wanted.as_bytes()),
                });
            serves.then_some(pid)
        })
        .collect()
}

/// A port with nothing listening on it right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn config(mlflow_url: &str, data_dir: &std::path::Path) -> Config {
    use clap::Parser;
    Config::try_parse_from([
        "slipway",
        "--mlflow-uri",
        mlflow_url,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--mlflow-timeout-secs",
        "20",
        // The host in-process requests name (support::site).
        "--allowed-hosts",
        "slipway.test",
        "--gateway-listen",
        "127.0.0.1:0",
    ])
    .unwrap()
}

/// A model version [`MlflowRest::register_version`] made.
pub struct Registered {
    pub version: String,
    /// Where MLflow says the version's files are (`models:/m-…` on MLflow 3).
    pub source: String,
    /// MLflow 3's logged model behind the version; MLflow 2 has none.
    pub model_id: Option<String>,
}

/// MLflow's own REST API, as a user's script would call it.
pub struct MlflowRest {
    base: String,
    http: reqwest::Client,
}

impl MlflowRest {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/api/2.0/mlflow/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path} answered {status}: {body}");
        body
    }

    /// Returns the new experiment's id.
    pub async fn create_experiment(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let body = self
            .post("experiments/create", json!({"name": name, "tags": tags}))
            .await;
        body["experiment_id"].as_str().unwrap().to_string()
    }

    /// A GET of MLflow's REST API: its status and body.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/api/2.0/mlflow/{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A model version's stage, as MLflow has it now.
    pub async fn stage(&self, model: &str, version: &str) -> String {
        let (_, body) = self
            .get(
                "model-versions/get",
                &[("name", model), ("version", version)],
            )
            .await;
        body["model_version"]["current_stage"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A run as MLflow's `runs/get` returns it.
    pub async fn get_run(&self, run_id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/api/2.0/mlflow/runs/get", self.base))
            .query(&[("run_id", run_id)])
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "runs/get {run_id}: {}",
            response.status()
        );
        response.json::<Value>().await.unwrap()["run"].clone()
    }

    pub async fn delete_experiment(&self, id: &str) {
        self.post("experiments/delete", json!({"experiment_id": id}))
            .await;
    }

    /// A finished run with these params and tags; each metric gets the
    /// values given, at steps 0, 1, 2, …. Returns the run id.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        params: &[(&str, &str)],
        metrics: &[(&str, &[f64])],
        tags: &[(&str, &str)],
    ) -> String {
        let start_time = next_start_time();
        let created = self
            .post(
                "runs/create",
                json!({"experiment_id": experiment_id, "run_name": name, "start_time": start_time}),
            )
            .await;
        let run_id = created["run"]["info"]["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        let params: Vec<Value> = params
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let tags: Vec<Value> = tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let metrics: Vec<Value> = metrics
            .iter()
            .flat_map(|(key, values)| {
                values.iter().enumerate().map(move |(step, value)| {
                    json!({"key": key, "value": value, "timestamp": 1_000 + step as i64, "step": step})
                })
            })
            .collect();
        self.post(
            "runs/log-batch",
            json!({"run_id": run_id, "params": params, "tags": tags}),
        )
        .await;
        // log-batch takes at most 1,000 metrics per call.
        for chunk in metrics.chunks(1000) {
            self.post(
                "runs/log-batch",
                json!({"run_id": run_id, "metrics": chunk}),
            )
            .await;
        }
        self.post(
            "runs/update",
            json!({"run_id": run_id, "status": "FINISHED", "end_time": start_time + 60_000}),
        )
        .await;
        run_id
    }

    /// The server's major version: 2 or 3.
    pub async fn major_version(&self) -> u32 {
        let response = self
            .http
            .get(format!("{}/version", self.base))
            .send()
            .await
            .unwrap();
        let version = response.text().await.unwrap();
        version
            .split('.')
            .next()
            .and_then(|major| major.trim().parse().ok())
            .unwrap_or_else(|| panic!("MLflow's /version said {version:?}"))
    }

    /// Registers a new version of a model logged by the run, as each MLflow
    /// does it: MLflow 3 as a logged model (a `models:/m-…` source), MLflow 2
    /// as the run's `model` artifact folder.
    pub async fn register_version(
        &self,
        model: &str,
        experiment_id: &str,
        run_id: &str,
    ) -> Registered {
        let (source, model_id) = if self.major_version().await >= 3 {
            let logged = self
                .post(
                    "logged-models",
                    json!({"experiment_id": experiment_id, "name": "model", "source_run_id": run_id}),
                )
                .await;
            let model_id = logged["model"]["info"]["model_id"]
                .as_str()
                .unwrap()
                .to_string();
            (format!("models:/{model_id}"), Some(model_id))
        } else {
            let (_, run) = self.get("runs/get", &[("run_id", run_id)]).await;
            let artifacts = run["run"]["info"]["artifact_uri"].as_str().unwrap();
            (format!("{artifacts}/model"), None)
        };
        let mut request = json!({"name": model, "source": &source, "run_id": run_id});
        if let Some(model_id) = &model_id {
            request["model_id"] = json!(model_id);
        }
        let created = self.post("model-versions/create", request).await;
        Registered {
            version: created["model_version"]["version"]
                .as_str()
                .unwrap()
                .to_string(),
            source,
            model_id,
        }
    }

    pub async fn create_registered_model(&self, name: &str) {
        self.post("registered-models/create", json!({"name": name}))
            .await;
    }

    pub async fn transition_stage(&self, model: &str, version: &str, stage: &str) {
        self.post(
            "model-versions/transition-stage",
            json!({"name": model, "version": version, "stage": stage, "archive_existing_versions": false}),
        )
        .await;
    }

    pub async fn set_alias(&self, model: &str, alias: &str, version: &str) {
        self.post(
            "registered-models/alias",
            json!({"name": model, "alias": alias, "version": version}),
        )
        .await;
    }

    /// Uploads a file into a run's artifacts through MLflow's artifact proxy.
    pub async fn upload_artifact(
        &self,
        experiment_id: &str,
        run_id: &str,
        path: &str,
        content: impl AsRef<[u8]>,
    ) {
        self.upload(
            &format!("{experiment_id}/{run_id}/artifacts/{path}"),
            content,
        )
        .await;
    }

    /// Uploads a file into an MLflow 3 logged model's artifacts.
    pub async fn upload_model_artifact(
        &self,
        experiment_id: &str,
        model_id: &str,
        path: &str,
        content: impl AsRef<[u8]>,
    ) {
        self.upload(
            &format!("{experiment_id}/models/{model_id}/artifacts/{path}"),
            content,
        )
        .await;
    }

    async fn upload(&self, path: &str, content: impl AsRef<[u8]>) {
        let response = self
            .http
            .put(format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{path}",
                self.base
            ))
            .body(content.as_ref().to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "upload of {path}: {}",
            response.status()
        );
    }
}

/// An MLflow server of its own, for tests that stop and start one. Started by
/// the same script function as everywhere else; stopped on drop.
pub struct OwnMlflow {
    process_group: u32,
    _dir: tempfile::TempDir,
}

impl OwnMlflow {
    pub fn start(port: u16) -> Self {
        Self::start_as(port, "")
    }

    /// One that requires HTTP basic auth: user `admin` with `admin_password`.
    pub fn start_with_login(port: u16, admin_password: &str) -> Self {
        Self::start_as(port, admin_password)
    }

    fn start_as(port: u16, admin_password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lib = repo_root().join("scripts/lib.sh");
        let output = Command::new("bash")
            .args([
                "-c",
                "source \"$0\" && start_mlflow \"$1\" \"$2\" \"$3\" && echo \"$MLFLOW_PID\"",
            ])
            .arg(&lib)
            .arg(dir.path())
            .arg(port.to_string())
            .arg(admin_password)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "MLflow did not start on port {port}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // start_mlflow runs MLflow as the leader of its own process group.
        let process_group = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        Self {
            process_group,
            _dir: dir,
        }
    }
}

impl OwnMlflow {
    /// SIGSTOP to the server: connections are accepted, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.process_group)])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} MLflow");
    }
}

impl Drop for OwnMlflow {
    fn drop(&mut self) {
        // A frozen server would not act on SIGTERM until thawed.
        let _ = Command::new("kill")
            .args(["-CONT", "--", &format!("-{}", self.process_group)])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.process_group)])
            .status();
    }
}

/// Local model serving as Slipway sets it up, against the suite's MLflow,
/// its servers' logs under `data`.
pub fn local_serving(
    data: &std::path::Path,
) -> std::sync::Arc<server::adapters::serving::local::LocalServing> {
    local_serving_of(&mlflow_url(), data)
}

/// Local serving whose model servers read models from the MLflow at `url`.
pub fn local_serving_of(
    url: &str,
    data: &std::path::Path,
) -> std::sync::Arc<server::adapters::serving::local::LocalServing> {
    std::sync::Arc::new(
        server::adapters::serving::local::LocalServing::new(
            server::adapters::process::ChildEnv::new(
                url,
                &server::adapters::mlflow::MlflowAuth::None,
                &[],
            ),
            data.join("serving"),
            server::adapters::process::Children::open(data.join("children")).unwrap(),
        )
        .unwrap(),
    )
}

/// The serving side of one Slipway in process: the reconciler running
/// over local serving, and the services that change what serves.
pub struct Serving {
    pub reconciler: std::sync::Arc<server::serving::reconciler::Reconciler>,
    pub promotions: std::sync::Arc<server::services::promotions::Promotions>,
    pub deployments: std::sync::Arc<server::services::deployments::Deployments>,
    pub local: std::sync::Arc<server::adapters::serving::local::LocalServing>,
}

/// A running reconciler for the `[[deployment]]` entries in `catalog`, on
/// `store` and the suite's MLflow, polling every `poll_every`.
pub async fn serving(
    store: &server::store::Store,
    data: &std::path::Path,
    catalog: &str,
    poll_every: Duration,
) -> Serving {
    serving_of(&mlflow_url(), store, data, catalog, poll_every).await
}

/// As [`serving`], on the MLflow at `url`.
pub async fn serving_of(
    url: &str,
    store: &server::store::Store,
    data: &std::path::Path,
    catalog: &str,
    poll_every: Duration,
) -> Serving {
    use std::sync::Arc;
    let bindings = server::catalog::Catalog::parse(catalog, std::path::Path::new("."))
        .unwrap()
        .deployments;
    let mlflow = server::adapters::mlflow::MlflowClient::new(
        &url.parse().unwrap(),
        server::adapters::mlflow::MlflowAuth::None,
        Duration::from_secs(20),
    )
    .unwrap();
    let local = local_serving_of(url, data);
    let target = server::adapters::serving::local::LocalTarget::new(local.clone(), None);
    let (reconciler, triggers) = server::serving::reconciler::Reconciler::new(
        mlflow.clone(),
        store.clone(),
        vec![Arc::new(target)],
        server::adapters::lease::Leadership::solo("test"),
    )
    .await
    .unwrap();
    let deployments = Arc::new(server::services::deployments::Deployments::new(
        store.clone(),
        reconciler.clone(),
        (mlflow.clone(), mlflow.clone()),
        server::adapters::serving::caller::ModelCaller::new().unwrap(),
        Default::default(),
    ));
    deployments.seed_from_catalog(&bindings).await.unwrap();
    let promotions = Arc::new(server::services::promotions::Promotions::new(
        store.clone(),
        mlflow.clone(),
        mlflow,
        reconciler.clone(),
        deployments.clone(),
    ));
    let passing = reconciler.clone();
    tokio::spawn(async move {
        let mut triggers = triggers;
        passing.serve(&mut triggers, poll_every).await
    });
    Serving {
        reconciler,
        promotions,
        deployments,
        local,
    }
}

/// Each fixture run starts later than the one before, so "newest first" is
/// the order they were made in.
fn next_start_time() -> i64 {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);
    NEXT.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `key → value` of a run's `data.params` or `data.tags`.
pub fn run_pairs(run: &Value, list: &str) -> std::collections::BTreeMap<String, String> {
    run["data"][list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pair| {
            (
                pair["key"].as_str().unwrap().to_string(),
                pair["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub const TEST_PASSWORD: &str = "correct horse battery";

/// Creates a local account with `role` and signs in through `/login` as a
/// browser would; returns the `Cookie` header value of its session.
pub async fn sign_in(
    router: &axum::Router,
    store: &server::store::Store,
    name: &str,
    role: app::access::Role,
) -> String {
    use tower::ServiceExt;
    let hash =
        tokio::task::spawn_blocking(|| server::services::accounts::password::hash(TEST_PASSWORD))
            .await
            .unwrap();
    store
        .create_account(&server::store::accounts::Account {
            name: name.into(),
            password_hash: Some(hash),
            grants: vec![app::access::Grant::global(role)],
            source: server::store::accounts::AccountSource::Local,
            disabled: false,
            created_ms: 0,
        })
        .await
        .unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("name", name)
        .append_pair("password", TEST_PASSWORD)
        .finish();
    let response = router
        .clone()
        .oneshot(
            axum::http::Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "same-origin")
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// A catalog in `dir` with the test trainer project and a `cpu` profile,
/// then `more` (deployment bindings, say); returns its path.
pub fn trainer_catalog(dir: &std::path::Path, more: &str) -> PathBuf {
    let trainer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trainer");
    let catalog = dir.join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[profile]]\nname = \"cpu\"\ndescription = \"small\"\ncpu = {{ request = \"100m\", limit = \"1\" }}\n\n\
             [[project]]\nname = \"trainer\"\ndirectory = {:?}\n\n{more}",
            trainer.display().to_string()
        ),
    )
    .unwrap();
    catalog
}

/// A new version of a real scikit-learn model that `mlflow models serve`
/// can serve; predicts (x1 + x2) × scale. Its version number.
pub fn register_sklearn_model(model: &str, experiment: &str, scale: f64) -> String {
    register_sklearn_model_in(&mlflow_url(), model, experiment, scale)
}

/// As [`register_sklearn_model`], in the MLflow at `url`.
pub fn register_sklearn_model_in(url: &str, model: &str, experiment: &str, scale: f64) -> String {
    register_by_script(url, model, experiment, &scale.to_string())
}

/// A new version of `model` that fails on every request (a canary to abort).
pub fn register_failing_model(model: &str, experiment: &str) -> String {
    register_by_script(&mlflow_url(), model, experiment, "fail")
}

fn register_by_script(url: &str, model: &str, experiment: &str, scale: &str) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/register_model.py");
    let output = std::process::Command::new("python")
        .arg(script)
        .args([url, model, experiment, scale])
        .output()
        .expect("python with mlflow on PATH (make test puts the venv first)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // MLflow prints links to the run first; the version is the last line.
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A finished run that logged a real scikit-learn model, not registered:
/// the run's id.
pub fn log_sklearn_model(experiment: &str) -> String {
    register_sklearn_model_in(&mlflow_url(), "-", experiment, 1.0)
}

/// Calls `check` until it gives something, or `within` has passed.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
