//! `make bench` (serving part): promote → SeldonDeployment applied (API
//! server simulated behind kube's client) and present on a real API server,
//! and → local model ready, with the real MLflow calls; webhook received →
//! reconcile pass started; and one poll pass over 1,000 registered models:
//! MLflow requests and Slipway's CPU. Prints figures; asserts nothing.
//!
//! Needs BENCH_MLFLOW_URL (a fresh MLflow: it registers 1,000 models),
//! BENCH_KUBECONFIG (the ServiceAccount's), BENCH_KUBE_ADMIN (watches the
//! object appear) and BENCH_KUBE_NAMESPACE for the real API server, and
//! `mlflow` and `python` with scikit-learn on PATH for the local target.

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::access::User;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Full, combinators::BoxBody};
use serde_json::{Value, json};
use server::adapters::mlflow::MlflowAuth;
use server::adapters::mlflow::MlflowClient;
use server::adapters::serving::local::{LocalServing, LocalTarget};
use server::adapters::serving::seldon::SeldonTarget;
use server::catalog::Catalog;
use server::services::promotions::Expected;
use server::serving::target::Trigger;
use server::store::Store;
use support::{BenchCluster, report};
use tokio::sync::mpsc;

const MODELS: usize = 1000;

// One thread: the process's CPU time is then the pass's own.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mlflow_url = std::env::var("BENCH_MLFLOW_URL").expect("BENCH_MLFLOW_URL");
    let mlflow = MlflowClient::new(
        &mlflow_url.parse().unwrap(),
        MlflowAuth::None,
        Duration::from_secs(60),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let rest = |path: &str, body: Value| {
        let http = http.clone();
        let url = format!("{mlflow_url}/api/2.0/mlflow/{path}");
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap()
            );
            response.json::<Value>().await.unwrap()
        }
    };
    let work = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db?mode=rwc", work.path().display()))
        .await
        .unwrap();
    let user = User {
        name: "bench".into(),
        authenticated: true,
        grants: vec![app::access::Grant::global(app::access::Role::Deployer)],
        token: None,
    };
    println!("serving benchmark, MLflow at {mlflow_url}");

    // 1,000 registered models, the first with two versions in the cluster binding.
    let existing = mlflow.all_registered_models().await.unwrap().len();
    for index in existing..MODELS {
        rest(
            "registered-models/create",
            json!({"name": format!("bench-model-{index:04}")}),
        )
        .await;
    }
    let experiment = mlflow.ensure_experiment("serving-bench").await.unwrap();
    for _ in 0..2 {
        let run = mlflow
            .create_run(&experiment, "r", "bench", 0, &[])
            .await
            .unwrap();
        let logged = rest(
            "logged-models",
            json!({"experiment_id": experiment, "name": "model", "source_run_id": run.run_id}),
        )
        .await;
        let model_id = logged["model"]["info"]["model_id"]
            .as_str()
            .unwrap()
            .to_string();
        rest("model-versions/create", json!({"name": "bench-model-0000", "source": format!("models:/{model_id}"), "run_id": run.run_id, "model_id": model_id})).await;
    }

    // One poll pass over 1,000 bound models (nothing in production: nothing to do but read).
    let every: String = (0..MODELS)
        .map(|index| {
            format!("[[deployment]]\nmodel = \"bench-model-{index:04}\"\ntarget = \"local\"\n\n")
        })
        .collect();
    let bindings = Catalog::parse(&every, Path::new(".")).unwrap().deployments;
    let local = Arc::new(
        LocalServing::new(
            server::adapters::process::ChildEnv::new(&mlflow.url(), &MlflowAuth::None, &[]),
            work.path().join("serving"),
            server::adapters::process::Children::open(work.path().join("children")).unwrap(),
        )
        .unwrap(),
    );
    let local_target = || vec![Arc::new(LocalTarget::new(local.clone(), None)) as _];
    let (reconciler, _triggers, _) = serving(&mlflow, &store, &bindings, local_target()).await;
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..30 {
        let cpu_before = process_cpu();
        let started = Instant::now();
        reconciler
            .pass(&Trigger::new("poll", "slipway"))
            .await
            .unwrap();
        wall.push(started.elapsed());
        cpu.push(process_cpu() - cpu_before);
    }
    report(
        "poll pass over 1,000 models: wall time (mostly MLflow's answer)",
        &mut wall,
    );
    report("poll pass over 1,000 models: Slipway CPU", &mut cpu);
    // The same pass through a pass-through proxy that counts MLflow requests.
    let counting = CountingMlflow::start(&mlflow_url).await;
    let counted = MlflowClient::new(
        &counting.url.parse().unwrap(),
        MlflowAuth::None,
        Duration::from_secs(60),
    )
    .unwrap();
    let every_bound = Catalog::parse(&every, Path::new(".")).unwrap().deployments;
    let (counted_reconciler, _, _) = serving(&counted, &store, &every_bound, local_target()).await;
    let mut requests = Vec::new();
    for _ in 0..10 {
        let before = counting.count();
        counted_reconciler
            .pass(&Trigger::new("poll", "slipway"))
            .await
            .unwrap();
        requests.push(counting.count() - before);
    }
    requests.sort();
    println!(
        "poll pass over 1,000 models: MLflow requests per pass: min {} max {}",
        requests[0],
        requests[requests.len() - 1]
    );
    drop(reconciler);

    // Promote → SeldonDeployment applied, against a simulated API server.
    let (applied_tx, mut applied) = mpsc::unbounded_channel::<Instant>();
    let client = kube::Client::new(api_server(applied_tx), "models");
    let seldon_binding = Catalog::parse(
        "[[deployment]]\nmodel = \"bench-model-0000\"\ntarget = \"seldon\"\nnamespace = \"models\"\n\
         artifact_map = [{ from = \"mlflow-artifacts:/\", to = \"s3://bucket/\" }]\n",
        Path::new("."),
    )
    .unwrap()
    .deployments;
    let mut targets = local_target();
    targets.push(Arc::new(SeldonTarget::new(
        client,
        server::config::UnboundObjects::Delete,
        "default",
    )));
    let (seldon, triggers, promotions) = serving(&mlflow, &store, &seldon_binding, targets).await;
    spawn_passes(&seldon, triggers, Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(500)).await;
    while applied.try_recv().is_ok() {}
    let mut promote = Vec::new();
    for round in 0..100 {
        let version = if round % 2 == 0 { "1" } else { "2" };
        let started = Instant::now();
        promotions
            .promote(&user, "bench-model-0000", version, "", Expected::Any)
            .await
            .unwrap();
        let at = tokio::time::timeout(Duration::from_secs(10), applied.recv())
            .await
            .expect("applied")
            .unwrap();
        promote.push(at - started);
        while applied.try_recv().is_ok() {}
    }
    report(
        "promote → SeldonDeployment applied (incl. MLflow transition, audit, read, download URI)",
        &mut promote,
    );

    // Promote → SeldonDeployment present on a real API server, applied as
    // the ServiceAccount deploy/base/rbac.yaml ships; an admin watch sees it.
    let BenchCluster {
        account,
        admin,
        namespace,
    } = BenchCluster::from_env().await;
    let real_binding = Catalog::parse(
        &format!(
            "[[deployment]]\nmodel = \"bench-model-0000\"\ntarget = \"seldon\"\nnamespace = \"{namespace}\"\n\
             artifact_map = [{{ from = \"mlflow-artifacts:/\", to = \"s3://bucket/\" }}]\n"
        ),
        Path::new("."),
    )
    .unwrap()
    .deployments;
    // A store of its own: the simulated run above recorded an object in
    // namespace `models` that this Slipway would rightly try to clean up.
    let real_store = Store::connect(&format!(
        "sqlite://{}/real.db?mode=rwc",
        work.path().display()
    ))
    .await
    .unwrap();
    let mut targets = local_target();
    targets.push(Arc::new(SeldonTarget::new(
        account,
        server::config::UnboundObjects::Delete,
        "default",
    )));
    let (real, triggers, real_promotions) =
        serving(&mlflow, &real_store, &real_binding, targets).await;
    spawn_passes(&real, triggers, Duration::from_secs(3600));
    let (served_tx, mut served) = mpsc::unbounded_channel::<(String, Instant)>();
    let watched: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        admin,
        &namespace,
        &server::adapters::serving::seldon::api_resource(),
    );
    tokio::spawn(async move {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let mut objects =
            std::pin::pin!(watcher::watcher(watched, Default::default()).applied_objects());
        while let Some(Ok(object)) = objects.next().await {
            let version = object
                .metadata
                .labels
                .and_then(|labels| {
                    labels
                        .get(server::adapters::serving::objects::VERSION_LABEL)
                        .cloned()
                })
                .unwrap_or_default();
            let _ = served_tx.send((version, Instant::now()));
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut present = Vec::new();
    for round in 0..100 {
        let version = if round % 2 == 0 { "1" } else { "2" };
        while served.try_recv().is_ok() {}
        let started = Instant::now();
        real_promotions
            .promote(&user, "bench-model-0000", version, "", Expected::Any)
            .await
            .unwrap();
        let at = loop {
            let (seen, at) = tokio::time::timeout(Duration::from_secs(10), served.recv())
                .await
                .expect("the object within 10 s")
                .unwrap();
            if seen == version {
                break at;
            }
        };
        present.push(at - started);
    }
    report(
        "promote → SeldonDeployment present on a real API server 1.20 (same steps; watched by an admin)",
        &mut present,
    );

    // Deleted outside Slipway → re-created: on the watch event (the
    // leader's watch of its objects), then by the 5 s poll alone.
    let name = server::catalog::dns_name("bench-model-0000");
    let objects: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        BenchCluster::from_env().await.admin,
        &namespace,
        &server::adapters::serving::seldon::api_resource(),
    );
    let watching = real.clone();
    let watch = tokio::spawn(async move { watching.watch_targets().await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut on_event = recreations(&objects, &name, &mut served, 30).await;
    report(
        "SeldonDeployment deleted → re-created, watch-driven (real API server)",
        &mut on_event,
    );
    watch.abort();
    let polling = real.clone();
    let poll = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = polling.pass(&Trigger::new("poll", "slipway")).await;
        }
    });
    let mut on_poll = recreations(&objects, &name, &mut served, 10).await;
    report(
        "SeldonDeployment deleted → re-created, by the 5 s poll alone (before the watch)",
        &mut on_poll,
    );
    poll.abort();

    // Webhook received → reconcile pass started, in process.
    let mut passes = seldon.subscribe_passes();
    let mut woke = Vec::new();
    for _ in 0..50 {
        // Let the previous pass finish: a trigger during a pass waits for it
        // (and is served by the next one).
        tokio::time::sleep(Duration::from_millis(600)).await;
        passes.borrow_and_update();
        let started = Instant::now();
        seldon.trigger(Trigger::new("webhook", "mlflow"));
        passes.changed().await.unwrap();
        woke.push(started.elapsed());
    }
    report(
        "webhook accepted → reconcile pass started (no pass running)",
        &mut woke,
    );

    // Promote → local model ready: real `mlflow models serve`.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/register_model.py");
    let mut registered = Vec::new();
    for scale in [1.0, 2.0] {
        let output = std::process::Command::new("python")
            .arg(&script)
            .args([
                &mlflow_url,
                "bench-served",
                "serving-bench",
                &scale.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        registered.push(stdout.lines().last().unwrap().trim().to_string());
    }
    let bound = Catalog::parse(
        "[[deployment]]\nmodel = \"bench-served\"\ntarget = \"local\"\n",
        Path::new("."),
    )
    .unwrap()
    .deployments;
    let (served, triggers, served_promotions) =
        serving(&mlflow, &store, &bound, local_target()).await;
    spawn_passes(&served, triggers, Duration::from_secs(3600));
    let mut ready = Vec::new();
    for round in 0..4 {
        let version = registered[round % 2].clone();
        let started = Instant::now();
        served_promotions
            .promote(&user, "bench-served", &version, "", Expected::Any)
            .await
            .unwrap();
        loop {
            let view = served.view("bench-served").unwrap();
            if view.serving_version.as_deref() == Some(version.as_str())
                && view.state == "Available"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready.push(started.elapsed());
    }
    report(
        "promote → local model ready (mlflow models serve answering /ping)",
        &mut ready,
    );
    local.stop_all().await;
}

fn process_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let time =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}

/// A pass-through to MLflow that counts requests.
struct CountingMlflow {
    url: String,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingMlflow {
    async fn start(target: &str) -> Self {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_end_matches('/').to_string();
        let counter = count.clone();
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let target = target.clone();
            let client = client.clone();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let uri = request
                    .uri()
                    .path_and_query()
                    .map(|pq| pq.to_string())
                    .unwrap_or_default();
                let method = request.method().clone();
                let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let response = client
                    .request(method, format!("{target}{uri}"))
                    .body(body)
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (status, response.bytes().await.unwrap())
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, count }
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// GET → 404 (not there yet, or whatever), PATCH → applied; reports when a PATCH lands.
fn api_server(
    applied: mpsc::UnboundedSender<Instant>,
) -> impl tower::Service<
    Request<kube::client::Body>,
    Response = Response<BoxBody<Bytes, Infallible>>,
    Error = Infallible,
    Future = impl Send,
> + Send
+ Clone {
    tower::service_fn(move |request: Request<kube::client::Body>| {
        let applied = applied.clone();
        async move {
            let body = if request.method() == http::Method::PATCH {
                let _ = applied.send(Instant::now());
                let sent = request.into_body().collect_bytes().await.unwrap();
                let mut object: Value = serde_json::from_slice(&sent).unwrap();
                object["metadata"]["uid"] = json!("b");
                object["metadata"]["resourceVersion"] = json!("2");
                object["status"] = json!({"state": "Available"});
                return Ok(Response::builder()
                    .status(200)
                    .body(full(serde_json::to_vec(&object).unwrap()))
                    .unwrap());
            } else {
                full(serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})).unwrap())
            };
            Ok(Response::builder().status(404).body(body).unwrap())
        }
    })
}

fn full(bytes: Vec<u8>) -> BoxBody<Bytes, Infallible> {
    BoxBody::new(Full::new(Bytes::from(bytes)))
}

/// A reconciler over `targets` for `bindings` (seeded as the catalog's),
/// not yet running, and the promotions that change what it serves.
pub async fn serving(
    mlflow: &server::adapters::mlflow::MlflowClient,
    store: &server::store::Store,
    bindings: &[server::catalog::DeploymentBinding],
    targets: Vec<std::sync::Arc<dyn server::serving::target::Target>>,
) -> (
    std::sync::Arc<server::serving::reconciler::Reconciler>,
    tokio::sync::mpsc::UnboundedReceiver<server::serving::target::Trigger>,
    std::sync::Arc<server::services::promotions::Promotions>,
) {
    use std::sync::Arc;
    let (reconciler, triggers) = server::serving::reconciler::Reconciler::new(
        mlflow.clone(),
        store.clone(),
        targets,
        server::adapters::lease::Leadership::solo("bench"),
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
    deployments.seed_from_catalog(bindings).await.unwrap();
    let promotions = Arc::new(server::services::promotions::Promotions::new(
        store.clone(),
        mlflow.clone(),
        mlflow.clone(),
        reconciler.clone(),
        deployments,
    ));
    (reconciler, triggers, promotions)
}

/// Passes on triggers, as the leader runs them.
fn spawn_passes(
    reconciler: &std::sync::Arc<server::serving::reconciler::Reconciler>,
    mut triggers: tokio::sync::mpsc::UnboundedReceiver<server::serving::target::Trigger>,
    poll_every: Duration,
) {
    let reconciler = reconciler.clone();
    tokio::spawn(async move { reconciler.serve(&mut triggers, poll_every).await });
}

/// Deletes the object `rounds` times (as an admin), each time timing until
/// the admin watch sees it again.
async fn recreations(
    objects: &kube::Api<kube::api::DynamicObject>,
    name: &str,
    seen: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    rounds: usize,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(300)).await;
        while seen.try_recv().is_ok() {}
        let deleted = Instant::now();
        objects
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .unwrap();
        let (_, at) = tokio::time::timeout(Duration::from_secs(20), seen.recv())
            .await
            .expect("re-created within 20 s")
            .unwrap();
        samples.push(at - deleted);
    }
    samples
}
