//! Canary rollouts: a second version of a deployment takes a share of its
//! requests (locally, the gateway splits them exactly) while its numbers
//! are watched; then it is promoted (the ordinary promotion, through an
//! approver where the deployment needs one) or aborted (all requests back
//! to the stable version, the canary stopped). Each change is a `rollouts`
//! row written before the pass that carries it out, and audited; a pass
//! serves what the rows say, so a restart resumes the split or its end.
//!
//! A canary with an analysis is also judged by the leader, Flagger style:
//! each interval its own answers since the last check against its gates; a
//! check is recorded with its numbers before what it leads to (a step, the
//! promotion, or after too many failures the abort) is carried out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::access::{Action, Grant, Role, User, authorize};
use app::model::{
    AuditAction, CanaryAnalysis, CheckVerdict, NewRollout, Notification, NotificationEvent,
    PromotionRequest, QueryGate, RolloutCheck, RolloutMode,
};

use super::audit::{Audit, Outcome};
use super::promotions::{Expected, Promoted, Promotions, StartsApprovedRollouts};
use crate::catalog::{DeploymentBinding, ServingTarget, seldon_canary_predictor};
use crate::error::{Error, Invalid, Result};
use crate::serving::reconciler::Reconciler;
use crate::serving::target::Trigger;
use crate::store::Store;
use crate::traffic::history::Stats;
use crate::traffic::{Answered, Traffic};
use app::model::{Rollout, RolloutState};

/// Who the audit log and the history name for what a canary's analysis
/// does by itself.
pub const ANALYSIS_ACTOR: &str = "canary analysis";

/// How often the leader looks whether a check is due.
const ANALYSE_EVERY: Duration = Duration::from_secs(1);

/// What a "Start the canary" did.
#[derive(Debug, Clone)]
pub enum Started {
    Now(Box<Rollout>),
    /// The deployment requires approval: waiting for an approver; the
    /// request's id.
    Requested(String),
}

pub struct Rollouts {
    store: Store,
    audit: Audit,
    reconciler: Arc<Reconciler>,
    promotions: Arc<Promotions>,
    traffic: Arc<Traffic>,
    /// Per analysed rollout (by id): when its next check is due, and the
    /// canary's counts at the last one. The leader's alone; a new leader
    /// starts counting when it takes over.
    watched: Mutex<HashMap<String, Watch>>,
}

struct Watch {
    due: Instant,
    counted: Stats,
    weight: u8,
}

