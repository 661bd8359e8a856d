//! What every serving target implements, and the ledger targets record
//! through. The reconciler knows targets only by [`Target`]: a new one
//! (KServe, Seldon Core 2) is one file implementing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use app::model::DeploymentOutcome;

use super::ServingStatus;
use crate::adapters::mlflow::MlflowClient;
use crate::catalog::{DeploymentBinding, ServingTarget as TargetKind};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::deployments::SETTINGS_CAUSE;

/// Why a pass runs, and for whom what it changes is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// promote, rollback, approval, settings, webhook, poll, retry, startup.
    pub cause: String,
    pub actor: String,
    /// A change of this model asks to retry even a version that failed.
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

#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// The kind bindings name.
    fn kind(&self) -> TargetKind;

    /// Renders what the binding wants and makes the target serve it:
    /// `version` of the model, or with `None` (nothing in production) what
    /// the binding's `no_production` says. Level-triggered: called on every
    /// pass, and a no-op where the target already serves what is wanted.
    /// Every change goes into the ledger's history.
    async fn converge(
        &self,
        ledger: &Arc<Ledger>,
        binding: &DeploymentBinding,
        version: Option<String>,
        trigger: &Trigger,
    ) -> Result<()>;

    /// Serves a rollout's canary beside the binding's version with its
    /// share of the requests, or, with `None`, stops any canary. Only
    /// targets that can split traffic are given rollouts (their start is
    /// refused elsewhere); the rest have nothing to stop.
    async fn converge_canary(
        &self,
        _ledger: &Arc<Ledger>,
        _binding: &DeploymentBinding,
        _canary: Option<&app::model::Rollout>,
    ) -> Result<()> {
        Ok(())
    }

    /// The version serving the binding now and its status, from the
    /// target's own signals (an object's conditions, a server's health).
    fn status(&self, binding: &DeploymentBinding) -> (Option<String>, ServingStatus);

    /// What a canary's objects of their own say (Seldon Core 2's canary
    /// Model and Experiment), as the last pass saw them.
    fn canary_status(&self, _binding: &DeploymentBinding) -> Option<String> {
        None
    }

    /// Removes what this target serves for models that no binding of its
    /// kind explains any more (a deployment deleted or moved elsewhere).
    async fn remove_unbound(
        &self,
        ledger: &Arc<Ledger>,
        bindings: &[DeploymentBinding],
        trigger: &Trigger,
    ) -> Result<()>;

    /// A changed binding starts afresh: what the last pass saw goes.
    fn forget(&self, _model: &str) {}

    /// Changes to the objects this target made in `namespace`, made by
    /// anyone (an edit, a deletion, a status the operator wrote), as they
    /// happen: each item asks for a pass. `None`: the target has nothing
    /// to watch (local serving, whose servers are checked every pass).
    fn watch(&self, _namespace: &str) -> Option<futures::stream::BoxStream<'static, ()>> {
        None
    }

    /// Slipway stops: what cannot outlive it (its child processes) stops;
    /// what a cluster serves stays.
    async fn shutdown(&self) {}
}

/// What targets share: the deployment history, the versions that failed
/// (so a failing version is recorded once, not every pass), MLflow for
/// where a version's files are, and the restart counter.
pub struct Ledger {
    store: Store,
    mlflow: MlflowClient,
    /// The version of each model whose deployment failed and was recorded.
    failed: Mutex<HashMap<String, String>>,
    metrics: OnceLock<Arc<Metrics>>,
}

impl Ledger {
    pub fn new(store: Store, mlflow: MlflowClient) -> Self {
        Self {
            store,
            mlflow,
            failed: Mutex::default(),
            metrics: OnceLock::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn mlflow(&self) -> &MlflowClient {
        &self.mlflow
    }

    pub fn report_to(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.get()
    }

    /// The version of `model` whose deployment failed last, if any.
    pub fn failed_version(&self, model: &str) -> Option<String> {
        self.failed.lock().expect("failed").get(model).cloned()
    }

    pub fn set_failed(&self, model: &str, version: &str) {
        self.failed
            .lock()
            .expect("failed")
            .insert(model.into(), version.into());
    }

    pub fn forget_failure(&self, model: &str) {
        self.failed.lock().expect("failed").remove(model);
    }

    /// Who a change is recorded for: the change of Production made through
    /// Slipway that asked for this version, if not yet deployed, else the
    /// pass's own trigger. Whichever pass first deploys it records it as
    /// theirs, even a poll that saw MLflow's change before the promotion's
    /// own trigger.
    pub async fn attribution(
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

    /// Who a pass carrying out a settings change (a deleted or moved
    /// deployment) credits: whoever made it, whichever pass comes first;
    /// the trigger's when the history has no such change on top.
    pub async fn settings_attribution(
        &self,
        model: &str,
        trigger: &Trigger,
    ) -> Result<(String, String)> {
        Ok(match self.store.settings_changed_last_by(model).await? {
            Some(actor) => (SETTINGS_CAUSE.to_string(), actor),
            None => (trigger.cause.clone(), trigger.actor.clone()),
        })
    }

    /// A change that is over as soon as it is known: one finished row.
    pub async fn record(
        &self,
        model: &str,
        version: &str,
        previous: Option<&str>,
        (cause, actor): (&str, &str),
        outcome: DeploymentOutcome,
        message: &str,
    ) -> Result<()> {
        let id = self
            .store
            .begin_deployment(model, Some(version), previous, cause, actor)
            .await?;
        self.store.finish_deployment(&id, outcome, message).await
    }

    /// Records that `version` cannot be deployed, once: while the same
    /// version keeps failing, passes retry without adding rows.
    pub async fn record_failure(
        &self,
        model: &str,
        version: &str,
        serving: Option<&str>,
        trigger: &Trigger,
        why: &str,
    ) -> Result<()> {
        if self.failed_version(model).as_deref() == Some(version) {
            return Ok(());
        }
        let (cause, actor) = self.attribution(model, Some(version), trigger).await?;
        self.record(
            model,
            version,
            serving,
            (&cause, &actor),
            DeploymentOutcome::Failed,
            why,
        )
        .await?;
        self.set_failed(model, version);
        Ok(())
    }
}
