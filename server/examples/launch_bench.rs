//! `make bench` (launch part): how long a launch takes from submit until the
//! Job is created (Kubernetes executor: API server simulated over kube's
//! mock-able transport, and a real one) or the process has started (local
//! executor), with the real MLflow calls; and how long a status change takes
//! to reach a launch page's event stream over HTTP. Prints figures; asserts
//! nothing.
//!
//! Needs BENCH_MLFLOW_URL, and for the real API server BENCH_KUBECONFIG (the
//! ServiceAccount's), BENCH_KUBE_ADMIN (plays the kubelet) and
//! BENCH_KUBE_NAMESPACE. BENCH_LAUNCHES sets the sample size (default 200).

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use app::access::User;
use app::model::{LaunchRequest, LaunchStatus};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use http::{Request, Response};
use http_body_util::{StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use server::adapters::executor::Executor;
use server::adapters::executor::kubernetes::{JobSettings, KubernetesExecutor};
use server::adapters::executor::local::LocalExecutor;
use server::adapters::mlflow::MlflowAuth;
use server::adapters::mlflow::MlflowClient;
use server::catalog::Catalog;
use server::config::Config;
use server::metrics::Metrics;
use server::services::launches::Launches;
use server::store::Store;
use server::web::router;
use support::{BenchCluster, report};
use tokio::sync::mpsc;

type WatchFeed = Arc<Mutex<Option<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>>>;

#[tokio::main]
async fn main() {
    let mlflow_url = std::env::var("BENCH_MLFLOW_URL").expect("BENCH_MLFLOW_URL");
    let launches: usize = std::env::var("BENCH_LAUNCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("bench-project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("MLproject"),
        "docker_env:\n  image: registry.example.com/bench:1\nentry_points:\n  \
         main:\n    parameters: {alpha: float, l1_ratio: {type: float, default: 0.1}}\n    command: \"true {alpha} {l1_ratio}\"\n  \
         timed:\n    parameters: {delay: float}\n    command: \"python3 timed_exit.py {delay}\"\n",
    )
    .unwrap();
    std::fs::write(
        project.join("timed_exit.py"),
        "import sys, time\ntime.sleep(float(sys.argv[1]))\nprint(time.time_ns(), flush=True)\n",
    )
    .unwrap();
    let catalog = Arc::new(
        Catalog::parse(
            "[[profile]]\nname = \"gpu-1\"\ncpu = { request = \"4\", limit = \"8\" }\ngpu = { request = 1 }\n\n\
             [[profile]]\nname = \"tiny\"\ncpu = { request = \"10m\" }\nmemory = { request = \"16Mi\" }\n\n\
             [[project]]\nname = \"bench\"\ndirectory = \"bench-project\"\n",
            work.path(),
        )
        .unwrap(),
    );
    let mlflow = MlflowClient::new(
        &mlflow_url.parse().unwrap(),
        MlflowAuth::None,
        Duration::from_secs(30),
    )
    .unwrap();
    let experiment_id = mlflow
        .ensure_experiment("slipway-launch-bench")
        .await
        .unwrap();
    println!("launch benchmark: {launches} launches per executor, MLflow at {mlflow_url}");

    // Kubernetes executor over a simulated API server.
    let feed: WatchFeed = Arc::default();
    let client = kube::Client::new(api_server(feed.clone()), "bench");
    let kube = Arc::new(KubernetesExecutor::new(
        client,
        JobSettings {
            namespace: "bench".into(),
            tracking_uri: mlflow_url.clone(),
            ttl_seconds_after_finished: 600,
            service_account: None,
            mlflow_secret: None,
            git_image: "alpine/git:2.47.2".into(),
        },
    ));
    let (sink, reports) = mpsc::unbounded_channel();
    let watching = kube.clone();
    tokio::spawn(async move { watching.watch_status(sink).await });
    let (kube_launcher, kube_url, kube_cookie) = serve(
        work.path().join("kube"),
        &mlflow,
        catalog.clone(),
        kube,
        reports,
    )
    .await;
    let request = |entry: &str, params: &[(&str, &str)], profile: &str| LaunchRequest {
        submission: uuid::Uuid::new_v4().to_string(),
        project: "bench".into(),
        entry_point: entry.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        experiment_id: experiment_id.clone(),
        new_experiment: String::new(),
        profile: profile.into(),
        run_name: String::new(),
        env_manager: String::new(),
        commit: String::new(),
    };
    let user = User {
        name: "bench".into(),
        authenticated: true,
        grants: vec![app::access::Grant::global(app::access::Role::Trainer)],
        token: None,
    };

    let (mut submit, ids) = submit_many(&kube_launcher, &user, launches, || {
        request("main", &[("alpha", "0.5")], "gpu-1")
    })
    .await;
    report(
        "kubernetes: submit → Job created (incl. MLflow run + params)",
        &mut submit,
    );

    let mut visible = Vec::new();
    for id in ids.iter().take(launches.min(50)) {
        let mut events = EventStream::open(
            &format!("{kube_url}/api/launches/{id}/events"),
            &kube_cookie,
        )
        .await;
        events.until_status(|status| status == "Pending").await;
        let pod = json!({"type": "MODIFIED", "object": finished_pod(id)});
        let sent = Instant::now();
        send_watch_event(&feed, &pod);
        events.until_status(|status| status == "Succeeded").await;
        visible.push(sent.elapsed());
    }
    report(
        "kubernetes: pod's end from the API server → status on the launch page's stream",
        &mut visible,
    );

    // Kubernetes executor against a real API server (1.20.2, no kubelet:
    // the admin client reports the pod's end as a kubelet would), as the
    // ServiceAccount deploy/base/rbac.yaml ships.
    let BenchCluster {
        account,
        admin,
        namespace,
    } = BenchCluster::from_env().await;
    let real = Arc::new(KubernetesExecutor::new(
        account,
        JobSettings {
            namespace: namespace.clone(),
            tracking_uri: mlflow_url.clone(),
            ttl_seconds_after_finished: 600,
            service_account: None,
            mlflow_secret: None,
            git_image: "alpine/git:2.47.2".into(),
        },
    ));
    let (sink, reports) = mpsc::unbounded_channel();
    let watching = real.clone();
    tokio::spawn(async move { watching.watch_status(sink).await });
    let (real_launcher, real_url, real_cookie) = serve(
        work.path().join("real"),
        &mlflow,
        catalog.clone(),
        real,
        reports,
    )
    .await;
    let real_launches = launches.min(100);
    let (mut submit, ids) = submit_many(&real_launcher, &user, real_launches, || {
        request("main", &[("alpha", "0.5")], "tiny")
    })
    .await;
    report(
        "kubernetes, real API server 1.20: submit → Job created (incl. MLflow run + params)",
        &mut submit,
    );
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(admin, &namespace);
    let mut visible = Vec::new();
    for id in ids.iter().take(20) {
        let pod = loop {
            let listed = pods
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("slipway.dev/launch-id={id}")),
                )
                .await
                .unwrap();
            if let Some(pod) = listed.items.into_iter().next() {
                break pod.metadata.name.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut events = EventStream::open(
            &format!("{real_url}/api/launches/{id}/events"),
            &real_cookie,
        )
        .await;
        events.until_status(|status| status == "Pending").await;
        let exited = json!({"status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "training", "ready": false, "restartCount": 0, "image": "img", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "startedAt": "2026-11-30T00:00:00Z", "finishedAt": "2026-11-30T00:00:01Z"}}}]}});
        let sent = Instant::now();
        pods.patch_status(
            &pod,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&exited),
        )
        .await
        .unwrap();
        events.until_status(|status| status == "Succeeded").await;
        visible.push(sent.elapsed());
    }
    report(
        "kubernetes, real API server 1.20: pod's end reported → status on the launch page's stream",
        &mut visible,
    );

    // Local executor: real processes.
    let (sink, reports) = mpsc::unbounded_channel();
    let local = Arc::new(
        LocalExecutor::new(
            work.path().join("logs"),
            server::adapters::process::ChildEnv::new(&mlflow_url, &MlflowAuth::None, &[]),
            sink,
            server::adapters::process::Children::open(work.path().join("children")).unwrap(),
        )
        .unwrap(),
    );
    let (local_launcher, local_url, local_cookie) = serve(
        work.path().join("local"),
        &mlflow,
        catalog.clone(),
        local,
        reports,
    )
    .await;
    let mut submit = Vec::new();
    for _ in 0..launches {
        let started = Instant::now();
        let launch = local_launcher
            .submit(&user, &request("main", &[("alpha", "0.5")], "gpu-1"))
            .await
            .unwrap();
        submit.push(started.elapsed());
        assert!(
            matches!(
                launch.status,
                LaunchStatus::Pending | LaunchStatus::Running | LaunchStatus::Succeeded
            ),
            "{}",
            launch.reason
        );
    }
    report(
        "local: submit → process started (incl. MLflow run + params)",
        &mut submit,
    );

    let mut visible = Vec::new();
    for _ in 0..launches.min(30) {
        let launch = local_launcher
            .submit(&user, &request("timed", &[("delay", "0.3")], "gpu-1"))
            .await
            .unwrap();
        let mut events = EventStream::open(
            &format!("{local_url}/api/launches/{}/events", launch.id),
            &local_cookie,
        )
        .await;
        let (exit_printed_ns, received_ns) = events.until_exit_and_success().await;
        visible.push(Duration::from_nanos(
            received_ns.saturating_sub(exit_printed_ns),
        ));
    }
    report(
        "local: process exit (last output) → status on the launch page's stream",
        &mut visible,
    );
}

/// Submits `count` launches one after the other; their submit times and
/// ids. A Kubernetes launch is `pending` once its Job is created.
async fn submit_many(
    launcher: &Launches,
    user: &User,
    count: usize,
    request: impl Fn() -> LaunchRequest,
) -> (Vec<Duration>, Vec<String>) {
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        let launch = launcher.submit(user, &request()).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(launch.status, LaunchStatus::Pending, "{}", launch.reason);
        ids.push(launch.id);
    }
    (times, ids)
}

async fn serve(
    data: std::path::PathBuf,
    mlflow: &MlflowClient,
    catalog: Arc<Catalog>,
    executor: Arc<dyn Executor>,
    reports: mpsc::UnboundedReceiver<server::adapters::executor::ExecutorEvent>,
) -> (Arc<Launches>, String, String) {
    std::fs::create_dir_all(&data).unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", data.display()))
        .await
        .unwrap();
    let config = Config::try_parse_from(["slipway", "--data-dir", data.to_str().unwrap()]).unwrap();
    // No bindings: the reconciler stays idle.
    let metrics = Metrics::new();
    let local = server::adapters::serving::local::LocalServing::new(
        server::adapters::process::ChildEnv::new(&mlflow.url(), &MlflowAuth::None, &[]),
        data.join("serving"),
        server::adapters::process::Children::open(data.join("children")).unwrap(),
    )
    .unwrap();
    let state = server::assemble(
        &config,
        server::Parts {
            store: store.clone(),
            mlflow: mlflow.clone(),
            mlflow_for_pages: mlflow.clone(),
            traffic: Arc::new(server::traffic::Traffic::new(
                metrics.clone(),
                None,
                std::time::Duration::from_secs(60),
            )),
            metrics,
            catalog,
            executor,
            reports,
            targets: vec![Arc::new(
                server::adapters::serving::local::LocalTarget::new(Arc::new(local), None),
            )],
            leadership: server::adapters::lease::Leadership::solo("bench"),
        },
    )
    .await
    .unwrap();
    // The launch pages' events need a session, as in a browser.
    store
        .create_account(&server::store::accounts::Account {
            name: "bench".into(),
            password_hash: None,
            grants: vec![app::access::Grant::global(app::access::Role::Trainer)],
            source: server::store::accounts::AccountSource::Local,
            disabled: false,
            created_ms: 0,
        })
        .await
        .unwrap();
    let cookie = format!(
        "{}={}",
        server::web::gate::SESSION_COOKIE,
        state.gate.accounts.open_session("bench").await.unwrap()
    );
    let launcher = state.services.launches.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    (launcher, url, cookie)
}

/// Answers like an API server: creates Jobs, lists nothing, and streams
/// watch events the benchmark feeds in.
fn api_server(
    feed: WatchFeed,
) -> impl tower::Service<
    Request<kube::client::Body>,
    Response = Response<BoxBody<Bytes, Infallible>>,
    Error = Infallible,
    Future = impl Send,
> + Send
+ Clone {
    tower::service_fn(move |request: Request<kube::client::Body>| {
        let feed = feed.clone();
        async move {
            let watch = request
                .uri()
                .query()
                .unwrap_or_default()
                .contains("watch=true");
            let path = request.uri().path().to_string();
            let body: BoxBody<Bytes, Infallible> = if request.method() == http::Method::POST {
                let sent = request.into_body().collect_bytes().await.unwrap();
                let mut job: Value = serde_json::from_slice(&sent).unwrap();
                job["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                job["metadata"]["resourceVersion"] = json!("2");
                return Ok(Response::builder()
                    .status(201)
                    .body(full(serde_json::to_vec(&job).unwrap()))
                    .unwrap());
            } else if !watch {
                let kind = if path.ends_with("/jobs") {
                    "JobList"
                } else {
                    "PodList"
                };
                full(serde_json::to_vec(&json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})).unwrap())
            } else {
                let (sender, receiver) = mpsc::unbounded_channel();
                if path.ends_with("/pods") {
                    *feed.lock().unwrap() = Some(sender);
                } else {
                    // Jobs and events: an open, quiet watch.
                    std::mem::forget(sender);
                }
                BoxBody::new(StreamBody::new(
                    tokio_stream::wrappers::UnboundedReceiverStream::new(receiver),
                ))
            };
            Ok(Response::builder().status(200).body(body).unwrap())
        }
    })
}

