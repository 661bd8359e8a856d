//! The reconciler: level-triggered and idempotent. Desired state: the
//! Production version of each bound model, read from MLflow in one request.
//! Actual state: what the target serves. Each pass converges the two, so a
//! crash at any point is repaired by the next pass from MLflow and the
//! target alone. Passes run on Slipway's own promotions (at once), on MLflow
//! webhooks, and on a poll for what webhooks do not report (stage changes).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use app::access::{Action, authorize};
use app::error::AppError;
use app::model::{DeploymentView, User};
use tokio::sync::{mpsc, watch};

use super::desired::desired_versions;
use super::local::{LocalServing, NotServing};
use super::seldon::{self, Observed, SeldonTarget};
use super::{ServingState, ServingStatus};
use crate::catalog::{DeploymentBinding, NoProduction, ProductionMarker, ServingTarget};
use crate::config::UnboundObjects;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::store::{NewPromotion, Seeded, ServingObject, Store};

const SELDON: &str = "seldon";

/// How long a pass waits for MLflow's desired state: a frozen MLflow costs
/// a pass this much, not the background client's whole budget.
const DESIRED_READ_DEADLINE: Duration = Duration::from_secs(5);

/// The first retry after a failed pass; doubled per failure up to
/// `LAST_RETRY` (or the poll interval, if shorter): a returning MLflow is
/// seen within seconds, and a down one gets a request every few seconds.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// Why a pass runs, and for whom it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// promote, rollback, webhook, poll, startup.
    pub cause: String,
    pub actor: String,
    /// A promotion of this model asks to retry even a version that failed.
    pub retry_model: Option<String>,
}

impl Trigger {
    pub fn new(cause: &str, actor: &str) -> Self {
        Self {
            cause: cause.into(),
            actor: actor.into(),
            retry_model: None,
        }
    }
}

pub struct Reconciler {
    mlflow: MlflowClient,
    store: Store,
    /// The bindings as of the last read from the database: every pass
    /// reads them again (another replica may have changed them), and so
    /// does a change made here.
    bindings: RwLock<Arc<Vec<DeploymentBinding>>>,
    local: Arc<LocalServing>,
    seldon: Option<SeldonTarget>,
    triggers: mpsc::UnboundedSender<Trigger>,
    /// Desired version per model as of the last pass.
    desired: Mutex<BTreeMap<String, Option<String>>>,
    /// Cluster objects' status as of the last pass.
    cluster: Mutex<HashMap<String, (Option<String>, ServingStatus)>>,
    /// The version of each model whose deployment failed and was recorded:
    /// a local server is not started again until promoted again; a cluster
    /// object is applied again every pass, but the failure is not recorded
    /// again.
    failed: Arc<Mutex<HashMap<String, String>>>,
    /// Counts passes as they start (for waiting on one, and for benchmarks).
    passes: watch::Sender<u64>,
    /// Set on shutdown: no pass starts after it.
    stopped: watch::Sender<bool>,
    /// Since when (ms) and why passes fail to read MLflow, while they do.
    mlflow_trouble: Mutex<Option<(i64, String)>>,
    /// Where passes and restarts are counted, once set.
    metrics: std::sync::OnceLock<Arc<Metrics>>,
}

impl Reconciler {
    /// Makes the catalog file's bindings the file-managed ones in the
    /// database (each change audited), then reads every binding.
    pub async fn new(
        mlflow: MlflowClient,
        store: Store,
        catalog: &[DeploymentBinding],
        local: Arc<LocalServing>,
        seldon: Option<SeldonTarget>,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Trigger>)> {
        for (model, seeded) in store.seed_bindings(catalog).await? {
            let what = match seeded {
                Seeded::Added => "bound by the catalog file",
                Seeded::Changed => "changed by the catalog file",
                Seeded::Removed => "no longer in the catalog file: deleted",
            };
            store
                .record_event(
                    "catalog",
                    "deployment-settings",
                    &format!("model:{model}"),
                    what,
                )
                .await?;
        }
        let (triggers, receiver) = mpsc::unbounded_channel();
        let reconciler = Arc::new(Self {
            mlflow,
            store,
            bindings: RwLock::default(),
            local,
            seldon,
            triggers,
            desired: Mutex::default(),
            cluster: Mutex::default(),
            failed: Arc::default(),
            passes: watch::channel(0).0,
            stopped: watch::channel(false).0,
            mlflow_trouble: Mutex::default(),
            metrics: std::sync::OnceLock::new(),
        });
        reconciler.reload_bindings().await?;
        Ok((reconciler, receiver))
    }

