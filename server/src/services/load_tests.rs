//! Load tests of deployments: checked against the admin's caps, one per
//! deployment at a time, run by the process that accepted them against the
//! deployment's address (the gateway locally, the target's address in a
//! cluster), their numbers written every second, audited from start to end.

use std::sync::Arc;
use std::time::Duration;

use app::access::{Action, User, authorize};
use app::model::{
    AuditAction, FieldErrors, LoadTest, LoadTestCaps, LoadTestForm, LoadTestRequest,
    LoadTestResults, LoadTestState,
};

use super::audit::{Audit, Outcome, complete_by_id};
use super::reads::Reads;
use crate::catalog::ServingTarget;
use crate::error::{Error, Invalid, Result};
use crate::serving::protocol;
use crate::serving::reconciler::Reconciler;
use crate::store::drafts::DraftForm;
use crate::store::{Store, now_ms};
use crate::traffic::load::{self, Ended, Plan};

/// The largest body a load test sends.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Tests a deployment's page lists.
const LISTED: i64 = 20;

pub struct LoadTests {
    store: Store,
    audit: Audit,
    reconciler: Arc<Reconciler>,
    reads: Arc<Reads>,
    caps: LoadTestCaps,
}

impl LoadTests {
    pub fn new(
        store: Store,
        reconciler: Arc<Reconciler>,
        reads: Arc<Reads>,
        caps: LoadTestCaps,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            reconciler,
            reads,
            caps,
        }
    }

    /// The form: a sent-back draft with its problems, or the defaults (the
    /// serving version's input example as the body).
    pub async fn form(
        &self,
        user: &User,
        model: &str,
        draft: Option<&str>,
    ) -> Result<LoadTestForm> {
        let binding = self.reconciler.binding(model)?;
        let view = self.reconciler.view(model)?;
        let needs_confirmation = binding.target != ServingTarget::Local;
        let (request, problems) = match draft {
            Some(id) => {
                let request: LoadTestRequest = self
                    .store
                    .draft(&user.name, DraftForm::LoadTest, id)
                    .await?
                    .ok_or_else(|| {
                        Error::NotFound(
                            "no such load test form (sent-back forms are kept for an hour)".into(),
                        )
                    })?;
                let problems = check(&request, self.caps, needs_confirmation)
                    .err()
                    .unwrap_or_default();
                (request, problems)
            }
            None => {
                let body = match &view.serving_version {
                    Some(version) => self.reads.example_request(&binding, version).await,
                    None => None,
                };
                let request = LoadTestRequest {
                    users: "10".into(),
                    rate: String::new(),
                    duration_secs: "30".into(),
                    ramp_up_secs: "5".into(),
                    body: body.unwrap_or_default(),
                    confirm: String::new(),
                };
                (request, FieldErrors::new())
            }
        };
        Ok(LoadTestForm {
            model: model.to_string(),
            request,
            problems,
            caps: self.caps,
            address: view.address,
            serving_version: view.serving_version,
            needs_confirmation,
        })
    }

    /// Keeps a refused form for its sender; the draft's id.
    pub async fn keep_draft(&self, user: &User, request: &LoadTestRequest) -> Result<String> {
        self.store
            .insert_draft(&user.name, DraftForm::LoadTest, request)
            .await
    }

    /// Starts a load test of `model`'s deployment; its id. It runs on in
    /// this process; its row says how it goes.
    pub async fn start(
        &self,
        user: &User,
        model: &str,
        request: &LoadTestRequest,
    ) -> Result<String> {
        authorize(user, Action::LoadTest { model })?;
        let binding = self.reconciler.binding(model)?;
        let view = self.reconciler.view(model)?;
        let checked = check(request, self.caps, binding.target != ServingTarget::Local).map_err(
            |fields| {
                Error::Invalid(Invalid {
                    problems: Vec::new(),
                    fields,
                })
            },
        )?;
        let Some(address) = view.address else {
            return Err(Error::invalid(format!(
                "{model} has nothing serving to test: {}",
                view.message
            )));
        };
        let test = LoadTest {
            id: uuid::Uuid::new_v4().simple().to_string(),
            model: model.to_string(),
            version: view.serving_version.clone(),
            address: address.clone(),
            users: checked.users,
            rate: checked.rate,
            duration_secs: checked.duration_secs,
            ramp_up_secs: checked.ramp_up_secs,
            body: request.body.clone(),
            state: LoadTestState::Running,
            started_by: user.name.clone(),
            started_ms: now_ms(),
            finished_ms: None,
            results: LoadTestResults::default(),
        };
        let begun = self
            .audit
            .begin(
                &user.actor(),
                AuditAction::LoadTest,
                &format!("model:{model}"),
                &describe(&test),
            )
            .await?;
        if !self.store.begin_load_test(&test, begun.id()).await? {
            let refused = Error::Conflict(format!(
                "A load test of {model} is running: one at a time. Cancel it or wait for its end."
            ));
            return begun.finish(Err(refused)).await;
        }
        let plan = Plan {
            address,
            headers: protocol::request_headers(&binding),
            body: bytes::Bytes::from(request.body.clone()),
            users: test.users,
            rate: test.rate,
            duration: Duration::from_secs(u64::from(test.duration_secs)),
            ramp_up: Duration::from_secs(u64::from(test.ramp_up_secs)),
        };
        let (store, id, audit_id) = (self.store.clone(), test.id.clone(), begun.id().to_string());
        tokio::spawn(async move {
            let progress = store.clone();
            let reporting = id.clone();
            let (ended, results) = load::run(plan, load::client(), move |so_far| {
                let (store, id) = (progress.clone(), reporting.clone());
                async move {
                    match store.record_load_progress(&id, &so_far).await {
                        Ok(cancel) => cancel,
                        Err(err) => {
                            tracing::warn!(error = %err, load_test = %id, "recording a load test's progress");
                            false
                        }
                    }
                }
            })
            .await;
            let state = match ended {
                Ended::Finished => LoadTestState::Finished,
                Ended::Cancelled => LoadTestState::Cancelled,
            };
            let outcome = Outcome::DoneWith(format!("{}: {}", state.as_str(), summary(&results)));
            let recorded = async {
                store.finish_load_test(&id, state, &results).await?;
                complete_by_id(&store, &audit_id, outcome).await
            };
            if let Err(err) = recorded.await {
                tracing::error!(error = %err, load_test = %id, "recording a load test's end");
            }
        });
        Ok(test.id)
    }

    /// Asks the running test `id` to stop; it stops within a second.
    pub async fn cancel(&self, user: &User, id: &str) -> Result<LoadTest> {
        let test = self.test(id).await?;
        authorize(user, Action::LoadTest { model: &test.model })?;
        let begun = self
            .audit
            .begin(
                &user.actor(),
                AuditAction::CancelLoadTest,
                &format!("model:{}", test.model),
                &format!("load test {id}"),
            )
            .await?;
        let cancelled = if self.store.request_load_test_cancel(id).await? {
            Ok(test)
        } else {
            Err(Error::Conflict(format!(
                "This load test has ended ({}): nothing to cancel.",
                test.state
            )))
        };
        begun.finish(cancelled).await
    }

    pub async fn test(&self, id: &str) -> Result<LoadTest> {
        self.store
            .load_test(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no load test {id}")))
    }

    /// A deployment's latest tests, newest first.
    pub async fn of_deployment(&self, model: &str) -> Result<Vec<LoadTest>> {
        self.store.load_tests(model, LISTED).await
    }

    /// Tests a process that is gone was running: ended as interrupted,
    /// their audit entries too.
    pub async fn settle_interrupted(&self, alive_since: i64) -> Result<()> {
        for (test, audit_id) in self.store.settle_load_tests(alive_since).await? {
            tracing::warn!(load_test = %test.id, model = %test.model, "a load test's Slipway stopped before it ended");
            complete_by_id(
                &self.store,
                &audit_id,
                Outcome::failed(format!(
                    "interrupted: the Slipway running it stopped ({} requests sent)",
                    test.results.requests
                )),
            )
            .await?;
        }
        Ok(())
    }
}

