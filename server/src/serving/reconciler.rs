//! The reconciler: level-triggered and idempotent. Desired state: the
//! Production version of each bound model, read from MLflow in one request.
//! Actual state: what the target serves. Each pass converges the two, so a
//! crash at any point is repaired by the next pass from MLflow and the
//! target alone. Passes run on Slipway's own promotions (at once), on MLflow
//! webhooks, and on a poll for what webhooks do not report (stage changes).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use app::access::{Action, authorize};
use app::error::AppError;
use app::model::{DeploymentView, User};
use tokio::sync::{mpsc, watch};

use super::desired::desired_versions;
use super::local::{LocalServing, LocalTarget};
use super::seldon::SeldonTarget;
use super::target::{Ledger, Target};
use super::{ServingState, failed_status, no_production_message};
use crate::catalog::{DeploymentBinding, ProductionMarker, ServingTarget};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::store::{NewPromotion, Seeded, Store};

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
        let mut targets: Vec<Arc<dyn Target>> = vec![Arc::new(LocalTarget::new(local))];
        if let Some(seldon) = seldon {
            targets.push(Arc::new(seldon));
        }
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

    pub(super) fn store(&self) -> &Store {
        self.ledger.store()
    }

    /// The target of this kind, if Slipway has one (a cluster's only with
    /// a cluster).
    pub(super) fn target(&self, kind: ServingTarget) -> Option<&Arc<dyn Target>> {
        self.targets.iter().find(|target| target.kind() == kind)
    }

    /// A changed deployment starts afresh: a failure recorded for it, and
    /// what its target saw last pass, no longer apply.
    pub(super) fn forget_failure(&self, model: &str) {
        self.ledger.forget_failure(model);
        for target in &self.targets {
            target.forget(model);
        }
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
                .converge(&self.ledger, binding, version, trigger)
                .await;
            if let Err(err) = outcome {
                tracing::warn!(model = %binding.model, error = %err, "converging");
            }
        }
        Ok(())
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
        let found = self.ledger.mlflow().get_registered_model(model).await?;
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
        let turn = self.store().lock_model(model).await?;
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
            self.store().refuse_promotion(&promotion, &why).await?;
            self.store()
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
            .store()
            .begin_event(&user.name, cause, &subject, &detail)
            .await?;
        promotion.audit_id = Some(&audit);
        let id = self.store().begin_promotion(&promotion).await?;
        let marked = match binding.production {
            ProductionMarker::Stage => {
                self.ledger
                    .mlflow()
                    .transition_to_production(model, version)
                    .await
            }
            ProductionMarker::Alias => {
                self.ledger
                    .mlflow()
                    .set_alias(model, &binding.alias, version)
                    .await
            }
        };
        if let Err(err) = marked {
            let err = AppError::from(err);
            let outcome = format!("failed: {err}");
            self.store()
                .finish_promotion(&id, "failed", &outcome)
                .await?;
            self.store().complete_event(&audit, &outcome).await?;
            return Err(err);
        }
        self.store().finish_promotion(&id, "marked", "").await?;
        self.store().complete_event(&audit, "done").await?;
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
        for left in self.store().unfinished_promotions().await? {
            let _turn = self.store().lock_model(&left.model).await?;
            // Still `marking` on our turn: whoever wrote it is gone.
            let still_open = self
                .store()
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
            self.store()
                .finish_promotion(&left.id, state, message)
                .await?;
            if let Some(audit) = &left.audit_id {
                let outcome = match state {
                    "marked" => "done (settled after a restart)".to_string(),
                    _ => format!("failed: {message}"),
                };
                self.store().complete_event(audit, &outcome).await?;
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
        let history = self.store().deployment_history(model, 200).await?;
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
        let (serving, mut status) = match self.target(binding.target) {
            Some(target) => target.status(&binding),
            None => (
                None,
                failed_status(
                    "Slipway runs without a cluster (SLIPWAY_EXECUTOR=kubernetes enables it)",
                ),
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
            target: match binding.target {
                ServingTarget::Local => "local".into(),
                ServingTarget::Seldon => "seldon".into(),
            },
            namespace: binding.namespace.clone(),
            marker: binding.marker(),
            desired_version: desired,
            serving_version: serving,
            state: format!("{:?}", status.state),
            message,
            address: status.address,
            last_change_ms: None,
        })
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