    /// Reads the bindings from the database.
    pub async fn reload_bindings(&self) -> Result<Arc<Vec<DeploymentBinding>>> {
        let bindings: Arc<Vec<DeploymentBinding>> = Arc::new(
            self.store
                .bindings()
                .await?
                .into_iter()
                .map(|record| record.binding)
                .collect(),
        );
        *self.bindings.write().expect("bindings") = bindings.clone();
        Ok(bindings)
    }

    /// Runs passes on triggers and every `poll_every`, until Slipway stops.
    /// Triggers that pile up during a pass are served by one next pass. A
    /// failed pass is retried sooner than the poll, backing off.
    pub fn run(
        self: &Arc<Self>,
        mut triggers: mpsc::UnboundedReceiver<Trigger>,
        poll_every: Duration,
    ) {
        // Passes run even with no bindings: one may be made at any time, and
        // what removed ones left is still to be cleaned up.
        let reconciler = self.clone();
        let mut stopped = self.stopped.subscribe();
        tokio::spawn(async move {
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
                let outcome = reconciler.pass(&trigger).await;
                if let Some(metrics) = reconciler.metrics.get() {
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
            }
        });
    }

    /// Stops passing, then stops the local model servers (those starting
    /// too): they are Slipway's children. Cluster objects stay: they serve
    /// without Slipway.
    pub async fn shutdown(&self) {
        self.stopped.send_replace(true);
        self.local.stop_all().await;
    }

    /// Counts and times passes and model-server restarts in `metrics`.
    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn has_cluster(&self) -> bool {
        self.seldon.is_some()
    }

    /// A changed deployment starts afresh: a failure recorded for it, and
    /// the cluster status of its last pass, no longer apply.
    pub(super) fn forget_failure(&self, model: &str) {
        self.failed.lock().expect("failed").remove(model);
        self.cluster.lock().expect("cluster").remove(model);
    }

    pub fn trigger(&self, trigger: Trigger) {
        let _ = self.triggers.send(trigger);
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
        self.remove_unbound_local(&bindings, trigger).await?;
        if let Err(err) = self.sweep_unbound(&bindings).await {
            tracing::warn!(error = %err, "removing what unbound models left in the cluster");
        }
        if bindings.is_empty() {
            return Ok(());
        }
        let models =
            match tokio::time::timeout(DESIRED_READ_DEADLINE, self.mlflow.all_registered_models())
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
                            url: self.mlflow.url(),
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
        for binding in bindings.iter() {
            let version = desired.get(&binding.model).cloned().flatten();
            if trigger.retry_model.as_deref() == Some(binding.model.as_str()) {
                self.failed.lock().expect("failed").remove(&binding.model);
            }
            let outcome = match binding.target {
                ServingTarget::Local => self.converge_local(binding, version, trigger).await,
                ServingTarget::Seldon => self.converge_seldon(binding, version, trigger).await,
            };
            if let Err(err) = outcome {
                tracing::warn!(model = %binding.model, error = %err, "converging");
            }
        }
        Ok(())
    }

