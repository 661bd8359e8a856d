//! Slipway's server: the axum binary and the control plane behind the UI's
//! server functions.

pub mod approvals;
pub mod artifacts;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod error;
pub mod executor;
pub mod http;
pub mod launch;
pub mod metrics;
pub mod mlflow;
pub mod process;
pub mod registry;
pub mod serving;
pub mod store;
pub mod telemetry;
pub mod webhook;

use std::sync::Arc;

use leptos::prelude::LeptosOptions;

use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::config::{Config, Executor as ExecutorKind};
use crate::control::Slipway;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::executor::kubernetes::{JobSettings, KubernetesExecutor};
use crate::executor::local::LocalExecutor;
use crate::http::AppState;
use crate::launch::Launcher;
use crate::metrics::Metrics;
use crate::mlflow::MlflowClient;
use crate::mlflow::cache::ReadCache;
use crate::serving::local::LocalServing;
use crate::serving::reconciler::Reconciler;
use crate::serving::seldon::SeldonTarget;
use crate::serving::try_it::ModelCaller;
use crate::store::Store;
use crate::webhook::Verifier;

/// Everything the server needs, built from the configuration. MLflow need
/// not be up: Slipway starts anyway and reports it on `/readyz` and in the UI.
pub async fn build_state(config: &Config) -> Result<AppState> {
    config.validate()?;
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
    let catalog = match &config.catalog {
        Some(path) => Catalog::load(path)?,
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
            };
            let executor = Arc::new(KubernetesExecutor::new(client.clone(), settings));
            let refused = executor.dry_run_profiles(&catalog).await;
            if !refused.is_empty() {
                return Err(Error::Config(format!("catalog: {}", refused.join("; "))));
            }
            let watching = executor.clone();
            tokio::spawn(async move { watching.watch_status(sink).await });
            executor
        }
    };
    let local_serving = Arc::new(LocalServing::new(
        config.child_env(),
        config.data_dir.join("serving"),
        children,
    )?);
    // Before the first pass: a server still serving what is wanted goes on
    // without a gap.
    local_serving.adopt(leftovers).await;
    let (reconciler, triggers) = Reconciler::new(
        mlflow.clone(),
        store.clone(),
        &catalog.deployments,
        local_serving,
        kube_client.map(|client| SeldonTarget::new(client, config.unbound_objects)),
    )
    .await?;
    reconciler.report_to(metrics.clone());
    reconciler.run(
        triggers,
        std::time::Duration::from_secs(config.reconcile_poll_secs),
    );
    settle_interrupted_promotions(reconciler.clone());
    let launcher = Arc::new(Launcher::new(
        store.clone(),
        mlflow.clone(),
        Arc::new(catalog),
        executor,
    ));
    launcher.follow(reports);
    launcher.settle_interrupted().await?;
    register_webhook(config, mlflow.clone());
    let auth = Arc::new(Auth::new(
        store.clone(),
        config.auth_settings(),
        config.oidc_settings().map(auth::oidc::Oidc::new),
    ));
    sweep_expired(auth.clone(), store.clone());
    let single_sign_on = auth.single_sign_on();
    Ok(AppState {
        auth,
        leptos_options: leptos_options(config),
        slipway: Arc::new(Slipway {
            mlflow: mlflow_for_pages,
            store,
            launcher,
            reconciler,
            single_sign_on,
            try_it: ModelCaller::new()?,
            example_inputs: Default::default(),
        }),
        metrics,
        webhooks: config.webhook_secret.as_deref().map(Verifier::new),
    })
}

/// Settles changes of Production a crash left half done, in the
/// background: it needs MLflow, which may not be up yet.
fn settle_interrupted_promotions(reconciler: Arc<Reconciler>) {
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            match reconciler.settle_interrupted().await {
                Ok(_) => return,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?wait, "settling interrupted promotions");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(60));
                }
            }
        }
    });
}

/// A deployment event still pending after this long was left by a Slipway
/// that stopped (a start takes at most 3 minutes); another replica's change
/// under way is younger.
const STALE_DEPLOYMENT_MS: i64 = 10 * 60 * 1000;

/// How long Try it answers are kept.
const TRY_ANSWERS_KEPT_MS: i64 = 3600 * 1000;

/// Once an hour (the first time at start-up): deletes expired sessions,
/// old Try it answers and old form drafts, and ends deployment events a
/// stopped Slipway left pending.
fn sweep_expired(auth: Arc<Auth>, store: Store) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            match auth.sweep_sessions().await {
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
        }
    });
}

/// Registers Slipway's webhook with MLflow when both the public URL and the
/// secret are configured, retrying until MLflow answers.
pub fn register_webhook(config: &Config, mlflow: MlflowClient) {
    let (Some(public_url), Some(secret)) = (&config.public_url, &config.webhook_secret) else {
        return;
    };
    let url = public_url
        .join("webhooks/mlflow")
        .expect("a path joins any http URL")
        .to_string();
    let secret = secret.clone();
    let poll_secs = config.reconcile_poll_secs;
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            match webhook::register(&mlflow, &url, &secret).await {
                Ok(webhook::Registration::Registered(id)) => {
                    tracing::info!(webhook = %id, %url, "MLflow webhook registered");
                    return;
                }
                Ok(webhook::Registration::Unsupported) => {
                    tracing::info!(
                        poll_secs,
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
    });
}

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("slipway")
        .site_root(config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}
