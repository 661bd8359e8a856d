//! Changes of a model's Production version: promote, ask for a promotion,
//! approve or reject one, roll back. Where a deployment requires approval,
//! a deployer's "Promote" becomes a request holding the evidence as it was
//! then; another person with the approver role approves it (which promotes
//! at once) or rejects it. A request asked for before another version was
//! promoted is stale and cannot be approved.
//!
//! Changes of one model go one at a time, in order of arrival (across
//! replicas too), each a `promotions` row written before MLflow is asked
//! and completed after, with its audit entry: a crash in between is
//! settled on the next start (`settle_interrupted`). The reconciler then
//! deploys what MLflow marks.

use std::sync::Arc;

use app::access::{Action, User, authorize};
use app::model::{
    AuditAction, NewRollout, Notification, NotificationEvent, PromotionPreview, PromotionRequest,
    RequestState,
};
use app::routes::{approval_href, deployment_href};

use super::audit::{Audit, Begun, Outcome, complete_by_id};
use super::deployments::Deployments;
use super::reads::version_summary;
use crate::adapters::mlflow::MlflowClient;
use crate::catalog::{DeploymentBinding, ProductionMarker};
use crate::error::{Error, Result};
use crate::serving::desired::desired_versions;
use crate::serving::reconciler::Reconciler;
use crate::serving::target::Trigger;
use crate::store::Store;
use crate::store::promotions::{NewPromotion, PromotionState};
use crate::store::requests::NewRequest;

/// What a deployer's "Promote" did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promoted {
    /// Production in MLflow now; deploying.
    Now,
    /// Waiting for an approver: the request's id.
    Requested(String),
}

/// Starts a canary an approver approved: the rollouts service, which sits
/// above this one (its promotions go through here), handed in by the
/// caller of [`Promotions::approve`].
#[async_trait::async_trait]
pub trait StartsApprovedRollouts: Send + Sync {
    /// Starts `asked` on behalf of the request's requester as approved by
    /// `approver`; a `Conflict` where it can no longer start as asked.
    async fn start_approved(
        &self,
        approver: &User,
        request: &PromotionRequest,
        asked: &NewRollout,
    ) -> Result<()>;
}

/// What a change of Production expects to find there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Whatever is there (a client that did not say).
    Any,
    /// This version, or `None`: nothing in Production.
    Version(Option<String>),
}

/// Why Production changes: the audit action and the history's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Promote,
    Rollback,
    Approval,
}

impl Cause {
    fn action(self) -> AuditAction {
        match self {
            Cause::Promote => AuditAction::Promote,
            Cause::Rollback => AuditAction::Rollback,
            Cause::Approval => AuditAction::Approval,
        }
    }

    /// The history's word for it: the audit action's.
    fn as_str(self) -> &'static str {
        self.action().as_str()
    }
}

/// Longest reason or comment kept.
const MAX_TEXT: usize = 2_000;

pub struct Promotions {
    store: Store,
    audit: Audit,
    /// MLflow as it is now (never a kept answer): what Production is.
    mlflow: MlflowClient,
    /// The pages' client, for the evidence a confirm page shows.
    pages: MlflowClient,
    reconciler: Arc<Reconciler>,
    /// Saves the settings changes approvers approve.
    deployments: Arc<Deployments>,
}