    async fn converge_local(
        &self,
        binding: &DeploymentBinding,
        version: Option<String>,
        trigger: &Trigger,
    ) -> Result<()> {
        let model = &binding.model;
        if self.local.is_stopping() {
            // A pass that was under way when Slipway began to stop.
            return Ok(());
        }
        self.local.check_liveness(model).await;
        let (wanted, died) = self.local.wanted_version(model);
        let failed = self.failed.lock().expect("failed").get(model).cloned();
        if version == wanted || (version.is_some() && version == failed) {
            return Ok(());
        }
        let previous = self.local.status(model).0.map(|server| server.version);
        let (cause, actor) = if died {
            if let Some(metrics) = self.metrics.get() {
                metrics.count_restart(model);
            }
            ("drift".to_string(), "slipway".to_string())
        } else {
            self.attribution(model, version.as_deref(), trigger).await?
        };
        let Some(version) = version else {
            if binding.no_production == NoProduction::Keep {
                // What serves keeps serving; the view says why.
                return Ok(());
            }
            let id = self
                .store
                .begin_deployment(model, None, previous.as_deref(), &cause, &actor)
                .await?;
            self.local.undeploy(model).await;
            self.store
                .finish_deployment(&id, "removed", "nothing is in production")
                .await?;
            return Ok(());
        };
        let id = self
            .store
            .begin_deployment(model, Some(&version), previous.as_deref(), &cause, &actor)
            .await?;
        // Marked starting now, before the server is spawned, so the next
        // pass sees it and does not start a second one.
        let start = match self.local.begin(model, &version) {
            Ok(start) => start,
            Err(not_serving) => {
                let why = match not_serving {
                    NotServing::Superseded(why) | NotServing::Failed(why) => why,
                };
                return self.store.finish_deployment(&id, "failed", &why).await;
            }
        };
        let local = self.local.clone();
        let store = self.store.clone();
        let model = model.clone();
        let failed = self.failed.clone();
        tokio::spawn(async move {
            let (outcome, message) = match local.deploy(start).await {
                Ok(server) => ("serving", format!("ready on {}", server.address())),
                Err(NotServing::Superseded(why)) => ("superseded", why),
                Err(NotServing::Failed(why)) => {
                    failed
                        .lock()
                        .expect("failed")
                        .insert(model.clone(), version.clone());
                    ("failed", why)
                }
            };
            if let Err(err) = store.finish_deployment(&id, outcome, &message).await {
                tracing::error!(error = %err, "recording a deployment's end");
            }
        });
        Ok(())
    }

    async fn converge_seldon(
        &self,
        binding: &DeploymentBinding,
        version: Option<String>,
        trigger: &Trigger,
    ) -> Result<()> {
        let Some(target) = &self.seldon else {
            self.set_cluster(
                binding,
                None,
                failed_status(
                    "Slipway runs without a cluster (SLIPWAY_EXECUTOR=kubernetes enables it)",
                ),
            );
            return Ok(());
        };
        let model = &binding.model;
        let object = seldon_object(binding);
        let actual = match target.get(&object.namespace, &object.name).await {
            Ok(actual) => actual,
            Err(err) => {
                self.set_cluster(binding, None, failed_status(&err.0));
                return Ok(());
            }
        };
        let serving = actual.as_ref().and_then(|actual| actual.version.clone());
        let Some(version) = version else {
            return self
                .no_production_on_cluster(binding, &object, actual, trigger)
                .await;
        };
        let download = self
            .mlflow
            .model_version_download_uri(model, &version)
            .await?;
        let rendered = match binding.storage_uri(&download) {
            Ok(uri) => seldon::render(binding, &version, &uri),
            Err(why) => {
                self.record_failure(model, &version, serving.as_deref(), trigger, &why)
                    .await?;
                self.set_cluster(binding, serving, failed_status(&why));
                return Ok(());
            }
        };
        // Written before the first apply, so that an object whose binding
        // goes away can always be found again.
        let created_before = !self.store.remember_serving_object(&object).await?;
        // Level-triggered: apply every pass, so an object deleted or edited
        // by someone else is put back. Only real changes are recorded.
        let change = match &actual {
            None if created_before => Some(("drift".to_string(), "slipway".to_string())),
            None => Some(self.attribution(model, Some(&version), trigger).await?),
            Some(_) if serving.as_deref() != Some(version.as_str()) => {
                Some(self.attribution(model, Some(&version), trigger).await?)
            }
            Some(_) => None,
        };
        let already_failed = self.failed.lock().expect("failed").get(model) == Some(&version);
        let pending = match &change {
            Some((cause, actor)) if !already_failed => Some(
                self.store
                    .begin_deployment(model, Some(&version), serving.as_deref(), cause, actor)
                    .await?,
            ),
            _ => None,
        };
        match target.apply(&rendered).await {
            Ok(applied) => {
                self.failed.lock().expect("failed").remove(model);
                let edited = change.is_none()
                    && actual
                        .as_ref()
                        .is_some_and(|actual| actual.generation != applied.generation);
                let message = match &actual {
                    None if created_before => "put back: deleted outside Slipway",
                    _ if edited => "put back: edited outside Slipway",
                    _ => "applied",
                };
                let previous = serving.as_deref();
                match (pending, &change) {
                    (Some(id), _) => {
                        self.store
                            .finish_deployment(&id, "serving", message)
                            .await?
                    }
                    // A change that had failed before and went through now.
                    (None, Some((cause, actor))) => {
                        self.record(
                            model,
                            &version,
                            previous,
                            (cause, actor),
                            "serving",
                            message,
                        )
                        .await?
                    }
                    (None, None) if edited => {
                        self.record(
                            model,
                            &version,
                            previous,
                            ("drift", "slipway"),
                            "serving",
                            message,
                        )
                        .await?
                    }
                    (None, None) => {}
                }
                self.set_cluster(binding, Some(version), applied.status);
            }
            Err(err) => {
                match pending {
                    Some(id) => {
                        self.store.finish_deployment(&id, "failed", &err.0).await?;
                        self.failed
                            .lock()
                            .expect("failed")
                            .insert(model.clone(), version);
                    }
                    None => {
                        self.record_failure(model, &version, serving.as_deref(), trigger, &err.0)
                            .await?
                    }
                }
                self.set_cluster(binding, serving, failed_status(&err.0));
            }
        }
        Ok(())
    }

