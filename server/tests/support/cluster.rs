//! The real Kubernetes API server `make test` starts (scripts/kube.sh), a
//! namespace per test with `deploy/rbac.yaml` applied as a cluster admin
//! would, and Slipway run as the binary, with that ServiceAccount's token:
//! never as admin. The admin client plays the people and controllers that
//! are not there: someone deleting a Job, the kubelet reporting a pod's
//! state, Seldon's operator reporting a deployment's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{free_port, repo_root, required_env, unique};

pub fn admin_kubeconfig() -> PathBuf {
    PathBuf::from(required_env("SLIPWAY_TEST_KUBE_ADMIN"))
}

pub async fn admin_client() -> Client {
    let file = Kubeconfig::read_from(admin_kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn create_namespace(admin: &Client, name: &str) {
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

/// A namespace of its own, with what `deploy/rbac.yaml` grants Slipway's
/// ServiceAccount there.
pub struct TestNamespace {
    pub name: String,
    pub admin: Client,
    /// Slipway's ServiceAccount's kubeconfig (its token, the cluster's CA).
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let admin = admin_client().await;
        let name = unique(prefix);
        create_namespace(&admin, &name).await;
        let text = std::fs::read_to_string(repo_root().join("deploy/rbac.yaml")).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document).unwrap();
            match object["kind"].as_str().unwrap() {
                "ServiceAccount" => create::<ServiceAccount>(&admin, &name, object).await,
                "Role" => create::<Role>(&admin, &name, object).await,
                "RoleBinding" => create::<RoleBinding>(&admin, &name, object).await,
                other => panic!("deploy/rbac.yaml holds a {other} the test does not apply"),
            }
        }
        let token = service_account_token(&admin, &name, "slipway").await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("slipway.kubeconfig");
        std::fs::write(&kubeconfig, token_kubeconfig(&token, &name)).unwrap();
        Self {
            name,
            admin,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Removes the namespace's pods at once: with no kubelet, a deleted pod
    /// stays Terminating (holding its share of the one node) until forced.
    pub async fn release_node(&self) {
        let pods = self.api::<k8s_openapi::api::core::v1::Pod>();
        let force = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete_collection(&force, &Default::default())
            .await
            .unwrap();
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.name)
    }

    /// PATCHes an object's status subresource, as its controller would.
    pub async fn patch_status<K>(&self, name: &str, status: Value)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }
}

async fn create<K>(admin: &Client, namespace: &str, object: Value)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Kubernetes 1.20 still gives every ServiceAccount a token Secret, once
/// the token controller has made it.
async fn service_account_token(admin: &Client, namespace: &str, account: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let token = eventually(Duration::from_secs(30), || async {
        let account = accounts.get(account).await.ok()?;
        let secret_name = account.secrets?.first()?.name.clone()?;
        let secret = secrets.get(&secret_name).await.ok()?;
        let token = secret.data?.get("token")?.0.clone();
        Some(String::from_utf8(token).unwrap())
    })
    .await;
    token.unwrap_or_else(|| panic!("no token for {namespace}/{account} within 30 s"))
}

fn token_kubeconfig(token: &str, namespace: &str) -> String {
    let admin = Kubeconfig::read_from(admin_kubeconfig()).unwrap();
    let cluster = admin.clusters[0].cluster.as_ref().unwrap();
    let ca_path = cluster.certificate_authority.as_ref().unwrap();
    serde_json::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster.server.as_ref().unwrap(),
            "certificate-authority": ca_path,
        }}],
        "users": [{"name": "slipway", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "slipway", "namespace": namespace}}],
        "current-context": "test",
    }))
    .unwrap()
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

/// The Slipway binary, as an operator runs it: SLIPWAY_* variables, the
/// ServiceAccount's kubeconfig, a data directory that survives restarts.
/// Killed when dropped.
pub struct Slipway {
    child: tokio::process::Child,
    pub url: String,
    log: PathBuf,
    http: reqwest::Client,
}

