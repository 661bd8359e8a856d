//! Four-eyes promotions. Where a binding requires approval, a deployer's
//! "Promote" becomes a request holding the evidence as it was then; another
//! person with the approver role approves it (which promotes at once, the
//! same way a direct promotion does) or rejects it. A request asked for
//! before another version was promoted is stale and cannot be approved.
//!
//! Each step is a state written before its side effect (`pending` →
//! `approving` → `approved`/`failed`), and the audit log gets an entry
//! before and its outcome after, so a crash can always be explained.

use app::access::{Action, authorize};
use app::error::AppError;
use app::model::{PromotionRequest, RequestState, User};
use app::port::ControlPlane;

use crate::control::Slipway;
use crate::serving::reconciler::Expected;

/// What a deployer's "Promote" did.
#[derive(Debug)]
pub enum Promoted {
    /// Production in MLflow now; deploying.
    Now,
    /// Waiting for an approver: the request's id.
    Requested(String),
}

/// Longest reason or comment kept.
const MAX_TEXT: usize = 2_000;

impl Slipway {
    pub async fn promote_or_request(
        &self,
        user: &User,
        model: &str,
        version: &str,
        reason: &str,
        expected: Expected,
    ) -> Result<Promoted, AppError> {
        authorize(user, Action::Promote { model })?;
        if version.trim().is_empty() {
            return Err(AppError::InvalidInput("choose a version to promote".into()));
        }
        if !self.reconciler.requires_approval(model)? {
            self.reconciler
                .promote(user, model, version, expected)
                .await?;
            return Ok(Promoted::Now);
        }
        let reason = checked_text(reason, "say why this version should go to production")?;
        let base_version = self.reconciler.production_version(model).await?;
        if base_version.as_deref() == Some(version) {
            return Err(AppError::InvalidInput(format!(
                "v{version} is already in production"
            )));
        }
        let evidence = self
            .promotion_preview(user, model.to_string(), version.to_string())
            .await?;
        let audit = self
            .store
            .begin_event(
                &user.name,
                "promotion-request",
                &format!("model:{model}"),
                &format!("v{version}: {reason}"),
            )
            .await?;
        let request = self
            .store
            .insert_promotion_request(
                model,
                version,
                &reason,
                &user.name,
                base_version.as_deref(),
                &evidence,
            )
            .await?;
        self.store
            .complete_event(&audit, &format!("done: request {}", request.id))
            .await?;
        tracing::info!(%model, %version, user = %user.name, request = %request.id, "promotion requested");
        Ok(Promoted::Requested(request.id))
    }

    pub async fn approve(
        &self,
        user: &User,
        id: &str,
        comment: &str,
    ) -> Result<PromotionRequest, AppError> {
        let request = self.pending_request(user, id).await?;
        let comment = comment.trim().chars().take(MAX_TEXT).collect::<String>();
        let subject = format!("model:{}", request.model);
        if let Some(why) = self.staleness(&request).await? {
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
                self.store
                    .record_event(
                        &user.name,
                        "approve",
                        &subject,
                        &format!("refused, stale: {why}"),
                    )
                    .await?;
            }
            return Err(AppError::InvalidInput(format!(
                "This request is stale and cannot be approved: {why}. Ask for a new one."
            )));
        }
        let audit = self
            .store
            .begin_event(
                &user.name,
                "approve",
                &subject,
                &format!(
                    "v{} requested by {}: {comment}",
                    request.version, request.requested_by
                ),
            )
            .await?;
        let decided = self
            .store
            .decide_promotion_request(
                id,
                RequestState::Pending,
                RequestState::Approving,
                &user.name,
                &comment,
            )
            .await?;
        if !decided {
            self.store
                .complete_event(&audit, "failed: decided by someone else first")
                .await?;
            return Err(AppError::InvalidInput(
                "Someone else decided this request first.".into(),
            ));
        }
        match self.reconciler.promote_approved(user, &request).await {
            Ok(()) => {
                self.store
                    .finish_promotion_request(id, RequestState::Approved, "promoted; deploying")
                    .await?;
                self.store.complete_event(&audit, "done").await?;
                tracing::info!(model = %request.model, version = %request.version, approver = %user.name, request = %id, "promotion approved");
            }
            Err(err) => {
                let outcome = format!("failed: {err}");
                self.store
                    .finish_promotion_request(id, RequestState::Failed, &outcome)
                    .await?;
                self.store.complete_event(&audit, &outcome).await?;
                return Err(err);
            }
        }
        self.request(id).await
    }

    pub async fn reject(
        &self,
        user: &User,
        id: &str,
        comment: &str,
    ) -> Result<PromotionRequest, AppError> {
        let request = self.pending_request(user, id).await?;
        let comment = checked_text(comment, "say why you reject it")?;
        let audit = self
            .store
            .begin_event(
                &user.name,
                "reject",
                &format!("model:{}", request.model),
                &format!(
                    "v{} requested by {}: {comment}",
                    request.version, request.requested_by
                ),
            )
            .await?;
        let decided = self
            .store
            .decide_promotion_request(
                id,
                RequestState::Pending,
                RequestState::Rejected,
                &user.name,
                &comment,
            )
            .await?;
        let outcome = if decided {
            "done"
        } else {
            "failed: decided by someone else first"
        };
        self.store.complete_event(&audit, outcome).await?;
        if !decided {
            return Err(AppError::InvalidInput(
                "Someone else decided this request first.".into(),
            ));
        }
        self.request(id).await
    }

    pub async fn request(&self, id: &str) -> Result<PromotionRequest, AppError> {
        self.store
            .promotion_request(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no promotion request {id}")))
    }

    /// The request, if `user` may decide it and it is still undecided.
    async fn pending_request(&self, user: &User, id: &str) -> Result<PromotionRequest, AppError> {
        let request = self.request(id).await?;
        authorize(
            user,
            Action::Approve {
                model: &request.model,
                requested_by: &request.requested_by,
            },
        )?;
        if request.state != RequestState::Pending {
            return Err(AppError::InvalidInput(format!(
                "This request is already {}.",
                request.state.as_str()
            )));
        }
        Ok(request)
    }

    /// Why the request no longer describes the change it would make:
    /// production in MLflow is no longer what it was when asked, or a
    /// promotion or rollback went through since (even back to the same).
    async fn staleness(&self, request: &PromotionRequest) -> Result<Option<String>, AppError> {
        let now = self.reconciler.production_version(&request.model).await?;
        if now != request.base_version {
            let shown = |version: &Option<String>| {
                version
                    .as_ref()
                    .map_or("nothing".to_string(), |version| format!("v{version}"))
            };
            return Ok(Some(format!(
                "production is {} now, it was {} when this was asked for",
                shown(&now),
                shown(&request.base_version)
            )));
        }
        let changed = self
            .store
            .recent_events(Some(&format!("model:{}", request.model)), 200)
            .await?
            .into_iter()
            .find(|event| {
                event.at_ms > request.requested_ms
                    && matches!(event.action.as_str(), "promote" | "rollback" | "approval")
                    && event.outcome == "done"
            });
        Ok(changed.map(|event| format!("{} made a {} since", event.actor, event.action)))
    }
}

fn checked_text(text: &str, missing: &str) -> Result<String, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AppError::InvalidInput(format!("Please {missing}.")));
    }
    Ok(text.chars().take(MAX_TEXT).collect())
}
