//! Slipway's server: the control plane behind the UI, and the `slipway`
//! binary. `build_state` wires it together from the configuration:
//! adapters, the store, the serving loop and the use-case services.

pub mod adapters;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod duties;
pub mod error;
pub mod metrics;
pub mod services;
pub mod serving;
pub mod store;
pub mod telemetry;
pub mod traffic;
pub mod web;

use std::sync::Arc;

use leptos::prelude::LeptosOptions;

use crate::adapters::executor::kubernetes::{JobSettings, KubernetesExecutor};
use crate::adapters::executor::local::LocalExecutor;
use crate::adapters::executor::{Executor, ExecutorEvent};
use crate::adapters::lease::{self, Leadership};
use crate::adapters::mlflow::MlflowClient;
use crate::adapters::mlflow::cache::ReadCache;
use crate::adapters::mlflow::webhook::{self, Verifier};
use crate::adapters::serving::caller::ModelCaller;
use crate::adapters::serving::kserve::KserveTarget;
use crate::adapters::serving::local::{LocalServing, LocalTarget};
use crate::adapters::serving::seldon::SeldonTarget;
use crate::adapters::serving::seldon_core2::SeldonCore2Target;
use crate::adapters::{cluster, oidc, process};
use crate::catalog::Catalog;
use crate::config::{Config, Executor as ExecutorKind};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::services::Services;
use crate::services::accounts::Accounts;
use crate::services::deployments::Deployments;
use crate::services::launches::Launches;
use crate::services::load_tests::LoadTests;
use crate::services::promotions::Promotions;
use crate::services::reads::Reads;
use crate::services::registry::Registry;
use crate::serving::reconciler::Reconciler;
use crate::serving::target::Target;
use crate::store::Store;
use crate::traffic::Traffic;
use crate::web::AppState;
use crate::web::gate::Gate;
use crate::web::gateway::Gateway;