    /// Records that `version` cannot be deployed, once: while the same
    /// version keeps failing, passes retry without adding rows.
    async fn record_failure(
        &self,
        model: &str,
        version: &str,
        serving: Option<&str>,
        trigger: &Trigger,
        why: &str,
    ) -> Result<()> {
        if self
            .failed
            .lock()
            .expect("failed")
            .get(model)
            .map(String::as_str)
            == Some(version)
        {
            return Ok(());
        }
        let (cause, actor) = self.attribution(model, Some(version), trigger).await?;
        self.record(model, version, serving, (&cause, &actor), "failed", why)
            .await?;
        self.failed
            .lock()
            .expect("failed")
            .insert(model.into(), version.into());
        Ok(())
    }

    /// A change that is over as soon as it is known: one finished row.
    async fn record(
        &self,
        model: &str,
        version: &str,
        previous: Option<&str>,
        (cause, actor): (&str, &str),
        outcome: &str,
        message: &str,
    ) -> Result<()> {
        let id = self
            .store
            .begin_deployment(model, Some(version), previous, cause, actor)
            .await?;
        self.store.finish_deployment(&id, outcome, message).await
    }

    /// Nothing is Production in MLflow: the binding says whether what
    /// serves keeps serving (the default) or is removed.
    async fn no_production_on_cluster(
        &self,
        binding: &DeploymentBinding,
        object: &ServingObject,
        actual: Option<Observed>,
        trigger: &Trigger,
    ) -> Result<()> {
        let Some(target) = &self.seldon else {
            return Ok(());
        };
        let serving = actual.as_ref().and_then(|actual| actual.version.clone());
        match (binding.no_production, actual) {
            (NoProduction::Keep, Some(actual)) => {
                let status = ServingStatus {
                    message: no_production_message(serving.as_deref()),
                    ..actual.status
                };
                self.set_cluster(binding, serving, status);
            }
            (_, None) => self.set_cluster(binding, None, idle_status()),
            (NoProduction::Remove, Some(_)) => {
                let (cause, actor) = self.attribution(&binding.model, None, trigger).await?;
                let id = self
                    .store
                    .begin_deployment(&binding.model, None, serving.as_deref(), &cause, &actor)
                    .await?;
                match target.delete(&object.namespace, &object.name).await {
                    Ok(()) => {
                        self.store
                            .finish_deployment(&id, "removed", "nothing is in production")
                            .await?;
                        self.store.forget_serving_object(object).await?;
                        self.set_cluster(binding, None, idle_status());
                    }
                    Err(err) => {
                        self.store.finish_deployment(&id, "failed", &err.0).await?;
                        self.set_cluster(binding, serving, failed_status(&err.0));
                    }
                }
            }
        }
        Ok(())
    }

