//! The reconciler: level-triggered and idempotent. Desired state: the
//! Production version of each bound model, read from MLflow in one request.
//! Actual state: what the target serves. Each pass converges the two, so a
//! crash at any point is repaired by the next pass from MLflow and the
//! target alone. Passes run on Slipway's own promotions (at once), on MLflow
//! webhooks, on watch events of the objects the targets made, and on a poll
//! for what none of these report (stage changes). Only the leading replica
//! passes; the others show what it published.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use app::model::{DeploymentView, ServingState};
use tokio::sync::{mpsc, watch};

use super::desired::desired_versions;
use super::target::{Ledger, Target, Trigger};
use super::{failed_status, no_production_message};
use crate::adapters::lease::Leadership;
use crate::adapters::mlflow::{MlflowClient, MlflowError};
use crate::catalog::{DeploymentBinding, ServingTarget};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::replicas::PublishedView;

/// How long a pass waits for MLflow's desired state: a frozen MLflow costs
/// a pass this much, not the background client's whole budget.
const DESIRED_READ_DEADLINE: Duration = Duration::from_secs(5);

/// The first retry after a failed pass; doubled per failure up to
/// `LAST_RETRY` (or the poll interval, if shorter): a returning MLflow is
/// seen within seconds, and a down one gets a request every few seconds.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// How often the set of namespaces the targets watch is brought up to date
/// with the bindings.
const WATCHED_NAMESPACES_EVERY: Duration = Duration::from_secs(2);

pub struct Reconciler {
    /// The history, failures and MLflow the targets share.
    ledger: Arc<Ledger>,
    /// The bindings as of the last read from the database: every pass
    /// reads them again (another replica may have changed them), and so
    /// does a change made here.
    bindings: RwLock<Arc<Vec<DeploymentBinding>>>,
    /// Where models are served: local always, a cluster's when configured.
    targets: Vec<Arc<dyn Target>>,
    triggers: mpsc::UnboundedSender<Trigger>,
    /// Desired version per model as of the last pass.
    desired: Mutex<BTreeMap<String, Option<String>>>,
    /// Counts passes as they start (for waiting on one, and for benchmarks).
    passes: watch::Sender<u64>,
    /// Set on shutdown: no pass starts after it.
    stopped: watch::Sender<bool>,
    /// Since when (ms) and why passes fail to read MLflow, while they do.
    mlflow_trouble: Mutex<Option<(i64, String)>>,
    /// Where passes are counted and timed, once set.
    metrics: std::sync::OnceLock<Arc<Metrics>>,
    /// Only the leader passes; the other replicas show what it published.
    leadership: Leadership,
    published: RwLock<HashMap<String, PublishedView>>,
    /// What this leader last wrote down for them: unchanged, not written
    /// again. Cleared at each term (another leader may have written since).
    last_published: Mutex<Option<Vec<DeploymentView>>>,
}

impl Reconciler {
    /// A reconciler over `targets` (local serving always, a cluster's
    /// where there is one), with the bindings the database holds now.
    pub async fn new(
        mlflow: MlflowClient,
        store: Store,
        targets: Vec<Arc<dyn Target>>,
        leadership: Leadership,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Trigger>)> {
        let (triggers, receiver) = mpsc::unbounded_channel();
        let reconciler = Arc::new(Self {
            ledger: Arc::new(Ledger::new(store, mlflow)),
            bindings: RwLock::default(),
            targets,
            triggers,
            desired: Mutex::default(),
            passes: watch::channel(0).0,
            stopped: watch::channel(false).0,
            mlflow_trouble: Mutex::default(),
            metrics: std::sync::OnceLock::new(),
            leadership,
            published: RwLock::default(),
            last_published: Mutex::default(),
        });
        reconciler.reload_bindings().await?;
        Ok((reconciler, receiver))
    }

