//! Canary rollouts: a second version of a deployment takes a share of its
//! requests (locally, the gateway splits them exactly) while its numbers
//! are watched; then it is promoted (the ordinary promotion, through an
//! approver where the deployment needs one) or aborted (all requests back
//! to the stable version, the canary stopped). Each change is a `rollouts`
//! row written before the pass that carries it out, and audited; a pass
//! serves what the rows say, so a restart resumes the split or its end.

use std::sync::Arc;

use app::access::{Action, User, authorize};
use app::model::AuditAction;

use super::audit::{Audit, Outcome};
use super::promotions::{Expected, Promoted, Promotions};
use crate::catalog::ServingTarget;
use crate::error::{Error, Result};
use crate::serving::reconciler::Reconciler;
use crate::serving::target::Trigger;
use crate::store::Store;
use app::model::{Rollout, RolloutState};

pub struct Rollouts {
    store: Store,
    audit: Audit,
    reconciler: Arc<Reconciler>,
    promotions: Arc<Promotions>,
}

impl Rollouts {
    pub fn new(store: Store, reconciler: Arc<Reconciler>, promotions: Arc<Promotions>) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            reconciler,
            promotions,
        }
    }

    /// The deployment's active rollout, else its newest.
    pub async fn newest(&self, model: &str) -> Result<Rollout> {
        self.store
            .rollouts(model, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("{model} has had no canary")))
    }

    /// The deployment's active rollout, if it has one.
    pub async fn active(&self, model: &str) -> Result<Option<Rollout>> {
        Ok(self
            .store
            .rollouts(model, 1)
            .await?
            .into_iter()
            .find(|rollout| rollout.state.is_active()))
    }

    /// Starts `version` as the canary of `model`'s deployment at `weight` %.
    pub async fn start(
        &self,
        user: &User,
        model: &str,
        version: &str,
        weight: u8,
    ) -> Result<Rollout> {
        authorize(user, Action::Promote { model })?;
        check_weight(weight)?;
        let (binding, production) = self.promotions.production_now(model).await?;
        if binding.target != ServingTarget::Local {
            return Err(Error::invalid(format!(
                "canaries are served locally only so far; {model} is deployed on {}",
                binding.target.as_str()
            )));
        }
        // A canary serves real requests: where an approver decides what
        // serves, it would be a way around them.
        if binding.requires_approval {
            return Err(Error::invalid(format!(
                "{model} requires approval: its versions go out through a promotion request, not a canary"
            )));
        }
        if production.as_deref() == Some(version) {
            return Err(Error::invalid(format!(
                "v{version} is already in production"
            )));
        }
        let rollout = Rollout {
            id: uuid::Uuid::new_v4().simple().to_string(),
            model: model.to_string(),
            stable_version: production.clone(),
            canary_version: version.to_string(),
            weight,
            state: RolloutState::Progressing,
            started_by: user.actor(),
            started_ms: crate::store::now_ms(),
            updated_ms: crate::store::now_ms(),
            ended_ms: None,
            outcome: String::new(),
        };
        let detail = format!(
            "v{version} as canary at {weight} % beside {}",
            production.map_or("nothing".into(), |version| format!("v{version}"))
        );
        let audit = self
            .audit
            .begin(
                &user.actor(),
                AuditAction::Rollout,
                &subject(model),
                &detail,
            )
            .await?;
        if !self.store.begin_rollout(&rollout).await? {
            audit
                .complete(Outcome::failed("a rollout is under way already"))
                .await?;
            return Err(Error::Conflict(format!(
                "{model} has a rollout under way already: promote or abort it first"
            )));
        }
        audit.complete(Outcome::Done).await?;
        self.converge(user, model);
        Ok(rollout)
    }

    /// Sets the canary's share of the requests.
    pub async fn set_weight(&self, user: &User, model: &str, weight: u8) -> Result<Rollout> {
        authorize(user, Action::Promote { model })?;
        check_weight(weight)?;
        let rollout = self.progressing(model).await?;
        let detail = format!(
            "v{} from {} % to {weight} %",
            rollout.canary_version, rollout.weight
        );
        self.audited(
            user,
            model,
            &detail,
            self.store.set_rollout_weight(&rollout.id, weight),
        )
        .await?;
        self.newest(model).await
    }

    /// Makes the canary's version Production, the ordinary way (asking an
    /// approver where the deployment needs one); the split holds until the
    /// stable side serves it, then the rollout succeeds.
    pub async fn promote(&self, user: &User, model: &str, reason: &str) -> Result<Promoted> {
        let rollout = self.progressing(model).await?;
        let expected = Expected::Version(rollout.stable_version.clone());
        let promoted = self
            .promotions
            .promote(user, model, &rollout.canary_version, reason, expected)
            .await?;
        if promoted == Promoted::Now
            && !self
                .store
                .move_rollout(
                    &rollout.id,
                    RolloutState::Progressing,
                    RolloutState::Promoting,
                    "promoted; the stable side is starting it",
                )
                .await?
        {
            return Err(changed_meanwhile(model));
        }
        self.converge(user, model);
        Ok(promoted)
    }

    /// Ends the rollout: every request back to the stable version, the
    /// canary stopped; Production is untouched.
    pub async fn abort(&self, user: &User, model: &str, reason: &str) -> Result<Rollout> {
        authorize(user, Action::Promote { model })?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::invalid("Please say why the canary is aborted."));
        }
        let rollout = self.progressing(model).await?;
        let detail = format!(
            "v{} aborted at {} %: {reason}",
            rollout.canary_version, rollout.weight
        );
        let outcome = format!("aborted by {}: {reason}", user.actor());
        self.audited(
            user,
            model,
            &detail,
            self.store.move_rollout(
                &rollout.id,
                RolloutState::Progressing,
                RolloutState::Aborted,
                &outcome,
            ),
        )
        .await?;
        self.newest(model).await
    }

    async fn progressing(&self, model: &str) -> Result<Rollout> {
        match self.active(model).await? {
            Some(rollout) if rollout.state == RolloutState::Progressing => Ok(rollout),
            Some(_) => Err(Error::Conflict(format!(
                "{model}'s canary is being promoted already"
            ))),
            None => Err(Error::NotFound(format!("{model} has no canary"))),
        }
    }

    /// Audits `detail` and carries out `change`, a write that says
    /// whether the row was still as read; then a pass follows it.
    async fn audited(
        &self,
        user: &User,
        model: &str,
        detail: &str,
        change: impl std::future::Future<Output = Result<bool>>,
    ) -> Result<()> {
        let audit = self
            .audit
            .begin(&user.actor(), AuditAction::Rollout, &subject(model), detail)
            .await?;
        let changed = match change.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(changed_meanwhile(model)),
            Err(err) => Err(err),
        };
        audit.finish(changed).await?;
        self.converge(user, model);
        Ok(())
    }

    /// A pass at once, so the split follows the row.
    fn converge(&self, user: &User, model: &str) {
        self.reconciler.trigger(Trigger {
            cause: "rollout".into(),
            actor: user.actor(),
            retry_model: Some(model.into()),
        });
    }
}

fn check_weight(weight: u8) -> Result<()> {
    if !(1..=99).contains(&weight) {
        return Err(Error::invalid(format!(
            "a canary's share is 1 to 99 %, not {weight}"
        )));
    }
    Ok(())
}

fn changed_meanwhile(model: &str) -> Error {
    Error::Conflict(format!(
        "{model}'s rollout changed meanwhile; nothing was done. Look again, then decide."
    ))
}

fn subject(model: &str) -> String {
    format!("model:{model}")
}