    /// Local model servers of models no longer bound to the local target
    /// (the deployment was deleted, or moved to another target): stopped,
    /// and the history says why.
    async fn remove_unbound_local(
        &self,
        bindings: &[DeploymentBinding],
        trigger: &Trigger,
    ) -> Result<()> {
        for model in self.local.models() {
            let bound_here = bindings
                .iter()
                .any(|binding| binding.model == model && binding.target == ServingTarget::Local);
            if bound_here || self.local.is_stopping() {
                continue;
            }
            let (server, status) = self.local.status(&model);
            if server.is_none() && status.state != ServingState::Creating {
                // Only a failure is remembered: nothing to stop or record.
                self.local.undeploy(&model).await;
                continue;
            }
            let serving = server.map(|server| server.version);
            let id = self
                .store
                .begin_deployment(
                    &model,
                    None,
                    serving.as_deref(),
                    &trigger.cause,
                    &trigger.actor,
                )
                .await?;
            self.local.undeploy(&model).await;
            self.store
                .finish_deployment(
                    &id,
                    "removed",
                    "the deployment was deleted or moved to another target",
                )
                .await?;
            tracing::info!(%model, "stopped the local model server of a model no longer bound to it");
        }
        Ok(())
    }

    /// Cluster objects Slipway created for bindings that are gone: deleted,
    /// or left serving and marked, as configured.
    async fn sweep_unbound(&self, bindings: &[DeploymentBinding]) -> Result<()> {
        let Some(target) = &self.seldon else {
            return Ok(());
        };
        let bound: Vec<ServingObject> = bindings
            .iter()
            .filter(|binding| binding.target == ServingTarget::Seldon)
            .map(seldon_object)
            .collect();
        for object in self.store.serving_objects().await? {
            if object.target != SELDON || bound.contains(&object) {
                continue;
            }
            let outcome = match target.unbound() {
                UnboundObjects::Delete => target.delete(&object.namespace, &object.name).await,
                UnboundObjects::Keep => target.mark_unbound(&object.namespace, &object.name).await,
            };
            // A failure is logged by the target and tried again next pass.
            if outcome.is_ok() {
                let what = match target.unbound() {
                    UnboundObjects::Delete => "deleted",
                    UnboundObjects::Keep => "left serving and marked",
                };
                self.store.forget_serving_object(&object).await?;
                tracing::info!(model = %object.model, namespace = %object.namespace, name = %object.name,
                    "the binding is gone: its SeldonDeployment was {what}");
            }
        }
        Ok(())
    }

    /// Who a change is recorded for: the change of Production made through
    /// Slipway that asked for this version, if not yet deployed, else the
    /// pass's own trigger. Whichever pass first deploys it records it as
    /// theirs, even a poll that saw MLflow's change before the promotion's
    /// own trigger.
    async fn attribution(
        &self,
        model: &str,
        version: Option<&str>,
        trigger: &Trigger,
    ) -> Result<(String, String)> {
        let claimed = match version {
            Some(version) => self.store.claim_promotion(model, version).await?,
            None => None,
        };
        Ok(claimed.unwrap_or_else(|| (trigger.cause.clone(), trigger.actor.clone())))
    }

    fn set_cluster(
        &self,
        binding: &DeploymentBinding,
        version: Option<String>,
        status: ServingStatus,
    ) {
        self.cluster
            .lock()
            .expect("cluster")
            .insert(binding.model.clone(), (version, status));
    }

    /// Makes `version` Production in MLflow (stage or alias, as bound),
    /// records who did it, and converges at once.
    /// A deployer's promotion, where the binding needs no approval.
    pub async fn promote(
        &self,
        user: &User,
        model: &str,
        version: &str,
        expected: Expected,
    ) -> Result<(), AppError> {
        authorize(user, Action::Promote { model })?;
        if self.binding(model)?.requires_approval {
            return Err(AppError::Forbidden(format!(
                "{model} needs an approver: ask for a promotion instead"
            )));
        }
        self.mark_production(user, model, version, "promote", expected)
            .await
    }

    /// Carries out an approved request, as its approver: only if Production
    /// is still what it was when the request was made.
    pub async fn promote_approved(
        &self,
        approver: &User,
        request: &app::model::PromotionRequest,
    ) -> Result<(), AppError> {
        authorize(
            approver,
            Action::Approve {
                model: &request.model,
                requested_by: &request.requested_by,
            },
        )?;
        let expected = Expected::Version(request.base_version.clone());
        self.mark_production(
            approver,
            &request.model,
            &request.version,
            "approval",
            expected,
        )
        .await
    }