/// Everything the server needs, built from the configuration. MLflow need
/// not be up: Slipway starts anyway and reports it on `/readyz` and in the UI.
pub async fn build_state(config: &Config) -> Result<AppState> {
    config.validate()?;
    keep_data_dir_private(&config.data_dir, config.child_user.is_some())?;
    if let Some(user) = config.child_user {
        give_children_a_home(&config.child_home(), user)?;
    } else if nix::unistd::geteuid().is_root() {
        tracing::warn!(
            "Slipway runs as root and so would its local trainings and model servers (they could write its database): set --child-user"
        );
    }
    let store = Store::connect(&config.database_url()).await?;
    let mlflow_client = |deadline| {
        MlflowClient::new(&config.mlflow_base(), config.mlflow_auth(), deadline)
            .map_err(|err| Error::Config(format!("MLflow client: {err}")))
    };
    let metrics = Metrics::new();
    // Background work may wait; what a page waits on may not.
    // Pages read through the cache; background work reads MLflow as it is.
    // Both clients' writes drop what the cache kept.
    let reads = Arc::new(ReadCache::new(config.mlflow_cache()));
    let mlflow = mlflow_client(config.mlflow_timeout())?
        .observed_by(metrics.clone())
        .invalidating(reads.clone());
    let mlflow_for_pages = mlflow_client(config.page_deadline())?
        .observed_by(metrics.clone())
        .reading_through(reads);
    let catalog = match config.catalog.clone() {
        // Projects from git are fetched as it is read: off the runtime's threads.
        Some(path) => {
            let checkouts = config.data_dir.join("git");
            tokio::task::spawn_blocking(move || Catalog::load(&path, Some(&checkouts)))
                .await
                .map_err(|err| Error::Internal(format!("reading the catalog: {err}")))??
        }
        None => Catalog::default(),
    };
    // Before anything of this Slipway's starts: what a killed one left.
    let children = process::Children::open(config.data_dir.join("children"))?;
    let leftovers = match children.stop_leftovers().await {
        Ok(leftovers) => {
            if leftovers.stopped > 0 {
                tracing::warn!(
                    stopped = leftovers.stopped,
                    "stopped what a previous Slipway left running"
                );
            }
            leftovers.serving
        }
        Err(err) => {
            tracing::warn!(error = %err, "reading the child processes a previous Slipway recorded");
            Vec::new()
        }
    };
    let (sink, reports) = tokio::sync::mpsc::unbounded_channel();
    let kube_client = match config.executor {
        ExecutorKind::Kubernetes => {
            let client = cluster::connect(config.kubeconfig.as_deref()).await?;
            cluster::check_version(&client).await?;
            Some(client)
        }
        ExecutorKind::Local => None,
    };
    // In a cluster, replicas elect who runs the background work.
    let leadership = match &kube_client {
        Some(client) => lease::elect(
            client.clone(),
            config.lease_settings(client.default_namespace()),
        ),
        None => Leadership::solo(&config.replica_name()),
    };
    let executor: Arc<dyn Executor> = match &kube_client {
        None => Arc::new(LocalExecutor::new(
            config.data_dir.join("launches"),
            config.child_env(),
            sink,
            children.clone(),
        )?),
        Some(client) => {
            catalog.check_images()?;
            let settings = JobSettings {
                namespace: config
                    .kube_namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_string()),
                tracking_uri: config.job_tracking_uri(),
                ttl_seconds_after_finished: config.job_ttl_secs,
                service_account: config.job_service_account.clone(),
                mlflow_secret: config.job_mlflow_secret.clone(),
                git_image: config.git_image.clone(),
            };
            let executor = Arc::new(KubernetesExecutor::new(client.clone(), settings));
            let refused = executor.dry_run_profiles(&catalog).await;
            if !refused.is_empty() {
                return Err(Error::Config(format!("catalog: {}", refused.join("; "))));
            }
            let watching = executor.clone();
            duties::while_leading(&leadership, "following training Jobs", move || {
                let (watching, sink) = (watching.clone(), sink.clone());
                async move { watching.watch_status(sink).await }
            });
            executor
        }
    };
    let catalog = Arc::new(catalog);
    // Bound before anything starts, so a taken address stops start-up.
    let gateway_listener = tokio::net::TcpListener::bind(config.gateway_listen)
        .await
        .map_err(|err| {
            Error::Config(format!(
                "the gateway cannot listen on {} (SLIPWAY_GATEWAY_LISTEN): {err}",
                config.gateway_listen
            ))
        })?;
    let gateway_base = format!("http://{}", gateway_listener.local_addr()?);
    let traffic = Arc::new(Traffic::new(
        metrics.clone(),
        config.prometheus()?,
        config.traffic_window(),
    ));
    let local_serving = Arc::new(LocalServing::new(
        config.child_env(),
        config.data_dir.join("serving"),
        children,
    )?);
    // Before the first pass: a server still serving what is wanted goes on
    // without a gap.
    local_serving.adopt(leftovers).await;
    let gateway = Gateway::new(local_serving.clone(), traffic.clone()).router();
    let mut targets: Vec<Arc<dyn Target>> = vec![Arc::new(LocalTarget::new(
        local_serving,
        Some(gateway_base.clone()),
    ))];
    if let Some(client) = kube_client {
        let (unbound, install) = (config.unbound_objects, config.install_id.as_str());
        targets.push(Arc::new(SeldonTarget::new(
            client.clone(),
            unbound,
            install,
        )));
        targets.push(Arc::new(KserveTarget::new(
            client.clone(),
            unbound,
            install,
        )));
        targets.push(Arc::new(SeldonCore2Target::new(client, unbound, install)));
    }
    let state = assemble(
        config,
        Parts {
            store,
            mlflow,
            mlflow_for_pages,
            metrics,
            catalog,
            executor,
            reports,
            targets,
            leadership,
            traffic,
        },
    )
    .await?;
    tracing::info!("the gateway serves local deployments on {gateway_base}");
    tokio::spawn(async move {
        if let Err(err) = axum::serve(gateway_listener, gateway).await {
            tracing::error!(error = %err, "the gateway stopped");
        }
    });
    Ok(state)
}

/// What `assemble` puts together: the store, MLflow's clients, and the
/// adapters made from the configuration.
pub struct Parts {
    pub store: Store,
    /// For background work: waits longer, never a kept answer.
    pub mlflow: MlflowClient,
    /// For pages: a page's deadline, and kept answers.
    pub mlflow_for_pages: MlflowClient,
    pub metrics: Arc<Metrics>,
    pub catalog: Arc<Catalog>,
    pub executor: Arc<dyn Executor>,
    /// What the executor reports about trainings.
    pub reports: tokio::sync::mpsc::UnboundedReceiver<ExecutorEvent>,
    /// Where models are served: local always, a cluster's when there is one.
    pub targets: Vec<Arc<dyn Target>>,
    /// Whether this process runs the background work.
    pub leadership: Leadership,
    /// What serves records, and where its numbers are read.
    pub traffic: Arc<Traffic>,
}