pub struct SlipwaySettings<'a> {
    pub namespace: &'a TestNamespace,
    pub catalog: &'a Path,
    pub data_dir: &'a Path,
    pub mlflow_url: String,
    pub extra_env: Vec<(&'a str, String)>,
}

impl Slipway {
    pub async fn start(settings: SlipwaySettings<'_>) -> Self {
        match Self::try_start(settings).await {
            Ok(slipway) => slipway,
            Err(log) => panic!("Slipway did not start:\n{log}"),
        }
    }

    /// Started and answering, or what it wrote before it exited.
    pub async fn try_start(settings: SlipwaySettings<'_>) -> Result<Self, String> {
        let port = free_port();
        let log = settings.data_dir.join(format!("slipway-{port}.log"));
        std::fs::create_dir_all(settings.data_dir).unwrap();
        let output = std::fs::File::create(&log).unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,server=debug")
            .env("SLIPWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLIPWAY_MLFLOW_URI", &settings.mlflow_url)
            .env("SLIPWAY_DATA_DIR", settings.data_dir)
            .env("SLIPWAY_EXECUTOR", "kubernetes")
            .env("SLIPWAY_KUBECONFIG", &settings.namespace.kubeconfig)
            .env("SLIPWAY_KUBE_NAMESPACE", &settings.namespace.name)
            .env("SLIPWAY_CATALOG", settings.catalog)
            .env("SLIPWAY_RECONCILE_POLL_SECS", "1")
            .env("SLIPWAY_SITE_ROOT", settings.data_dir.join("site"))
            .envs(settings.extra_env)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if http
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                return Ok(Self {
                    child,
                    url,
                    log,
                    http,
                });
            }
            assert!(
                Instant::now() < deadline,
                "Slipway did not answer within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash would: nothing of Slipway's shutdown runs.
    pub async fn crash(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A form POST as the browser sends it; returns the `Location` it
    /// redirects to.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> String {
        let response = self.post(path, fields).await;
        assert_eq!(
            response.status(),
            reqwest::StatusCode::SEE_OTHER,
            "POST {path}: {}",
            response.text().await.unwrap_or_default()
        );
        response.headers()["location"].to_str().unwrap().to_string()
    }

    /// Calls a server function the way the hydrated UI does.
    pub async fn server_fn<T: DeserializeOwned>(&self, path: &str, fields: &[(&str, &str)]) -> T {
        let response = self.post(path, fields).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{path}: {err}: {body}"))
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// A server-sent events stream, read as the browser's EventSource does.
    pub async fn events(&self, path: &str) -> EventStream {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        EventStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }
}

pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl EventStream {
    /// The next (event name, data); None when the stream has ended.
    pub async fn next(&mut self) -> Option<(String, String)> {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
                    }
                }
                if data.is_empty() && name == "message" {
                    continue; // a keep-alive comment
                }
                return Some((name, data.join("\n")));
            }
            let chunk = self.body.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until an event matches; panics with what came instead.
    pub async fn until(
        &mut self,
        within: Duration,
        wanted: impl Fn(&(String, String)) -> bool,
    ) -> (String, String) {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(within, async {
            while let Some(event) = self.next().await {
                if wanted(&event) {
                    return Some(event);
                }
                seen.push(event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => event,
            _ => panic!("no such event within {within:?}; saw {seen:?}"),
        }
    }

    /// Everything until the `end` event (excluded).
    pub async fn until_end(&mut self, within: Duration) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let ended = tokio::time::timeout(within, async {
            while let Some(event) = self.next().await {
                if event.0 == "end" {
                    return true;
                }
                seen.push(event);
            }
            false
        })
        .await;
        assert_eq!(
            ended,
            Ok(true),
            "the stream did not end with `end`: {seen:?}"
        );
        seen
    }
}