    pub fn requires_approval(&self, model: &str) -> Result<bool, AppError> {
        Ok(self.binding(model)?.requires_approval)
    }

    /// The version MLflow marks Production for `model` right now (not as
    /// of the last pass).
    pub async fn production_version(&self, model: &str) -> Result<Option<String>, AppError> {
        let binding = self.binding(model)?;
        let found = self.mlflow.get_registered_model(model).await?;
        Ok(desired_versions(std::slice::from_ref(&binding), &[found])
            .remove(model)
            .flatten())
    }

    /// Makes `version` the Production one in MLflow and deploys it; the
    /// caller has decided that `user` may. Changes of one model go one at a
    /// time, in order of arrival, each recorded before MLflow is asked and
    /// completed after; a change that expected another Production version
    /// than the one it finds is refused.
    async fn mark_production(
        &self,
        user: &User,
        model: &str,
        version: &str,
        cause: &str,
        expected: Expected,
    ) -> Result<(), AppError> {
        let binding = self.binding(model)?;
        let turn = self.store.lock_model(model).await?;
        let current = self.production_version(model).await?;
        let expected_version = match &expected {
            Expected::Any => None,
            Expected::Version(version) => Some(version.as_deref()),
        };
        let mut promotion = NewPromotion {
            model,
            cause,
            version,
            previous_version: current.as_deref(),
            expected_version,
            actor: &user.name,
            audit_id: None,
        };
        let detail = format!("{} → v{version}", version_words(current.as_deref()));
        let subject = format!("model:{model}");
        if let Some(expected) = expected_version
            && expected != current.as_deref()
        {
            let why = format!(
                "Production is {} now, not {} as when you looked; nothing was changed. Look again, then decide.",
                version_words(current.as_deref()),
                version_words(expected)
            );
            self.store.refuse_promotion(&promotion, &why).await?;
            self.store
                .record_event(
                    &user.name,
                    cause,
                    &subject,
                    &format!("{detail}: refused, {why}"),
                )
                .await?;
            return Err(AppError::Conflict(why));
        }
        // Recorded before MLflow is asked, completed after: a crash in
        // between leaves rows that say what was attempted, settled on the
        // next start.
        let audit = self
            .store
            .begin_event(&user.name, cause, &subject, &detail)
            .await?;
        promotion.audit_id = Some(&audit);
        let id = self.store.begin_promotion(&promotion).await?;
        let marked = match binding.production {
            ProductionMarker::Stage => self.mlflow.transition_to_production(model, version).await,
            ProductionMarker::Alias => self.mlflow.set_alias(model, &binding.alias, version).await,
        };
        if let Err(err) = marked {
            let err = AppError::from(err);
            let outcome = format!("failed: {err}");
            self.store.finish_promotion(&id, "failed", &outcome).await?;
            self.store.complete_event(&audit, &outcome).await?;
            return Err(err);
        }
        self.store.finish_promotion(&id, "marked", "").await?;
        self.store.complete_event(&audit, "done").await?;
        drop(turn);
        self.trigger(Trigger {
            cause: cause.into(),
            actor: user.name.clone(),
            retry_model: Some(model.into()),
        });
        Ok(())
    }

    /// Settles changes a crash left half done: `marked` if MLflow has the
    /// change, else `interrupted`, each with its audit entry. Each waits for
    /// its model's turn, so a change still under way elsewhere finishes
    /// first. The number settled.
    pub async fn settle_interrupted(&self) -> Result<usize, AppError> {
        let mut settled = 0;
        for left in self.store.unfinished_promotions().await? {
            let _turn = self.store.lock_model(&left.model).await?;
            // Still `marking` on our turn: whoever wrote it is gone.
            let still_open = self
                .store
                .unfinished_promotions()
                .await?
                .iter()
                .any(|open| open.id == left.id);
            if !still_open {
                continue;
            }
            let (state, message) = match self.production_version(&left.model).await {
                Ok(current) if current.as_deref() == Some(left.version.as_str()) => (
                    "marked",
                    "finished after a restart: MLflow had made the change",
                ),
                Ok(_) => (
                    "interrupted",
                    "Slipway stopped before MLflow confirmed the change; MLflow does not have it, nothing changed",
                ),
                Err(AppError::NotFound(_)) => (
                    "interrupted",
                    "Slipway stopped during the change, and the model is no longer bound",
                ),
                Err(err) => return Err(err),
            };
            self.store
                .finish_promotion(&left.id, state, message)
                .await?;
            if let Some(audit) = &left.audit_id {
                let outcome = match state {
                    "marked" => "done (settled after a restart)".to_string(),
                    _ => format!("failed: {message}"),
                };
                self.store.complete_event(audit, &outcome).await?;
            }
            tracing::warn!(model = %left.model, version = %left.version, %state, "settled a change a restart interrupted");
            settled += 1;
        }
        Ok(settled)
    }