/// The serving loop and the use-case services on `parts`, started: the
/// catalog's deployments seeded, and the background work running — on the
/// leader, passes, executor reports, settling what a crash left, webhook
/// registration and expiry; with replicas, each one's heartbeat.
pub async fn assemble(config: &Config, parts: Parts) -> Result<AppState> {
    let Parts {
        store,
        mlflow,
        mlflow_for_pages,
        metrics,
        catalog,
        executor,
        reports,
        targets,
        leadership,
        traffic,
    } = parts;
    let (reconciler, triggers) =
        Reconciler::new(mlflow.clone(), store.clone(), targets, leadership.clone()).await?;
    reconciler.report_to(metrics.clone());
    let launches = Arc::new(
        Launches::new(store.clone(), mlflow.clone(), catalog.clone(), executor)
            .checking_out_into(config.data_dir.join("git-work"), config.child_user)?,
    );
    let reads = Arc::new(Reads::new(
        mlflow_for_pages.clone(),
        store.clone(),
        launches.clone(),
        reconciler.clone(),
        traffic.clone(),
    ));
    let accounts = Arc::new(Accounts::new(
        store.clone(),
        config.session_settings(),
        config.oidc_settings().map(oidc::Oidc::new),
    ));
    let deployments = Arc::new(Deployments::new(
        store.clone(),
        reconciler.clone(),
        (mlflow.clone(), mlflow_for_pages.clone()),
        ModelCaller::new()?,
        catalog.clone(),
    ));
    let promotions = Arc::new(Promotions::new(
        store.clone(),
        mlflow.clone(),
        mlflow_for_pages.clone(),
        reconciler.clone(),
        deployments.clone(),
    ));
    let services = Services {
        deployments,
        rollouts: Arc::new(crate::services::rollouts::Rollouts::new(
            store.clone(),
            reconciler.clone(),
            promotions.clone(),
            traffic,
        )),
        promotions,
        registry: Arc::new(Registry::new(store.clone(), mlflow_for_pages)),
        load_tests: Arc::new(LoadTests::new(
            store.clone(),
            reconciler.clone(),
            reads.clone(),
            config.load_test_caps(),
        )),
        launches,
        reads,
        accounts: accounts.clone(),
        tokens: Arc::new(services::tokens::Tokens::new(store.clone())),
        notifications: Arc::new(services::notifications::Notifications::new(
            store.clone(),
            config.external_url.clone(),
            std::time::Duration::from_secs(config.notify_retry_secs),
        )?),
    };
    // The catalog file's deployments, before the first pass serves them.
    services
        .deployments
        .seed_from_catalog(&catalog.deployments)
        .await?;
    // Heard from only where another replica may need to know it lives.
    if leadership.elected() {
        duties::heartbeat(store.clone());
    }
    metrics.follow_leadership(&leadership);
    let triggers = Arc::new(tokio::sync::Mutex::new(triggers));
    let poll_every = std::time::Duration::from_secs(config.reconcile_poll_secs);
    let passing = reconciler.clone();
    duties::while_leading(&leadership, "reconciling", move || {
        let (reconciler, triggers) = (passing.clone(), triggers.clone());
        async move {
            reconciler
                .serve(&mut *triggers.lock().await, poll_every)
                .await
        }
    });
    let watching = reconciler.clone();
    duties::while_leading(&leadership, "watching what the targets made", move || {
        let reconciler = watching.clone();
        async move { reconciler.watch_targets().await }
    });
    let following = reconciler.clone();
    duties::while_following(&leadership, "showing what the leader saw", move || {
        let reconciler = following.clone();
        async move { reconciler.follow(duties::FOLLOW_EVERY).await }
    });
    services.launches.follow(reports);
    let (promotions, launches, load_tests, elected) = (
        services.promotions.clone(),
        services.launches.clone(),
        services.load_tests.clone(),
        leadership.elected(),
    );
    duties::while_leading(
        &leadership,
        "settling what a stopped replica left",
        move || {
            duties::settle_interrupted(
                promotions.clone(),
                launches.clone(),
                load_tests.clone(),
                elected,
            )
        },
    );
    if let Some(webhook) = config.webhook_registration() {
        duties::while_leading(&leadership, "registering the MLflow webhook", move || {
            register_webhook(webhook.clone(), mlflow.clone())
        });
    }
    let analysing = services.rollouts.clone();
    duties::while_leading(&leadership, "checking canaries", move || {
        let rollouts = analysing.clone();
        async move { rollouts.keep_analysing().await }
    });
    let notifying = services.notifications.clone();
    duties::while_leading(&leadership, "sending notifications", move || {
        let notifying = notifying.clone();
        async move { notifying.keep_delivering().await }
    });
    let (sweeping, sweep_store) = (accounts.clone(), store.clone());
    duties::while_leading(&leadership, "sweeping what expired", move || {
        sweep_expired(sweeping.clone(), sweep_store.clone())
    });
    Ok(AppState {
        leptos_options: leptos_options(config),
        gate: Arc::new(Gate {
            accounts,
            settings: config.gate_settings(),
        }),
        services,
        store,
        metrics,
        webhooks: config.webhook_secret.as_deref().map(Verifier::new),
        git_webhook_secret: config.git_webhook_secret.clone(),
        leadership,
    })
}