impl Rollouts {
    pub fn new(
        store: Store,
        reconciler: Arc<Reconciler>,
        promotions: Arc<Promotions>,
        traffic: Arc<Traffic>,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            reconciler,
            promotions,
            traffic,
            watched: Mutex::default(),
        }
    }

    /// A rollout's checks, newest first.
    pub async fn checks(&self, rollout: &Rollout) -> Result<Vec<RolloutCheck>> {
        self.store
            .rollout_checks(&rollout.id, crate::store::rollouts::CHECKS_SHOWN)
            .await
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

    /// Starts `version` as the canary of `model`'s deployment at `weight` %;
    /// where the deployment requires approval, asks an approver to (the
    /// canary would answer real requests with a version nobody approved).
    pub async fn start(&self, user: &User, model: &str, asked: NewRollout) -> Result<Started> {
        authorize(user, Action::Promote { model })?;
        let (binding, production) = self.startable(model, &asked).await?;
        if binding.requires_approval {
            let request = self
                .promotions
                .request_rollout(user, &binding, production.as_deref(), &asked)
                .await?;
            return Ok(Started::Requested(request.id));
        }
        let rollout = self
            .begin(&user.actor(), model, production, asked, None)
            .await?;
        Ok(Started::Now(Box::new(rollout)))
    }

    /// The deployment and its Production version, if `asked` can start
    /// beside it; else every reason it cannot.
    async fn startable(
        &self,
        model: &str,
        asked: &NewRollout,
    ) -> Result<(DeploymentBinding, Option<String>)> {
        let NewRollout {
            version,
            weight,
            mode,
            analysis,
            ..
        } = asked;
        let (version, weight, mode) = (version.as_str(), *weight, *mode);
        check_weight(weight, mode)?;
        if let Some(analysis) = analysis {
            let problems = analysis.problems(weight, mode);
            if !problems.is_empty() {
                return Err(Error::Invalid(Invalid {
                    problems,
                    ..Invalid::default()
                }));
            }
        }
        let (binding, production) = self.promotions.production_now(model).await?;
        if let Some(analysis) = analysis {
            self.can_check(&binding, version, analysis).await?;
        }
        if production.as_deref() == Some(version) {
            return Err(Error::invalid(format!(
                "v{version} is already in production"
            )));
        }
        if mode == RolloutMode::Shadow {
            // Mirrored copies need a splitter that can mirror, and a
            // stable version that answers.
            match binding.target {
                ServingTarget::Local | ServingTarget::SeldonCore2 => {}
                ServingTarget::Seldon if weight == 100 => {}
                ServingTarget::Seldon => {
                    return Err(Error::invalid(
                        "Seldon Core v1 mirrors every request to a shadow: give it 100 %",
                    ));
                }
                ServingTarget::Kserve => {
                    return Err(Error::invalid(format!(
                        "KServe cannot mirror requests: {model} can have a canary, not a shadow"
                    )));
                }
            }
            if production.is_none() {
                return Err(Error::invalid(format!(
                    "{model} has no version in production to answer while a shadow sees the requests"
                )));
            }
        }
        Ok((binding, production))
    }

    /// Writes the rollout's row (audited as `actor`'s), then converges.
    async fn begin(
        &self,
        actor: &str,
        model: &str,
        production: Option<String>,
        asked: NewRollout,
        approved_weight: Option<u8>,
    ) -> Result<Rollout> {
        let NewRollout {
            version,
            weight,
            mode,
            analysis,
            reason,
        } = asked;
        let rollout = Rollout {
            id: uuid::Uuid::new_v4().simple().to_string(),
            model: model.to_string(),
            stable_version: production.clone(),
            canary_version: version.clone(),
            weight,
            mode,
            state: RolloutState::Progressing,
            started_by: actor.to_string(),
            started_ms: crate::store::now_ms(),
            updated_ms: crate::store::now_ms(),
            ended_ms: None,
            outcome: String::new(),
            analysis,
            failed_checks: 0,
            approved_weight,
        };
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        let detail = format!(
            "v{version} as {mode} at {weight} % beside {}{}{why}",
            production.map_or("nothing".into(), |version| format!("v{version}")),
            rollout
                .analysis
                .as_ref()
                .map(describe_analysis)
                .unwrap_or_default()
        );
        let audit = self
            .audit
            .begin(actor, AuditAction::Rollout, &subject(model), &detail)
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
        self.converge(actor, model);
        Ok(rollout)
    }

    /// Refuses an analysis whose numbers nothing can read: a canary's own
    /// answers come from the gateway locally and from the executor's
    /// metrics in Prometheus for Seldon Core v1; elsewhere only a query
    /// gate judges, and a query gate is run once first, so a query
    /// Prometheus refuses is said now and not at the first check.
    async fn can_check(
        &self,
        binding: &DeploymentBinding,
        version: &str,
        analysis: &CanaryAnalysis,
    ) -> Result<()> {
        let target = binding.target.as_str();
        match binding.target {
            ServingTarget::Local => {}
            ServingTarget::Seldon if !self.traffic.reads_prometheus() => {
                return Err(Error::invalid(
                    "a SeldonDeployment canary's checks read its executor's metrics from Prometheus, \
                     and none is configured (SLIPWAY_PROMETHEUS_URL); step it by hand",
                ));
            }
            ServingTarget::Seldon => {}
            ServingTarget::Kserve | ServingTarget::SeldonCore2 if analysis.query.is_none() => {
                return Err(Error::invalid(format!(
                    "Slipway reads no per-version numbers of {target} deployments: give the analysis \
                     a query gate of your own, or step the canary by hand"
                )));
            }
            ServingTarget::Kserve | ServingTarget::SeldonCore2 => {}
        }
        let Some(gate) = &analysis.query else {
            return Ok(());
        };
        if !self.traffic.reads_prometheus() {
            return Err(Error::invalid(
                "a query gate is read from Prometheus, and none is configured (SLIPWAY_PROMETHEUS_URL)",
            ));
        }
        let promql = query_of(gate, binding, version, analysis.interval_secs);
        self.traffic
            .query_value(&promql)
            .await
            .map_err(|err| Error::invalid(format!("the query gate's query does not run: {err}")))?;
        Ok(())
    }

    /// Sets the canary's share of the requests.
    pub async fn set_weight(&self, user: &User, model: &str, weight: u8) -> Result<Rollout> {
        authorize(user, Action::Promote { model })?;
        let rollout = self.progressing(model).await?;
        check_weight(weight, rollout.mode)?;
        if rollout.mode == RolloutMode::Shadow
            && weight != 100
            && self.reconciler.binding(model)?.target == ServingTarget::Seldon
        {
            return Err(Error::invalid(
                "Seldon Core v1 mirrors every request to a shadow: its share stays 100 %",
            ));
        }
        if let Some(ceiling) = rollout.approved_weight
            && weight > ceiling
        {
            return Err(Error::invalid(format!(
                "v{} was approved for at most {ceiling} % of the requests; a larger share is a new request (abort this one, then ask again)",
                rollout.canary_version
            )));
        }
        let detail = format!(
            "v{} from {} % to {weight} %",
            rollout.canary_version, rollout.weight
        );
        self.audited(
            &user.actor(),
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
            // A pass that saw the new Production first moved it already.
            let now = self.newest(model).await?;
            let moved_on = matches!(now.state, RolloutState::Promoting | RolloutState::Succeeded);
            if now.id != rollout.id || !moved_on {
                return Err(changed_meanwhile(model));
            }
        }
        self.converge(&user.actor(), model);
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
        self.end_aborted(&user.actor(), &rollout, &detail, &outcome)
            .await?;
        self.newest(model).await
    }

    /// Ends a progressing rollout as aborted (every request back to the
    /// stable version), audited as `actor`'s.
    async fn end_aborted(
        &self,
        actor: &str,
        rollout: &Rollout,
        detail: &str,
        outcome: &str,
    ) -> Result<()> {
        self.audited(
            actor,
            &rollout.model,
            detail,
            self.store.move_rollout(
                &rollout.id,
                RolloutState::Progressing,
                RolloutState::Aborted,
                outcome,
            ),
        )
        .await
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
        actor: &str,
        model: &str,
        detail: &str,
        change: impl std::future::Future<Output = Result<bool>>,
    ) -> Result<()> {
        let audit = self
            .audit
            .begin(actor, AuditAction::Rollout, &subject(model), detail)
            .await?;
        let changed = match change.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(changed_meanwhile(model)),
            Err(err) => Err(err),
        };
        audit.finish(changed).await?;
        self.converge(actor, model);
        Ok(())
    }

    /// A pass at once, so the split follows the row.
    fn converge(&self, actor: &str, model: &str) {
        self.reconciler.trigger(Trigger {
            cause: "rollout".into(),
            actor: actor.to_string(),
            retry_model: Some(model.into()),
        });
    }

    /// The leader's, for as long as it leads: every analysed canary is
    /// checked when its interval is up.
    pub async fn keep_analysing(&self) {
        let mut every = tokio::time::interval(ANALYSE_EVERY);
        loop {
            every.tick().await;
            if let Err(err) = self.analyse().await {
                tracing::warn!(error = %err, "checking canaries");
            }
        }
    }

    /// Checks each progressing canary whose interval is up on its answers
    /// since the last check, and acts on the verdict. The first look at a
    /// rollout (or at a new weight a person set) only starts the count.
    pub async fn analyse(&self) -> Result<()> {
        let analysed: Vec<Rollout> = self
            .store
            .active_rollouts()
            .await?
            .into_iter()
            .filter(|rollout| {
                rollout.state == RolloutState::Progressing && rollout.analysis.is_some()
            })
            .collect();
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut watched = self.watched.lock().expect("watched canaries");
            watched.retain(|id, _| analysed.iter().any(|rollout| &rollout.id == id));
            for rollout in analysed {
                let Some(analysis) = rollout.analysis.clone() else {
                    continue;
                };
                let counted = self
                    .traffic
                    .served_ever(&rollout.model, &rollout.canary_version);
                let interval = Duration::from_secs(u64::from(analysis.interval_secs));
                let next = Watch {
                    due: now + interval,
                    counted: counted.clone(),
                    weight: rollout.weight,
                };
                match watched.insert(rollout.id.clone(), next) {
                    Some(last) if last.weight == rollout.weight && now < last.due => {
                        watched.insert(rollout.id.clone(), last);
                    }
                    Some(last) if last.weight == rollout.weight => {
                        due.push((rollout, analysis, counted.since(&last.counted)));
                    }
                    _ => {}
                }
            }
        }
        for (rollout, analysis, through_gateway) in due {
            let Ok(binding) = self.reconciler.binding(&rollout.model) else {
                continue;
            };
            let reading = self
                .read(&binding, &rollout, &analysis, &through_gateway)
                .await;
            let check = judge(&analysis, rollout.weight, &reading, crate::store::now_ms());
            self.act_on(&rollout, &analysis, check).await?;
        }
        Ok(())
    }

    /// What a check judges: the canary's own answers since the last check
    /// where Slipway reads them, and the query gate's number.
    async fn read(
        &self,
        binding: &DeploymentBinding,
        rollout: &Rollout,
        analysis: &CanaryAnalysis,
        through_gateway: &Stats,
    ) -> Reading {
        let interval = i64::from(analysis.interval_secs);
        let answered = match binding.target {
            ServingTarget::Local => Ok(Some(Answered::from(through_gateway))),
            ServingTarget::Seldon => {
                let predictor = seldon_canary_predictor(rollout.mode == RolloutMode::Shadow);
                self.traffic
                    .predictor_answered(binding, predictor, interval)
                    .await
                    .map(Some)
                    .map_err(|err| err.to_string())
            }
            ServingTarget::Kserve | ServingTarget::SeldonCore2 => Ok(None),
        };
        let query = match &analysis.query {
            Some(gate) => {
                let promql = query_of(
                    gate,
                    binding,
                    &rollout.canary_version,
                    analysis.interval_secs,
                );
                Some(
                    self.traffic
                        .query_value(&promql)
                        .await
                        .map_err(|err| err.to_string()),
                )
            }
            None => None,
        };
        Reading { answered, query }
    }

    /// Records `check`, then what it leads to.
    async fn act_on(
        &self,
        rollout: &Rollout,
        analysis: &CanaryAnalysis,
        check: RolloutCheck,
    ) -> Result<()> {
        let Some(failed) = self.store.record_check(&rollout.id, &check).await? else {
            // A person moved it since it was read: the next look starts anew.
            return Ok(());
        };
        let model = rollout.model.as_str();
        match check.verdict {
            CheckVerdict::Failed if failed >= analysis.failed_checks_limit => {
                let outcome = format!(
                    "aborted by its analysis after {failed} failed checks; the last: {}",
                    check.detail
                );
                let detail = format!(
                    "v{} aborted at {} %: {failed} failed checks; the last: {}",
                    rollout.canary_version, rollout.weight, check.detail
                );
                self.end_aborted(ANALYSIS_ACTOR, rollout, &detail, &outcome)
                    .await?;
                self.tell_aborted(rollout, &outcome).await;
            }
            CheckVerdict::Passed if analysis.step_weight > 0 => {
                if rollout.weight >= analysis.max_weight {
                    self.promote_analysed(rollout).await?;
                } else {
                    let weight = rollout
                        .weight
                        .saturating_add(analysis.step_weight)
                        .min(analysis.max_weight);
                    let detail = format!(
                        "v{} from {} % to {weight} %: its check passed ({})",
                        rollout.canary_version, rollout.weight, check.detail
                    );
                    self.audited(
                        ANALYSIS_ACTOR,
                        model,
                        &detail,
                        self.store.set_rollout_weight(&rollout.id, weight),
                    )
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A canary that passed at its largest share becomes Production, on
    /// behalf of whoever started it, with no more rights than promoting
    /// this model; where the deployment has come to require approval since,
    /// it holds for a person to ask.
    async fn promote_analysed(&self, rollout: &Rollout) -> Result<()> {
        let model = rollout.model.as_str();
        let (binding, _) = self.promotions.production_now(model).await?;
        if binding.requires_approval {
            return Ok(());
        }
        let analysis = User {
            name: format!("{ANALYSIS_ACTOR} (started by {})", rollout.started_by),
            authenticated: true,
            grants: vec![Grant {
                role: Role::Deployer,
                scope: vec![model.to_string()],
            }],
            token: None,
        };
        let reason = format!(
            "the canary passed its checks at {} % of the requests",
            rollout.weight
        );
        self.promote(&analysis, model, &reason).await?;
        Ok(())
    }

    async fn tell_aborted(&self, rollout: &Rollout, outcome: &str) {
        super::notifications::tell(
            &self.store,
            Notification {
                event: NotificationEvent::RolloutAborted,
                at_ms: crate::store::now_ms(),
                text: format!(
                    "{} v{}'s canary was {outcome}",
                    rollout.model, rollout.canary_version
                ),
                link: app::routes::deployment_href(&rollout.model),
                model: Some(rollout.model.clone()),
                version: Some(rollout.canary_version.clone()),
                launch_id: None,
                request_id: None,
                run_id: None,
                actor: Some(ANALYSIS_ACTOR.to_string()),
            },
        )
        .await;
    }
}

#[async_trait::async_trait]
impl StartsApprovedRollouts for Rollouts {
    /// Starts the canary as asked, on behalf of its requester: the
    /// approver saw it beside the Production it was asked beside (else the
    /// request is stale), and it must still be able to start.
    async fn start_approved(
        &self,
        approver: &User,
        request: &PromotionRequest,
        asked: &NewRollout,
    ) -> Result<()> {
        let (_, production) = self.startable(&request.model, asked).await?;
        if production != request.base_version {
            return Err(Error::Conflict(format!(
                "production is {} now",
                production.map_or("nothing".into(), |version| format!("v{version}"))
            )));
        }
        let actor = format!(
            "{} (approved by {})",
            request.requested_by,
            approver.actor()
        );
        // What the approver saw: this share, or the analysis's steps up
        // to its largest.
        let ceiling = asked.analysis.as_ref().map_or(asked.weight, |analysis| {
            analysis.max_weight.max(asked.weight)
        });
        self.begin(
            &actor,
            &request.model,
            production,
            asked.clone(),
            Some(ceiling),
        )
        .await?;
        Ok(())
    }
}

/// What a check read of the canary since the last one; an `Err` is why a
/// read failed.
struct Reading {
    /// Its own answers; `None` where Slipway reads none for its target.
    answered: std::result::Result<Option<Answered>, String>,
    /// The query gate's number (`None` inside: it gave none), if it has one.
    query: Option<std::result::Result<Option<f64>, String>>,
}

/// The verdict of the gates on what a check read. A read that failed
/// fails the check (a canary nobody can see is not let through); a canary
/// known to have answered nothing is idle whatever the query says.
fn judge(analysis: &CanaryAnalysis, weight: u8, reading: &Reading, at_ms: i64) -> RolloutCheck {
    let mut check = RolloutCheck {
        at_ms,
        weight,
        requests: 0,
        success_percent: None,
        p99_ms: None,
        query_value: None,
        verdict: CheckVerdict::Idle,
        detail: String::new(),
    };
    let (mut failed, mut numbers) = (Vec::new(), Vec::new());
    let mut judged = false;
    let mut silent = false;
    match &reading.answered {
        Err(why) => failed.push(format!("its answers could not be read ({why})")),
        Ok(Some(answered)) if answered.requests == 0 => {
            silent = true;
            numbers.push("no canary answers since the last check".to_string());
        }
        Ok(Some(answered)) => {
            judged = true;
            let good = answered.requests.saturating_sub(answered.errors);
            let success = good as f64 / answered.requests as f64 * 100.0;
            check.requests = answered.requests;
            check.success_percent = Some(success);
            check.p99_ms = answered.p99_ms;
            if success < analysis.min_success_percent {
                failed.push(format!(
                    "success {success:.1} % below {} %",
                    analysis.min_success_percent
                ));
            }
            if let (Some(limit), Some(p99)) = (analysis.max_p99_ms, answered.p99_ms)
                && p99 > limit
            {
                failed.push(format!("p99 {p99:.0} ms above {limit} ms"));
            }
            numbers.push(format!(
                "{} answers, success {success:.1} %{}",
                answered.requests,
                answered
                    .p99_ms
                    .map(|p99| format!(", p99 {p99:.0} ms"))
                    .unwrap_or_default()
            ));
        }
        Ok(None) => {}
    }
    if let (Some(gate), Some(read)) = (&analysis.query, &reading.query) {
        match read {
            Err(why) => failed.push(format!("its query failed ({why})")),
            Ok(None) => numbers.push("the query gave no number".to_string()),
            Ok(Some(value)) => {
                check.query_value = Some(*value);
                judged = true;
                failed.extend(gate.missed_by(*value));
                numbers.push(format!("query {value}"));
            }
        }
    }
    let numbers = numbers.join(", ");
    (check.verdict, check.detail) = if !failed.is_empty() {
        let failed = failed.join("; ");
        let detail = if numbers.is_empty() {
            failed
        } else {
            format!("{failed}: {numbers}")
        };
        (CheckVerdict::Failed, detail)
    } else if judged && !silent {
        (CheckVerdict::Passed, numbers)
    } else if numbers.is_empty() {
        (CheckVerdict::Idle, "nothing to judge".to_string())
    } else {
        (CheckVerdict::Idle, numbers)
    };
    check
}

/// A query gate's PromQL for the canary `version` of the binding's object.
fn query_of(
    gate: &QueryGate,
    binding: &DeploymentBinding,
    version: &str,
    interval_secs: u32,
) -> String {
    gate.promql(
        version,
        interval_secs,
        binding.namespace.as_deref().unwrap_or_default(),
        &binding.object_name(),
    )
}

/// The analysis in the audit log's words.
fn describe_analysis(analysis: &CanaryAnalysis) -> String {
    let schedule = if analysis.step_weight > 0 {
        format!(
            ", +{} % every {} s to {} %, then promoted",
            analysis.step_weight, analysis.interval_secs, analysis.max_weight
        )
    } else {
        format!(", checked every {} s", analysis.interval_secs)
    };
    let p99 = analysis
        .max_p99_ms
        .map(|ms| format!(", p99 at most {ms} ms"))
        .unwrap_or_default();
    let query = analysis
        .query
        .as_ref()
        .map(|gate| {
            let within = [
                gate.min.map(|min| format!("at least {min}")),
                gate.max.map(|max| format!("at most {max}")),
            ];
            let within: Vec<String> = within.into_iter().flatten().collect();
            format!(", query {} {}", gate.query, within.join(" and "))
        })
        .unwrap_or_default();
    format!(
        "{schedule}; gates: success at least {} %{p99}{query}; aborted after {} failed checks",
        analysis.min_success_percent, analysis.failed_checks_limit
    )
}

/// A canary answers 1 to 99 % (at 100 it is a promotion); a shadow may
/// see a copy of every request.
fn check_weight(weight: u8, mode: RolloutMode) -> Result<()> {
    let most = match mode {
        RolloutMode::Canary => 99,
        RolloutMode::Shadow => 100,
    };
    if !(1..=most).contains(&weight) {
        return Err(Error::invalid(format!(
            "a {mode}'s share is 1 to {most} %, not {weight}"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::history::Answer;

    fn analysis(max_p99_ms: Option<f64>) -> CanaryAnalysis {
        CanaryAnalysis {
            interval_secs: 10,
            step_weight: 10,
            max_weight: 50,
            min_success_percent: 99.0,
            max_p99_ms,
            failed_checks_limit: 3,
            query: None,
        }
    }

    fn through_gateway(stats: &Stats) -> Reading {
        Reading {
            answered: Ok(Some(Answered::from(stats))),
            query: None,
        }
    }

    fn gated(min: Option<f64>, max: Option<f64>) -> CanaryAnalysis {
        CanaryAnalysis {
            query: Some(QueryGate {
                query: "sum(rate(errors_total{version=\"{{version}}\"}[{{interval}}]))".into(),
                min,
                max,
            }),
            ..analysis(None)
        }
    }

    fn answers(good: u64, bad: u64, seconds: f64) -> Stats {
        let mut stats = Stats::default();
        for _ in 0..good {
            stats.record(Answer::Success, seconds);
        }
        for _ in 0..bad {
            stats.record(Answer::ServerError, seconds);
        }
        stats
    }

    #[test]
    fn a_check_fails_on_each_gate_it_misses_and_says_by_how_much() {
        let idle = judge(&analysis(None), 20, &through_gateway(&Stats::default()), 1);
        assert_eq!(idle.verdict, CheckVerdict::Idle);
        assert_eq!(idle.success_percent, None);

        let passed = judge(
            &analysis(Some(100.0)),
            20,
            &through_gateway(&answers(100, 0, 0.004)),
            1,
        );
        assert_eq!(passed.verdict, CheckVerdict::Passed, "{}", passed.detail);
        assert_eq!(passed.success_percent, Some(100.0));
        assert!(passed.p99_ms.is_some_and(|ms| ms <= 5.0), "{passed:?}");

        let errors = judge(
            &analysis(None),
            20,
            &through_gateway(&answers(98, 2, 0.004)),
            1,
        );
        assert_eq!(errors.verdict, CheckVerdict::Failed);
        assert!(
            errors
                .detail
                .starts_with("success 98.0 % below 99 %: 100 answers"),
            "{}",
            errors.detail
        );

        let slow = judge(
            &analysis(Some(100.0)),
            20,
            &through_gateway(&answers(100, 0, 2.0)),
            1,
        );
        assert_eq!(slow.verdict, CheckVerdict::Failed);
        assert!(slow.detail.contains("above 100 ms"), "{}", slow.detail);
        // Without a latency gate the same answers pass.
        let ungated = judge(
            &analysis(None),
            20,
            &through_gateway(&answers(100, 0, 2.0)),
            1,
        );
        assert_eq!(ungated.verdict, CheckVerdict::Passed);
    }

    #[test]
    fn counts_between_two_reads_are_what_was_answered_in_between() {
        let before = answers(10, 1, 0.01);
        let mut after = before.clone();
        after.add(&answers(5, 5, 0.5));
        let between = after.since(&before);
        assert_eq!((between.requests, between.errors()), (10, 5));
        assert_eq!(between, answers(5, 5, 0.5));
    }

    #[test]
    fn an_analysis_that_cannot_run_is_refused_whole() {
        assert!(analysis(None).problems(20, RolloutMode::Canary).is_empty());
        let wrong = CanaryAnalysis {
            interval_secs: 0,
            step_weight: 99,
            max_weight: 10,
            min_success_percent: 101.0,
            max_p99_ms: Some(-1.0),
            failed_checks_limit: 0,
            query: Some(QueryGate {
                query: " ".into(),
                min: Some(2.0),
                max: Some(1.0),
            }),
        };
        let problems = wrong.problems(20, RolloutMode::Canary);
        assert_eq!(problems.len(), 8, "{problems:?}");
        let unbounded = gated(None, None).problems(20, RolloutMode::Canary);
        assert_eq!(
            unbounded,
            ["the query's gate needs a least or a largest value"]
        );
        // A shadow may see copies of every request; a canary would be a
        // promotion there.
        let everything = CanaryAnalysis {
            max_weight: 100,
            ..analysis(None)
        };
        assert!(everything.problems(100, RolloutMode::Shadow).is_empty());
        assert_eq!(everything.problems(100, RolloutMode::Canary).len(), 1);
    }

    #[test]
    fn a_query_gate_judges_its_number_and_a_failed_read_fails_the_check() {
        let reading = |answered, query| Reading { answered, query };
        // Where Slipway reads no answers (KServe), the query alone judges.
        let within = judge(
            &gated(None, Some(0.5)),
            20,
            &reading(Ok(None), Some(Ok(Some(0.25)))),
            1,
        );
        assert_eq!(within.verdict, CheckVerdict::Passed, "{}", within.detail);
        assert_eq!(within.query_value, Some(0.25));
        assert_eq!(within.detail, "query 0.25");
        let above = judge(
            &gated(None, Some(0.5)),
            20,
            &reading(Ok(None), Some(Ok(Some(2.0)))),
            1,
        );
        assert_eq!(above.verdict, CheckVerdict::Failed);
        assert_eq!(above.detail, "query 2 above 0.5: query 2");
        let below = judge(
            &gated(Some(1.0), None),
            20,
            &reading(Ok(None), Some(Ok(Some(0.0)))),
            1,
        );
        assert_eq!(below.detail, "query 0 below 1: query 0");
        // No number is nothing to judge; a refused query fails.
        let silent = judge(
            &gated(None, Some(0.5)),
            20,
            &reading(Ok(None), Some(Ok(None))),
            1,
        );
        assert_eq!(silent.verdict, CheckVerdict::Idle);
        assert_eq!(silent.detail, "the query gave no number");
        let refused = judge(
            &gated(None, Some(0.5)),
            20,
            &reading(
                Ok(None),
                Some(Err("Prometheus at x: nothing answers there".into())),
            ),
            1,
        );
        assert_eq!(refused.verdict, CheckVerdict::Failed);
        assert!(
            refused.detail.starts_with("its query failed"),
            "{}",
            refused.detail
        );
        // Both gates: one missed fails the check; answers unreadable fail it.
        let both = judge(
            &gated(None, Some(0.5)),
            20,
            &reading(
                Ok(Some(Answered::from(&answers(100, 0, 0.004)))),
                Some(Ok(Some(0.9))),
            ),
            1,
        );
        assert_eq!(both.verdict, CheckVerdict::Failed);
        assert!(
            both.detail.starts_with("query 0.9 above 0.5: 100 answers"),
            "{}",
            both.detail
        );
        let unread = judge(
            &analysis(None),
            20,
            &reading(Err("Prometheus at x: no answer in time".into()), None),
            1,
        );
        assert_eq!(unread.verdict, CheckVerdict::Failed);
        // A canary that answered nothing is idle, whatever the query says.
        let idle = judge(
            &gated(None, Some(0.5)),
            20,
            &reading(Ok(Some(Answered::default())), Some(Ok(Some(0.0)))),
            1,
        );
        assert_eq!(idle.verdict, CheckVerdict::Idle, "{}", idle.detail);
    }

    #[test]
    fn a_query_names_the_canary_its_interval_and_its_object() {
        let binding: DeploymentBinding = toml::from_str(
            "model = \"fraud\"\ntarget = \"kserve\"\nnamespace = \"models\"\nname = \"fraud-v\"",
        )
        .unwrap();
        let gate = QueryGate {
            query:
                r#"sum(rate(x{ns="{{namespace}}",svc="{{name}}",v="{{version}}"}[{{interval}}]))"#
                    .into(),
            min: None,
            max: Some(1.0),
        };
        assert_eq!(
            query_of(&gate, &binding, "7", 30),
            r#"sum(rate(x{ns="models",svc="fraud-v",v="7"}[30s]))"#
        );
    }
}