    /// Makes the version that served before the current Production one
    /// Production again: the newest other version the history records as
    /// serving. "Current" is MLflow's, not the target's, which may not yet
    /// have recorded the last change as serving.
    pub async fn rollback(
        &self,
        user: &User,
        model: &str,
        expected: Expected,
    ) -> Result<String, AppError> {
        authorize(user, Action::Rollback { model })?;
        let current = self.production_version(model).await?;
        let history = self.store.deployment_history(model, 200).await?;
        let previous = history
            .iter()
            .filter(|event| event.outcome == "serving")
            .filter_map(|event| event.version.clone())
            .find(|version| Some(version) != current.as_ref())
            .ok_or_else(|| {
                AppError::InvalidInput(format!("{model} has no earlier version to roll back to"))
            })?;
        self.mark_production(user, model, &previous, "rollback", expected)
            .await?;
        Ok(previous)
    }

    fn binding(&self, model: &str) -> Result<DeploymentBinding, AppError> {
        self.bindings()
            .iter()
            .find(|binding| binding.model == model)
            .cloned()
            .ok_or_else(|| AppError::NotFound(format!("{model} has no deployment")))
    }

    pub fn view(&self, model: &str) -> Result<DeploymentView, AppError> {
        let binding = self.binding(model)?;
        let known = self.desired.lock().expect("desired").get(model).cloned();
        let desired = known.clone().flatten();
        let (serving, status) = match binding.target {
            ServingTarget::Local => {
                let (server, mut status) = self.local.status(model);
                let serving = server.map(|server| server.version);
                // The cluster path says this itself, in its pass.
                if known == Some(None) {
                    status.message = no_production_message(serving.as_deref());
                }
                (serving, status)
            }
            ServingTarget::Seldon => self
                .cluster
                .lock()
                .expect("cluster")
                .get(model)
                .cloned()
                .unwrap_or((None, failed_status("not reconciled yet"))),
        };
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
            target: match binding.target {
                ServingTarget::Local => "local".into(),
                ServingTarget::Seldon => "seldon".into(),
            },
            namespace: binding.namespace.clone(),
            marker: match binding.production {
                ProductionMarker::Stage => "stage Production".into(),
                ProductionMarker::Alias => format!("alias @{}", binding.alias),
            },
            desired_version: desired,
            serving_version: serving,
            state: format!("{:?}", status.state),
            message,
            address: status.address,
            last_change_ms: None,
        })
    }
}

fn seldon_object(binding: &DeploymentBinding) -> ServingObject {
    ServingObject {
        target: SELDON.into(),
        namespace: binding.namespace.clone().unwrap_or_default(),
        name: binding.object_name(),
        model: binding.model.clone(),
    }
}

/// What a change of Production expects to find there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Whatever is there (a client that did not say).
    Any,
    /// This version, or `None`: nothing in Production.
    Version(Option<String>),
}

fn version_words(version: Option<&str>) -> String {
    version.map_or("nothing".to_string(), |version| format!("v{version}"))
}

fn no_production_message(serving: Option<&str>) -> String {
    match serving {
        Some(version) => {
            format!("no version is in production in MLflow; v{version} keeps serving until one is")
        }
        None => "no version is in production in MLflow".into(),
    }
}

/// Nothing in production and nothing serving: not a failure.
fn idle_status() -> ServingStatus {
    ServingStatus {
        state: ServingState::Idle,
        message: no_production_message(None),
        address: None,
    }
}

fn failed_status(message: &str) -> ServingStatus {
    ServingStatus {
        state: ServingState::Failed,
        message: message.into(),
        address: None,
    }
}