/// A deployment event still pending after this long was left by a Slipway
/// that stopped (a start takes at most 3 minutes); another replica's change
/// under way is younger.
const STALE_DEPLOYMENT_MS: i64 = 10 * 60 * 1000;

/// How long Try it answers are kept.
const TRY_ANSWERS_KEPT_MS: i64 = 3600 * 1000;

/// Once an hour (the first time on taking the lead): deletes expired
/// sessions, old Try it answers and old form drafts, and ends deployment
/// events a stopped Slipway left pending.
async fn sweep_expired(accounts: Arc<Accounts>, store: Store) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        match accounts.sweep_sessions().await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "expired sessions deleted"),
            Err(err) => tracing::warn!(error = %err, "deleting expired sessions"),
        }
        let kept_since = store::now_ms() - TRY_ANSWERS_KEPT_MS;
        if let Err(err) = store.forget_try_answers(kept_since).await {
            tracing::warn!(error = %err, "deleting old Try it answers");
        }
        if let Err(err) = store.forget_drafts(kept_since).await {
            tracing::warn!(error = %err, "deleting old form drafts");
        }
        let stale_since = store::now_ms() - STALE_DEPLOYMENT_MS;
        if let Err(err) = store.settle_stale_deployments(stale_since).await {
            tracing::warn!(error = %err, "ending deployment events a stop left pending");
        }
        if let Err(err) = store.forget_replicas(stale_since).await {
            tracing::warn!(error = %err, "forgetting replicas long gone");
        }
    }
}

/// Registers this install's webhook with MLflow, retrying until MLflow
/// answers.
pub async fn register_webhook(registration: webhook::Registration, mlflow: MlflowClient) {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match webhook::register(&mlflow, &registration).await {
            Ok(webhook::Registered::Webhook(id)) => {
                tracing::info!(webhook = %id, name = %registration.name, url = %registration.url, "MLflow webhook registered");
                return;
            }
            Ok(webhook::Registered::Unsupported) => {
                tracing::info!(
                    "this MLflow has no webhooks (MLflow 3.3 added them): \
                     promotions made outside Slipway are found by the poll alone"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "registering the MLflow webhook; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("slipway")
        .site_root(config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}

/// The data directory holds the database, sessions and what Slipway's
/// children write: only Slipway's user may enter it. With children running
/// as another user, they may pass through it (not list it) to their own
/// home and checkouts; everything in it stays Slipway's alone (`umask
/// 077`). A directory Slipway does not own (a volume's root, as a pod
/// mounts it) keeps its mode, and the log says so.
fn keep_data_dir_private(dir: &std::path::Path, children_pass: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mode = if children_pass { 0o711 } else { 0o700 };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)) {
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                dir = %dir.display(),
                "the data directory is not Slipway's own: its mode stays as it is; the database file is kept 0600"
            );
            Ok(())
        }
        done => done.map_err(Error::from),
    }
}

/// The HOME of children running as `user`: theirs alone.
fn give_children_a_home(
    home: &std::path::Path,
    user: crate::adapters::process::ChildUser,
) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(home)?;
    crate::adapters::process::give_to(home, user)?;
    Ok(())
}