impl Promotions {
    pub fn new(
        store: Store,
        mlflow: MlflowClient,
        pages: MlflowClient,
        reconciler: Arc<Reconciler>,
        deployments: Arc<Deployments>,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            mlflow,
            pages,
            reconciler,
            deployments,
        }
    }

    /// Makes `version` Production (and deploys it at once), or, where the
    /// deployment requires approval, asks for it with `reason`.
    pub async fn promote(
        &self,
        user: &User,
        model: &str,
        version: &str,
        reason: &str,
        expected: Expected,
    ) -> Result<Promoted> {
        authorize(user, Action::Promote { model })?;
        if version.trim().is_empty() {
            return Err(Error::invalid("choose a version to promote"));
        }
        let binding = self.binding(model).await?;
        if !binding.requires_approval {
            self.mark_production(user, &binding, version, (Cause::Promote, reason), expected)
                .await?;
            self.tell(
                NotificationEvent::Promoted,
                format!(
                    "{} promoted {model} v{version}: {}",
                    user.actor(),
                    clipped(reason)
                ),
                deployment_href(model),
                model,
                version,
                None,
                user,
            )
            .await;
            return Ok(Promoted::Now);
        }
        let reason = checked_text(reason, "say why this version should go to production")?;
        let base_version = self.production_version(&binding).await?;
        if base_version.as_deref() == Some(version) {
            return Err(Error::invalid(format!(
                "v{version} is already in production"
            )));
        }
        let evidence = self.preview(&binding, version).await?;
        let request = super::requests::file(
            &self.store,
            user,
            &NewRequest {
                model,
                version,
                reason: &reason,
                requested_by: &user.name,
                base_version: base_version.as_deref(),
                evidence: Some(&evidence),
                settings: None,
                rollout: None,
            },
            &format!("v{version}: {reason}"),
            format!(
                "{} asks to promote {model} v{version}: {}",
                user.actor(),
                clipped(&reason)
            ),
        )
        .await?;
        Ok(Promoted::Requested(request.id))
    }

    /// Asks an approver to let `asked` start as a canary beside
    /// `base_version` of a deployment that requires approval: a canary
    /// answers real requests, so nobody serves a version alone there.
    pub async fn request_rollout(
        &self,
        user: &User,
        binding: &DeploymentBinding,
        base_version: Option<&str>,
        asked: &NewRollout,
    ) -> Result<PromotionRequest> {
        let model = binding.model.as_str();
        authorize(user, Action::Promote { model })?;
        let reason = checked_text(
            &asked.reason,
            "say why this version should take real requests (the deployment requires approval)",
        )?;
        let evidence = self.preview(binding, &asked.version).await?;
        let asked_for = rollout_words(asked);
        super::requests::file(
            &self.store,
            user,
            &NewRequest {
                model,
                version: &asked.version,
                reason: &reason,
                requested_by: &user.name,
                base_version,
                evidence: Some(&evidence),
                settings: None,
                rollout: Some(asked),
            },
            &format!("{asked_for}: {reason}"),
            format!(
                "{} asks to start {model} {asked_for}: {}",
                user.actor(),
                clipped(&reason)
            ),
        )
        .await
    }

    /// An approver's yes: promotes at once, if Production is still what
    /// it was when the request was made (or saves the settings change, or
    /// starts the canary through `rollouts`).
    pub async fn approve(
        &self,
        user: &User,
        id: &str,
        comment: &str,
        rollouts: &dyn StartsApprovedRollouts,
    ) -> Result<PromotionRequest> {
        let request = self.pending_request(user, id).await?;
        let comment = comment.trim().chars().take(MAX_TEXT).collect::<String>();
        if let Some(change) = &request.settings {
            let audit = self
                .decide(
                    user,
                    &request,
                    AuditAction::Approve,
                    RequestState::Approving,
                    &comment,
                )
                .await?;
            let saved = self
                .deployments
                .apply_approved(user, &request, change)
                .await;
            return self
                .finish_approved(user, &request, audit, saved, "saved; converging")
                .await;
        }
        let binding = self.binding(&request.model).await?;
        if let Some(why) = self.staleness(&binding, &request).await? {
            let decided = self
                .store
                .decide_promotion_request(
                    id,
                    RequestState::Pending,
                    RequestState::Stale,
                    &user.name,
                    &comment,
                )
                .await?;
            if decided {
                self.audit
                    .record(
                        &user.actor(),
                        AuditAction::Approve,
                        &subject(&request.model),
                        &format!("refused, stale: {why}"),
                    )
                    .await?;
            }
            return Err(Error::invalid(format!(
                "This request is stale and cannot be approved: {why}. Ask for a new one."
            )));
        }
        let audit = self
            .decide(
                user,
                &request,
                AuditAction::Approve,
                RequestState::Approving,
                &comment,
            )
            .await?;
        if let Some(asked) = &request.rollout {
            let started = rollouts.start_approved(user, &request, asked).await;
            return self
                .finish_approved(user, &request, audit, started, "the canary starts")
                .await;
        }
        let expected = Expected::Version(request.base_version.clone());
        let promoted = self
            .mark_production(
                user,
                &binding,
                &request.version,
                (Cause::Approval, &request.reason),
                expected,
            )
            .await;
        let (state, note) = match &promoted {
            Ok(()) => (RequestState::Approved, "promoted; deploying".to_string()),
            Err(err) => (RequestState::Failed, Outcome::failed(err).text()),
        };
        self.store
            .finish_promotion_request(id, state, &note)
            .await?;
        audit.finish(promoted).await?;
        tracing::info!(model = %request.model, version = %request.version, approver = %user.name, request = %id, "promotion approved");
        self.tell_decision(true, user, &request, &note).await;
        self.request(id).await
    }

    /// Ends an approved request that is not a promotion once `carried` out
    /// (`done` says so): a `Conflict` means what it was decided on moved
    /// meanwhile, and the request is stale.
    async fn finish_approved(
        &self,
        user: &User,
        request: &PromotionRequest,
        audit: Begun,
        carried: Result<()>,
        done: &str,
    ) -> Result<PromotionRequest> {
        let (state, note) = match &carried {
            Ok(()) => (RequestState::Approved, done.to_string()),
            Err(Error::Conflict(why)) => (RequestState::Stale, why.clone()),
            Err(err) => (RequestState::Failed, Outcome::failed(err).text()),
        };
        self.store
            .finish_promotion_request(&request.id, state, &note)
            .await?;
        tracing::info!(model = %request.model, approver = %user.name, request = %request.id, ?state, "request decided");
        let finished = audit.finish(carried).await;
        if state == RequestState::Stale {
            return Err(Error::invalid(format!(
                "This request is stale and cannot be approved: {note}. Ask for a new one."
            )));
        }
        finished?;
        self.tell_decision(true, user, request, &note).await;
        self.request(&request.id).await
    }

    /// An approver's no, with why; nothing changes in MLflow.
    pub async fn reject(&self, user: &User, id: &str, comment: &str) -> Result<PromotionRequest> {
        let request = self.pending_request(user, id).await?;
        let comment = checked_text(comment, "say why you reject it")?;
        let audit = self
            .decide(
                user,
                &request,
                AuditAction::Reject,
                RequestState::Rejected,
                &comment,
            )
            .await?;
        audit.complete(Outcome::Done).await?;
        self.tell_decision(false, user, &request, &comment).await;
        self.request(id).await
    }

    /// Makes the version that served before the current Production one
    /// Production again: the newest other version the history records as
    /// serving. "Current" is MLflow's, not the target's, which may not yet
    /// have recorded the last change as serving. The version rolled back to.
    pub async fn rollback(
        &self,
        user: &User,
        model: &str,
        reason: &str,
        expected: Expected,
    ) -> Result<String> {
        authorize(user, Action::Rollback { model })?;
        let binding = self.binding(model).await?;
        let previous = self.rollback_target(&binding).await?.ok_or_else(|| {
            Error::invalid(format!(
                "{model} has served no earlier version to roll back to"
            ))
        })?;
        self.mark_production(
            user,
            &binding,
            &previous,
            (Cause::Rollback, reason),
            expected,
        )
        .await?;
        self.tell(
            NotificationEvent::Rollback,
            format!(
                "{} rolled {model} back to v{previous}: {}",
                user.actor(),
                clipped(reason)
            ),
            deployment_href(model),
            model,
            &previous,
            None,
            user,
        )
        .await;
        Ok(previous)
    }

    /// What a rollback's confirm step shows: Production now and the version
    /// a rollback would make Production again; `None` if there is none.
    pub async fn rollback_preview(&self, model: &str) -> Result<Option<PromotionPreview>> {
        let binding = self.binding(model).await?;
        match self.rollback_target(&binding).await? {
            Some(previous) => Ok(Some(self.preview(&binding, &previous).await?)),
            None => Ok(None),
        }
    }

    /// The newest version the history records as serving, other than
    /// MLflow's Production one; `None` if there is none.
    async fn rollback_target(&self, binding: &DeploymentBinding) -> Result<Option<String>> {
        let model = binding.model.as_str();
        let current = self.production_version(binding).await?;
        let history = self.store.deployment_history(model, 200).await?;
        Ok(history
            .iter()
            .filter(|event| event.outcome == app::model::DeploymentOutcome::Serving)
            .filter_map(|event| event.version.clone())
            .find(|version| Some(version) != current.as_ref()))
    }

    /// The Production version now and `version`, side by side: what a
    /// promotion's confirm step shows, and what a request keeps.
    pub async fn preview_for(&self, model: &str, version: &str) -> Result<PromotionPreview> {
        let binding = self.binding(model).await?;
        self.preview(&binding, version).await
    }

    async fn preview(
        &self,
        binding: &DeploymentBinding,
        version: &str,
    ) -> Result<PromotionPreview> {
        let model = &binding.model;
        let current = self.reconciler.desired_version(model);
        let current = match current {
            Some(current) if current != version => {
                Some(version_summary(&self.pages, model, &current).await?)
            }
            _ => None,
        };
        Ok(PromotionPreview {
            candidate: version_summary(&self.pages, model, version).await?,
            current,
            marker: binding.marker(),
            requires_approval: binding.requires_approval,
            model: model.clone(),
        })
    }

    pub async fn request(&self, id: &str) -> Result<PromotionRequest> {
        self.store
            .promotion_request(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no promotion request {id}")))
    }

    /// Settles changes a crash left half done: `marked` if MLflow has the
    /// change, else `interrupted`, each with its audit entry. Each waits for
    /// its model's turn, so a change still under way elsewhere finishes
    /// first. The number settled.
    pub async fn settle_interrupted(&self) -> Result<usize> {
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
            let current = match self.binding(&left.model).await {
                Ok(binding) => Some(self.production_version(&binding).await?),
                Err(Error::NotFound(_)) => None,
                Err(err) => return Err(err),
            };
            let (state, message) = match current {
                Some(current) if current.as_deref() == Some(left.version.as_str()) => (
                    PromotionState::Marked,
                    "finished after a restart: MLflow had made the change",
                ),
                Some(_) => (
                    PromotionState::Interrupted,
                    "Slipway stopped before MLflow confirmed the change; MLflow does not have it, nothing changed",
                ),
                None => (
                    PromotionState::Interrupted,
                    "Slipway stopped during the change, and the model is no longer bound",
                ),
            };
            self.store
                .finish_promotion(&left.id, state, message)
                .await?;
            if let Some(audit) = &left.audit_id {
                let outcome = match state {
                    PromotionState::Marked => Outcome::DoneWith("settled after a restart".into()),
                    _ => Outcome::failed(message),
                };
                complete_by_id(&self.store, audit, outcome).await?;
            }
            tracing::warn!(model = %left.model, version = %left.version, ?state, "settled a change a restart interrupted");
            settled += 1;
        }
        Ok(settled)
    }

    /// Makes `version` the Production one in MLflow and deploys it; the
    /// caller has decided that `user` may. A change that expected another
    /// Production version than the one it finds is refused.
    async fn mark_production(
        &self,
        user: &User,
        binding: &DeploymentBinding,
        version: &str,
        (cause, reason): (Cause, &str),
        expected: Expected,
    ) -> Result<()> {
        let model = binding.model.as_str();
        let turn = self.store.lock_model(model).await?;
        let current = self.production_version(binding).await?;
        let expected_version = match &expected {
            Expected::Any => None,
            Expected::Version(version) => Some(version.as_deref()),
        };
        let actor = user.actor();
        let mut promotion = NewPromotion {
            model,
            cause: cause.as_str(),
            version,
            previous_version: current.as_deref(),
            expected_version,
            actor: &actor,
            audit_id: None,
        };
        // The reason given goes into the log (and its exports) with the change.
        let detail = match reason.trim() {
            "" => format!("{} → v{version}", version_words(current.as_deref())),
            reason => format!(
                "{} → v{version}: {}",
                version_words(current.as_deref()),
                clipped(reason)
            ),
        };
        if let Some(expected) = expected_version
            && expected != current.as_deref()
        {
            let why = format!(
                "Production is {} now, not {} as when you looked; nothing was changed. Look again, then decide.",
                version_words(current.as_deref()),
                version_words(expected)
            );
            self.store.refuse_promotion(&promotion, &why).await?;
            self.audit
                .record(
                    &user.actor(),
                    cause.action(),
                    &subject(model),
                    &format!("{detail}: refused, {why}"),
                )
                .await?;
            return Err(Error::Conflict(why));
        }
        let audit = self
            .audit
            .begin(&user.actor(), cause.action(), &subject(model), &detail)
            .await?;
        promotion.audit_id = Some(audit.id());
        let id = self.store.begin_promotion(&promotion).await?;
        let marked = match binding.production {
            ProductionMarker::Stage => self.mlflow.transition_to_production(model, version).await,
            ProductionMarker::Alias => self.mlflow.set_alias(model, &binding.alias, version).await,
        };
        let (state, message) = match &marked {
            Ok(()) => (PromotionState::Marked, String::new()),
            Err(err) => (PromotionState::Failed, Outcome::failed(err).text()),
        };
        self.store.finish_promotion(&id, state, &message).await?;
        audit.finish(marked.map_err(Error::from)).await?;
        drop(turn);
        self.reconciler.trigger(Trigger {
            cause: cause.as_str().into(),
            actor: user.actor(),
            retry_model: Some(model.into()),
        });
        Ok(())
    }

    /// An approver's decision on `request`, as the channels hear of it.
    async fn tell_decision(
        &self,
        approved: bool,
        user: &User,
        request: &PromotionRequest,
        note: &str,
    ) {
        let (event, decided) = if approved {
            (NotificationEvent::PromotionApproved, "approved")
        } else {
            (NotificationEvent::PromotionRejected, "rejected")
        };
        let text = format!(
            "{} {decided} {} (asked by {}): {note}",
            user.actor(),
            asked_for(request),
            request.requested_by
        );
        let link = approval_href(&request.id);
        self.tell(
            event,
            text,
            link,
            &request.model,
            &request.version,
            Some(&request.id),
            user,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn tell(
        &self,
        event: NotificationEvent,
        text: String,
        link: String,
        model: &str,
        version: &str,
        request_id: Option<&str>,
        user: &User,
    ) {
        super::notifications::tell(
            &self.store,
            Notification {
                event,
                at_ms: crate::store::now_ms(),
                text,
                link,
                model: Some(model.to_string()),
                version: (!version.is_empty()).then(|| version.to_string()),
                launch_id: None,
                request_id: request_id.map(str::to_string),
                run_id: None,
                actor: Some(user.actor()),
            },
        )
        .await;
    }

    /// The deployment of `model` and the version MLflow marks Production
    /// for it right now.
    pub async fn production_now(&self, model: &str) -> Result<(DeploymentBinding, Option<String>)> {
        let binding = self.binding(model).await?;
        let version = self.production_version(&binding).await?;
        Ok((binding, version))
    }

    /// The version MLflow marks Production for the binding right now (not
    /// as of the reconciler's last pass).
    async fn production_version(&self, binding: &DeploymentBinding) -> Result<Option<String>> {
        let found = self.mlflow.get_registered_model(&binding.model).await?;
        Ok(desired_versions(std::slice::from_ref(binding), &[found])
            .remove(&binding.model)
            .flatten())
    }

    /// The deployment as stored now: what every command here is decided on.
    async fn binding(&self, model: &str) -> Result<DeploymentBinding> {
        self.store
            .binding(model)
            .await?
            .map(|record| record.binding)
            .ok_or_else(|| Error::NotFound(format!("{model} has no deployment")))
    }

    /// Records `user`'s decision (`action`, with `comment`) and moves the
    /// pending request to `to`, if nobody decided it first; the audit entry
    /// to complete once the decision is carried out.
    async fn decide(
        &self,
        user: &User,
        request: &PromotionRequest,
        action: AuditAction,
        to: RequestState,
        comment: &str,
    ) -> Result<Begun> {
        let audit = self
            .audit
            .begin(
                &user.actor(),
                action,
                &subject(&request.model),
                &format!(
                    "{} requested by {}: {comment}",
                    asked_for(request),
                    request.requested_by
                ),
            )
            .await?;
        let decided = self
            .store
            .decide_promotion_request(&request.id, RequestState::Pending, to, &user.name, comment)
            .await?;
        if !decided {
            audit
                .complete(Outcome::failed("decided by someone else first"))
                .await?;
            return Err(Error::invalid("Someone else decided this request first."));
        }
        Ok(audit)
    }

    /// The request, if `user` may decide it and it is still undecided.
    async fn pending_request(&self, user: &User, id: &str) -> Result<PromotionRequest> {
        let request = self.request(id).await?;
        authorize(
            user,
            Action::Approve {
                model: &request.model,
                requested_by: &request.requested_by,
            },
        )?;
        // Decided meanwhile (by someone else, or a second click).
        if request.state != RequestState::Pending {
            return Err(Error::Conflict(format!(
                "This request is already {}.",
                request.state.as_str()
            )));
        }
        Ok(request)
    }

    /// Why the request no longer describes the change it would make:
    /// production in MLflow is no longer what it was when asked, or a
    /// promotion or rollback went through since (even back to the same).
    async fn staleness(
        &self,
        binding: &DeploymentBinding,
        request: &PromotionRequest,
    ) -> Result<Option<String>> {
        let now = self.production_version(binding).await?;
        if now != request.base_version {
            return Ok(Some(format!(
                "production is {} now, it was {} when this was asked for",
                version_words(now.as_deref()),
                version_words(request.base_version.as_deref())
            )));
        }
        let changed = self
            .store
            .recent_events(Some(&subject(&request.model)), 200)
            .await?
            .into_iter()
            .find(|event| {
                event.at_ms > request.requested_ms
                    && [Cause::Promote, Cause::Rollback, Cause::Approval]
                        .iter()
                        .any(|cause| cause.as_str() == event.action)
                    && event.outcome == Outcome::Done.text()
            });
        Ok(changed.map(|event| format!("{} made a {} since", event.actor, event.action)))
    }
}

/// What a request asks for, in words.
fn asked_for(request: &PromotionRequest) -> String {
    match (&request.settings, &request.rollout) {
        (Some(change), _) => format!("the deployment of {}: {}", request.model, change.changes),
        (None, Some(asked)) => format!("{} {}", request.model, rollout_words(asked)),
        (None, None) => format!("{} v{}", request.model, request.version),
    }
}

/// A canary's start in words: "v7 as a canary at 20 %".
fn rollout_words(asked: &NewRollout) -> String {
    format!(
        "v{} as a {} at {} %",
        asked.version, asked.mode, asked.weight
    )
}

fn subject(model: &str) -> String {
    format!("model:{model}")
}

fn version_words(version: Option<&str>) -> String {
    version.map_or("nothing".to_string(), |version| format!("v{version}"))
}

fn checked_text(text: &str, missing: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid(format!("Please {missing}.")));
    }
    Ok(clipped(text))
}

fn clipped(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}