/// What a form asks for, read and within the caps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    users: u32,
    rate: Option<u32>,
    duration_secs: u32,
    ramp_up_secs: u32,
}

fn check(
    request: &LoadTestRequest,
    caps: LoadTestCaps,
    needs_confirmation: bool,
) -> std::result::Result<Checked, FieldErrors> {
    let mut problems = FieldErrors::new();
    let mut number = |field: &str, text: &str, least: u32, most: u32, what: &str| -> Option<u32> {
        match text.trim().parse::<u32>() {
            Ok(value) if value < least => {
                problems.insert(field.into(), format!("at least {least}"));
                None
            }
            Ok(value) if value > most => {
                problems.insert(
                    field.into(),
                    format!("at most {most} {what} (the admin's cap)"),
                );
                None
            }
            Ok(value) => Some(value),
            Err(_) => {
                problems.insert(field.into(), format!("a whole number of {what}"));
                None
            }
        }
    };
    let users = number("users", &request.users, 1, caps.max_users, "users");
    let rate = if request.rate.trim().is_empty() {
        Some(None)
    } else {
        number(
            "rate",
            &request.rate,
            1,
            caps.max_rate,
            "requests per second",
        )
        .map(Some)
    };
    let duration_secs = number(
        "duration_secs",
        &request.duration_secs,
        1,
        caps.max_duration_secs,
        "seconds",
    );
    let ramp_up_secs = if request.ramp_up_secs.trim().is_empty() {
        Some(0)
    } else {
        number(
            "ramp_up_secs",
            &request.ramp_up_secs,
            0,
            u32::MAX,
            "seconds",
        )
    };
    if let (Some(ramp), Some(duration)) = (ramp_up_secs, duration_secs)
        && ramp >= duration
    {
        problems.insert(
            "ramp_up_secs".into(),
            "shorter than the duration, so every user sends".into(),
        );
    }
    if request.body.len() > MAX_BODY_BYTES {
        problems.insert(
            "body".into(),
            format!("at most {} KiB", MAX_BODY_BYTES / 1024),
        );
    } else if let Err(err) = serde_json::from_str::<serde_json::Value>(&request.body) {
        problems.insert("body".into(), format!("not JSON: {err}"));
    }
    if needs_confirmation && request.confirm.is_empty() {
        problems.insert(
            "confirm".into(),
            "this deployment serves production in the cluster: confirm that the test may load it"
                .into(),
        );
    }
    match (users, rate, duration_secs, ramp_up_secs) {
        (Some(users), Some(rate), Some(duration_secs), Some(ramp_up_secs))
            if problems.is_empty() =>
        {
            Ok(Checked {
                users,
                rate,
                duration_secs,
                ramp_up_secs,
            })
        }
        _ => Err(problems),
    }
}