fn full(bytes: Vec<u8>) -> BoxBody<Bytes, Infallible> {
    BoxBody::new(http_body_util::Full::new(Bytes::from(bytes)))
}

fn send_watch_event(feed: &WatchFeed, event: &Value) {
    let line = format!("{event}\n");
    let sender = feed
        .lock()
        .unwrap()
        .clone()
        .expect("the watcher is watching");
    sender.send(Ok(Frame::data(Bytes::from(line)))).unwrap();
}

/// The kubelet's report of a training that exited with code 0.
fn finished_pod(launch_id: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-{}-x", &launch_id[..12]), "namespace": "bench", "resourceVersion": "3",
                     "labels": {"slipway.dev/launch-id": launch_id, "app.kubernetes.io/managed-by": "slipway"}},
        "spec": {"containers": [{"name": "training", "image": "img"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "training", "ready": false, "restartCount": 0, "image": "img", "imageID": "",
            "state": {"terminated": {"exitCode": 0}}}]}
    })
}

/// A launch page's server-sent events, read as the browser would.
struct EventStream {
    chunks: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: String,
}

impl EventStream {
    async fn open(url: &str, cookie: &str) -> Self {
        let response = reqwest::Client::new()
            .get(url)
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        Self {
            chunks: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event as (name, data).
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = value.to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_string());
                    }
                }
                if !name.is_empty() {
                    return (name, data.join("\n"));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.chunks.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream is open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn until_status(&mut self, wanted: impl Fn(&str) -> bool) {
        loop {
            let (name, data) = self.next().await;
            if name == "status" {
                let update: Value = serde_json::from_str(&data).unwrap();
                if wanted(update["status"].as_str().unwrap()) {
                    return;
                }
            }
        }
    }

    /// The exit time the process printed, and when `Succeeded` arrived.
    async fn until_exit_and_success(&mut self) -> (u64, u64) {
        let mut printed = None;
        loop {
            let (name, data) = self.next().await;
            if name == "log"
                && let Some(ns) = data
                    .lines()
                    .find_map(|line| line.trim().parse::<u64>().ok())
            {
                printed = Some(ns);
            }
            if name == "status" && data.contains("\"Succeeded\"") {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64;
                // The log may trail the status; read it to the end.
                while printed.is_none() {
                    let (name, data) = self.next().await;
                    if name == "log" {
                        printed = data
                            .lines()
                            .find_map(|line| line.trim().parse::<u64>().ok());
                    }
                }
                return (printed.unwrap(), now);
            }
        }
    }
}