    /// Reads the bindings from the database.
    pub async fn reload_bindings(&self) -> Result<Arc<Vec<DeploymentBinding>>> {
        let bindings: Arc<Vec<DeploymentBinding>> = Arc::new(
            self.store()
                .bindings()
                .await?
                .into_iter()
                .map(|record| record.binding)
                .collect(),
        );
        *self.bindings.write().expect("bindings") = bindings.clone();
        Ok(bindings)
    }

    /// Runs passes on triggers and every `poll_every`, until Slipway stops
    /// (or, dropped, when this replica stops leading). Triggers that pile
    /// up during a pass are served by one next pass. A failed pass is
    /// retried sooner than the poll, backing off.
    pub async fn serve(
        self: &Arc<Self>,
        triggers: &mut mpsc::UnboundedReceiver<Trigger>,
        poll_every: Duration,
    ) {
        // A term starts afresh: what the last pass of an earlier term saw
        // (or failed at) may have changed under another leader.
        for binding in self.bindings().iter() {
            self.forget_failure(&binding.model);
        }
        *self.last_published.lock().expect("last published") = None;
        // Passes run even with no bindings: one may be made at any time, and
        // what removed ones left is still to be cleaned up.
        let mut stopped = self.stopped.subscribe();
        let mut poll = tokio::time::interval(poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        let mut failures: u32 = 0;
        loop {
            let retry_in = FIRST_RETRY
                .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
                .min(LAST_RETRY.min(poll_every));
            let mut trigger = tokio::select! {
                _ = stopped.wait_for(|stopped| *stopped) => return,
                Some(trigger) = triggers.recv() => trigger,
                _ = poll.tick() => Trigger::new(if first { "startup" } else { "poll" }, "slipway"),
                _ = tokio::time::sleep(retry_in), if failures > 0 => Trigger::new("retry", "slipway"),
                else => return,
            };
            first = false;
            if let Some(metrics) = self.metrics.get() {
                metrics.set_reconcile_queue(triggers.len());
            }
            // Coalesce: one pass answers every trigger already queued.
            while let Ok(next) = triggers.try_recv() {
                if next.cause != "poll" {
                    trigger = Trigger {
                        retry_model: next.retry_model.or(trigger.retry_model),
                        ..next
                    };
                }
            }
            let started = std::time::Instant::now();
            let outcome = self.pass(&trigger).await;
            if let Some(metrics) = self.metrics.get() {
                metrics.observe_pass(outcome.is_ok(), started.elapsed().as_secs_f64());
            }
            match outcome {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "reconcile passes work again");
                    }
                    failures = 0;
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    // The first failure, then one in ten: an outage is
                    // not a log line every second.
                    if failures % 10 == 1 {
                        tracing::warn!(error = %err, cause = %trigger.cause, failures, "reconcile pass failed");
                    }
                }
            }
            if self.leadership.elected() {
                self.publish_views().await;
            }
        }
    }

    /// For the replicas that do not lead: what the leader saw of each
    /// deployment, written down after a pass that changed it.
    async fn publish_views(&self) {
        let views: Vec<DeploymentView> = self
            .bindings()
            .iter()
            .filter_map(|binding| self.view(&binding.model).ok())
            .collect();
        if self.last_published.lock().expect("last published").as_ref() == Some(&views) {
            return;
        }
        match self
            .store()
            .publish_views(&views, self.leadership.identity())
            .await
        {
            Ok(()) => *self.last_published.lock().expect("last published") = Some(views),
            Err(err) => {
                tracing::warn!(error = %err, "writing down what the deployments serve for the other replicas")
            }
        }
    }

    /// Watches what the targets made in every namespace a binding names,
    /// asking for a pass on each change, so an object deleted or edited in
    /// the cluster is put back on its event rather than at the next poll.
    /// The leader's: dropped with the lead.
    pub async fn watch_targets(&self) {
        use futures::StreamExt;
        let mut watched = BTreeMap::new();
        let mut changes = futures::stream::SelectAll::new();
        loop {
            let wanted: BTreeMap<(&str, String), ServingTarget> = self
                .bindings()
                .iter()
                .filter_map(|binding| {
                    let namespace = binding.namespace.clone()?;
                    Some(((binding.target.as_str(), namespace), binding.target))
                })
                .collect();
            if wanted != watched {
                // Started over on any change of the set: rare (a deployment
                // made in a new namespace), and the new listing asks nothing.
                changes = futures::stream::SelectAll::new();
                for ((_, namespace), kind) in &wanted {
                    if let Some(stream) = self
                        .target(*kind)
                        .and_then(|target| target.watch(namespace))
                    {
                        changes.push(stream);
                    }
                }
                watched = wanted;
            }
            let until = tokio::time::sleep(WATCHED_NAMESPACES_EVERY);
            tokio::pin!(until);
            loop {
                tokio::select! {
                    Some(()) = changes.next() => self.trigger(Trigger::new("watch", "kubernetes")),
                    () = &mut until => break,
                }
            }
        }
    }

    /// While this replica does not lead: reads the bindings and what the
    /// leader published, every `every`.
    pub async fn follow(&self, every: Duration) {
        loop {
            if let Err(err) = self.reload_bindings().await {
                tracing::warn!(error = %err, "reading the bindings");
            }
            match self.store().published_views().await {
                Ok(views) => {
                    *self.published.write().expect("published") = views
                        .into_iter()
                        .map(|published| (published.view.model.clone(), published))
                        .collect();
                }
                Err(err) => tracing::warn!(error = %err, "reading what the leader saw"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Stops passing, then every target's own shutdown: local model servers
    /// (those starting too) stop, being Slipway's children; cluster objects
    /// serve on without Slipway.
    pub async fn shutdown(&self) {
        self.stopped.send_replace(true);
        for target in &self.targets {
            target.shutdown().await;
        }
    }

    /// Counts and times passes and model-server restarts in `metrics`.
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics.clone());
        self.ledger.report_to(metrics);
    }

    fn store(&self) -> &Store {
        self.ledger.store()
    }

    /// Whether Slipway serves on this kind of target (a cluster's only with
    /// a cluster).
    pub fn has_target(&self, kind: ServingTarget) -> bool {
        self.target(kind).is_some()
    }

    fn target(&self, kind: ServingTarget) -> Option<&Arc<dyn Target>> {
        self.targets.iter().find(|target| target.kind() == kind)
    }

    /// A changed deployment starts afresh: a failure recorded for it, and
    /// what its target saw last pass, no longer apply.
    pub fn forget_failure(&self, model: &str) {
        self.ledger.forget_failure(model);
        for target in &self.targets {
            target.forget(model);
        }
    }

    /// Asks for a pass at once. Only the leader passes: on another
    /// replica the leader's poll finds the change.
    pub fn trigger(&self, trigger: Trigger) {
        if self.leadership.is_leading() {
            let _ = self.triggers.send(trigger);
        }
    }

    /// Wakes when a pass starts.
    pub fn subscribe_passes(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    pub fn bindings(&self) -> Arc<Vec<DeploymentBinding>> {
        self.bindings.read().expect("bindings").clone()
    }

    /// One pass: read the bindings and the desired versions, remove what
    /// no binding explains any more, converge every binding.
    pub async fn pass(&self, trigger: &Trigger) -> Result<()> {
        self.passes.send_modify(|count| *count += 1);
        let bindings = match self.reload_bindings().await {
            Ok(bindings) => bindings,
            Err(err) => {
                tracing::warn!(error = %err, "reading the bindings; using the last ones read");
                self.bindings()
            }
        };
        for target in &self.targets {
            if let Err(err) = target
                .remove_unbound(&self.ledger, &bindings, trigger)
                .await
            {
                tracing::warn!(target = ?target.kind(), error = %err, "removing what unbound models left");
            }
        }
        if bindings.is_empty() {
            return Ok(());
        }
        let models = match tokio::time::timeout(
            DESIRED_READ_DEADLINE,
            self.ledger.mlflow().all_registered_models(),
        )
        .await
        {
            Ok(Ok(models)) => {
                *self.mlflow_trouble.lock().expect("mlflow trouble") = None;
                models
            }
            outcome => {
                let err = match outcome {
                    Ok(Err(err)) => err,
                    _ => MlflowError::NoAnswer {
                        url: self.ledger.mlflow().url(),
                        seconds: DESIRED_READ_DEADLINE.as_secs(),
                    },
                };
                let mut trouble = self.mlflow_trouble.lock().expect("mlflow trouble");
                let since = trouble
                    .as_ref()
                    .map_or_else(crate::store::now_ms, |(since, _)| *since);
                *trouble = Some((since, err.to_string()));
                return Err(err.into());
            }
        };
        let desired = desired_versions(&bindings, &models);
        *self.desired.lock().expect("desired") = desired.clone();
        // Without the rollouts read, canaries are left as they are (a
        // database hiccup must not end them).
        let rollouts = match self.ledger.store().active_rollouts().await {
            Ok(rollouts) => Some(rollouts),
            Err(err) => {
                tracing::warn!(error = %err, "reading the rollouts; canaries left as they are");
                None
            }
        };
        for binding in bindings.iter() {
            let version = desired.get(&binding.model).cloned().flatten();
            if trigger.retry_model.as_deref() == Some(binding.model.as_str()) {
                self.ledger.forget_failure(&binding.model);
            }
            // A binding to a target Slipway lacks shows why in its view.
            let Some(target) = self.target(binding.target) else {
                continue;
            };
            let outcome = target
                .converge(&self.ledger, binding, version.clone(), trigger)
                .await;
            let outcome = match (outcome, &rollouts) {
                (Ok(()), Some(rollouts)) => {
                    let rollout = rollouts
                        .iter()
                        .find(|rollout| rollout.model == binding.model);
                    self.converge_canary(target, binding, version.as_deref(), rollout)
                        .await
                }
                (outcome, _) => outcome,
            };
            if let Err(err) = outcome {
                if let Some(metrics) = self.metrics.get() {
                    metrics.count_reconcile_error(binding.target.as_str());
                }
                tracing::warn!(model = %binding.model, error = %err, "converging");
            }
        }
        for orphan in rollouts.iter().flatten().filter(|rollout| {
            !bindings
                .iter()
                .any(|binding| binding.model == rollout.model)
        }) {
            self.ledger
                .store()
                .move_rollout(
                    &orphan.id,
                    orphan.state,
                    app::model::RolloutState::Aborted,
                    "the deployment was deleted",
                )
                .await?;
        }
        Ok(())
    }

    /// Serves a rollout's canary beside the stable version; a promoted
    /// canary, once the stable side serves its version, ends the rollout
    /// (succeeded) and its canary server. Production moved by another way
    /// (an approved request, MLflow's own UI) moves the rollout with it:
    /// to the canary, it is promoting; to a third version, it is over.
    async fn converge_canary(
        &self,
        target: &Arc<dyn Target>,
        binding: &DeploymentBinding,
        production: Option<&str>,
        rollout: Option<&app::model::Rollout>,
    ) -> Result<()> {
        use app::model::RolloutState;
        if let (Some(rollout), Some(production)) = (rollout, production)
            && rollout.state == RolloutState::Progressing
            && rollout.stable_version.as_deref() != Some(production)
        {
            let store = self.ledger.store();
            if production == rollout.canary_version {
                store
                    .move_rollout(
                        &rollout.id,
                        RolloutState::Progressing,
                        RolloutState::Promoting,
                        "promoted; the stable side is starting it",
                    )
                    .await?;
            } else {
                let ended = format!("v{production} became Production meanwhile");
                store
                    .move_rollout(
                        &rollout.id,
                        RolloutState::Progressing,
                        RolloutState::Aborted,
                        &ended,
                    )
                    .await?;
                return target.converge_canary(&self.ledger, binding, None).await;
            }
        }
        if let Some(rollout) = rollout
            && rollout.state == RolloutState::Promoting
            && production == Some(rollout.canary_version.as_str())
            && target.status(binding).0.as_deref() == Some(rollout.canary_version.as_str())
        {
            let ended = format!("v{} serves all requests", rollout.canary_version);
            self.ledger
                .store()
                .move_rollout(
                    &rollout.id,
                    RolloutState::Promoting,
                    RolloutState::Succeeded,
                    &ended,
                )
                .await?;
            return target.converge_canary(&self.ledger, binding, None).await;
        }
        target.converge_canary(&self.ledger, binding, rollout).await
    }

    /// The version MLflow marked Production for `model` as of the last
    /// pass (`None`: nothing, or not read yet).
    pub fn desired_version(&self, model: &str) -> Option<String> {
        if !self.leadership.is_leading() {
            return self
                .published
                .read()
                .expect("published")
                .get(model)
                .and_then(|published| published.view.desired_version.clone());
        }
        self.desired
            .lock()
            .expect("desired")
            .get(model)
            .cloned()
            .flatten()
    }

    pub fn binding(&self, model: &str) -> Result<DeploymentBinding> {
        self.bindings()
            .iter()
            .find(|binding| binding.model == model)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{model} has no deployment")))
    }

    /// What the deployment of `model` serves and how, as of now.
    pub fn view(&self, model: &str) -> Result<DeploymentView> {
        let binding = self.binding(model)?;
        if !self.leadership.is_leading() {
            return Ok(self.published_view(&binding));
        }
        let known = self.desired.lock().expect("desired").get(model).cloned();
        let desired = known.clone().flatten();
        let (serving, mut status, canary_status) = match self.target(binding.target) {
            Some(target) => {
                let (serving, status) = target.status(&binding);
                (serving, status, target.canary_status(&binding))
            }
            None => (
                None,
                failed_status(
                    "Slipway runs without a cluster (SLIPWAY_EXECUTOR=kubernetes enables it)",
                ),
                None,
            ),
        };
        // A failure says more than that nothing is in production.
        if known == Some(None) && status.state != ServingState::Failed {
            status.message = no_production_message(serving.as_deref());
        }
        // Said first: while MLflow is away, the rest is what Slipway last knew.
        let message = match &*self.mlflow_trouble.lock().expect("mlflow trouble") {
            Some((since, why)) => format!(
                "MLflow has not answered for {} s ({why}); what serves keeps serving, and Slipway deploys what MLflow marks Production as soon as it answers. {}",
                (crate::store::now_ms() - since) / 1000,
                status.message
            ),
            None => status.message,
        };
        Ok(DeploymentView {
            model: model.into(),
            target: binding.target.as_str().into(),
            namespace: binding.namespace.clone(),
            marker: binding.marker(),
            desired_version: desired,
            serving_version: serving,
            state: status.state,
            message,
            address: status.address,
            last_change_ms: None,
            // Named where there are replicas to tell apart.
            reconciled_by: if self.leadership.elected() {
                self.leadership.identity().into()
            } else {
                String::new()
            },
            traffic: None,
            canary_status,
        })
    }

    fn published_view(&self, binding: &DeploymentBinding) -> DeploymentView {
        let published = self.published.read().expect("published");
        match published.get(&binding.model) {
            Some(published) => DeploymentView {
                reconciled_by: published.replica.clone(),
                ..published.view.clone()
            },
            None => DeploymentView {
                model: binding.model.clone(),
                target: binding.target.as_str().into(),
                namespace: binding.namespace.clone(),
                marker: binding.marker(),
                desired_version: None,
                serving_version: None,
                state: ServingState::Creating,
                message: "The replica that reconciles has not reported on this deployment yet."
                    .into(),
                address: None,
                last_change_ms: None,
                reconciled_by: String::new(),
                traffic: None,
                canary_status: None,
            },
        }
    }
}