fn describe(test: &LoadTest) -> String {
    let rate = test
        .rate
        .map(|rate| format!(", at most {rate} requests/s"))
        .unwrap_or_default();
    let version = test
        .version
        .as_ref()
        .map(|version| format!(" v{version}"))
        .unwrap_or_default();
    format!(
        "{} users for {} s (ramp-up {} s{rate}) against{version} at {}",
        test.users, test.duration_secs, test.ramp_up_secs, test.address
    )
}

fn summary(results: &LoadTestResults) -> String {
    let p99 = results
        .p99_ms
        .map(|ms| format!(", p99 {ms:.1} ms"))
        .unwrap_or_default();
    format!(
        "{} requests, {} errors, {:.1} requests/s{p99}",
        results.requests, results.errors, results.requests_per_second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: LoadTestCaps = LoadTestCaps {
        max_users: 50,
        max_rate: 200,
        max_duration_secs: 300,
    };

    fn request() -> LoadTestRequest {
        LoadTestRequest {
            users: "10".into(),
            rate: String::new(),
            duration_secs: "30".into(),
            ramp_up_secs: "5".into(),
            body: "{}".into(),
            confirm: String::new(),
        }
    }

    #[test]
    fn within_the_caps_it_is_read() {
        assert_eq!(
            check(&request(), CAPS, false),
            Ok(Checked {
                users: 10,
                rate: None,
                duration_secs: 30,
                ramp_up_secs: 5
            })
        );
    }

    #[test]
    fn over_the_caps_each_field_says_its_cap() {
        let over = LoadTestRequest {
            users: "51".into(),
            rate: "201".into(),
            duration_secs: "301".into(),
            body: "{not json".into(),
            ..request()
        };
        let problems = check(&over, CAPS, true).unwrap_err();
        assert_eq!(problems["users"], "at most 50 users (the admin's cap)");
        assert_eq!(
            problems["rate"],
            "at most 200 requests per second (the admin's cap)"
        );
        assert_eq!(
            problems["duration_secs"],
            "at most 300 seconds (the admin's cap)"
        );
        assert!(problems["body"].starts_with("not JSON: "));
        assert!(problems["confirm"].contains("production"));
        let ramp = LoadTestRequest {
            ramp_up_secs: "30".into(),
            ..request()
        };
        assert!(
            check(&ramp, CAPS, false)
                .unwrap_err()
                .contains_key("ramp_up_secs")
        );
    }
}
