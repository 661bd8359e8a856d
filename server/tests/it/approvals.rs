//! Four-eyes promotions end to end in process, with a real MLflow: the
//! request freezes its evidence; the requester cannot approve; a rejection
//! changes nothing; approval promotes at once; a request overtaken by
//! another promotion is stale; two approvals at once promote once; every
//! step is in the audit log with its outcome.

use crate::support;

use crate::support::site::{Site, location};
use crate::support::{MlflowRest, config, mlflow_url, unique};
use app::access::Role;
use app::model::RequestState;

/// A Slipway where `model` (versions 1, 2, 3: rmse 0.9, 0.7, 0.5) is
/// deployed and needs an approver; `promote` is its promote form's path.
struct FourEyes {
    site: Site,
    mlflow: MlflowRest,
    model: String,
    versions: Vec<String>,
    promote: String,
}

async fn four_eyes() -> FourEyes {
    let mlflow = MlflowRest::new(&mlflow_url());
    let model = unique("four-eyes");
    let experiment = mlflow.create_experiment(&unique("four-eyes"), &[]).await;
    mlflow.create_registered_model(&model).await;
    let mut versions = Vec::new();
    for (alpha, rmse) in [("0.1", 0.9), ("0.2", 0.7), ("0.3", 0.5)] {
        let run = mlflow
            .create_run(
                &experiment,
                "r",
                &[("alpha", alpha)],
                &[("rmse", &[rmse])],
                &[],
            )
            .await;
        versions.push(
            mlflow
                .register_version(&model, &experiment, &run)
                .await
                .version,
        );
    }
    let data = tempfile::tempdir().unwrap();
    let catalog = data.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[deployment]]\nmodel = {model:?}\ntarget = \"local\"\nrequires_approval = true\n"
        ),
    )
    .unwrap();
    let mut config = config(&mlflow_url(), data.path());
    config.catalog = Some(catalog);
    config.reconcile_poll_secs = 3600;
    let site = Site::start(config, data).await;
    let promote = format!("/deployments/{model}/promote");
    FourEyes {
        site,
        mlflow,
        model,
        versions,
        promote,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_approves_their_own_request_and_approving_promotes_at_once() {
    let FourEyes {
        site,
        mlflow,
        model,
        versions,
        promote,
    } = four_eyes().await;
    // No reason, no request.
    let asked = ask(&site, &promote, &versions[0], " ").await;
    let back = location(&asked);
    assert!(back.contains("promote?version=1&notice="), "{back}");
    // The confirm step it is sent back to says what is missing.
    let why = site.notice(Role::Deployer, &asked).await;
    assert!(
        why.contains("Please say why this version should go to production."),
        "{why}"
    );
    assert!(
        site.store
            .promotion_requests(Some(&model), false, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // v1 is asked for; the evidence is frozen with it.
    let page = location(&ask(&site, &promote, &versions[0], "first model").await);
    let id = page
        .strip_prefix("/approvals/")
        .expect("to the request")
        .to_string();
    let request = site.services.promotions.request(&id).await.unwrap();
    assert_eq!(request.state, RequestState::Pending);
    assert_eq!(request.requested_by, "deployer");
    assert_eq!(request.base_version, None);
    assert_eq!(
        request.evidence.as_ref().unwrap().candidate.metrics,
        vec![("rmse".to_string(), 0.9)]
    );
    assert_eq!(
        request.evidence.as_ref().unwrap().candidate.params,
        vec![("alpha".to_string(), "0.1".to_string())]
    );
    assert_eq!(
        mlflow.stage(&model, "1").await,
        "None",
        "asking changes nothing in MLflow"
    );

    // The requester holds no approver role here, and an admin who asked
    // could not approve either: nobody approves their own request.
    let own = site
        .post(
            Role::Deployer,
            &format!("{page}/approve"),
            &[("comment", "me")],
        )
        .await;
    assert_eq!(own.status(), 403);
    let html = page_text(&site, Role::Approver, &page).await;
    assert!(
        html.contains("Approve and deploy") && html.contains("first model"),
        "{html}"
    );
    let html = page_text(&site, Role::Deployer, &page).await;
    assert!(
        !html.contains("Approve and deploy"),
        "the requester sees no decision buttons"
    );

    let approved = site
        .post(
            Role::Approver,
            &format!("{page}/approve"),
            &[("comment", "ok")],
        )
        .await;
    assert_eq!(location(&approved), page, "approved, back to the request");
    let request = site.services.promotions.request(&id).await.unwrap();
    assert_eq!(request.state, RequestState::Approved);
    assert_eq!(request.decided_by.as_deref(), Some("approver"));
    assert_eq!(
        mlflow.stage(&model, "1").await,
        "Production",
        "approving promotes at once"
    );
    site.services.deployments.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_changes_nothing_and_of_two_approvals_at_once_one_promotes() {
    let FourEyes {
        site,
        mlflow,
        model,
        versions,
        promote,
    } = four_eyes().await;
    // v1 asked for and approved: in production.
    approved(&site, &promote, &versions[0]).await;
    // v2 and v3 are asked for; v3 is rejected with a reason, which changes nothing.
    let second = location(&ask(&site, &promote, &versions[1], "lower rmse").await);
    let third = location(&ask(&site, &promote, &versions[2], "lowest rmse").await);
    let third_id = third.strip_prefix("/approvals/").unwrap();
    let request = site.services.promotions.request(third_id).await.unwrap();
    assert_eq!(request.base_version.as_deref(), Some("1"));
    assert_eq!(
        request
            .evidence
            .as_ref()
            .and_then(|evidence| evidence.current.as_ref())
            .map(|current| current.version.as_str()),
        Some("1"),
        "compared with what is in production"
    );
    let back = location(
        &site
            .post(Role::Admin, &format!("{third}/reject"), &[("comment", "")])
            .await,
    );
    assert!(
        back.contains("notice="),
        "a rejection needs a reason: {back}"
    );
    let rejected = site
        .post(
            Role::Admin,
            &format!("{third}/reject"),
            &[("comment", "not yet")],
        )
        .await;
    assert_eq!(location(&rejected), third);
    assert_eq!(
        site.services
            .promotions
            .request(third_id)
            .await
            .unwrap()
            .state,
        RequestState::Rejected
    );
    assert_eq!(mlflow.stage(&model, "3").await, "None");
    assert_eq!(mlflow.stage(&model, "1").await, "Production");

    // Two approvals of v2 at once: one promotes, the other is told.
    let (by_approver, by_admin) = (format!("{second}/approve"), format!("{second}/approve"));
    let (first_try, second_try) = tokio::join!(
        site.post(Role::Approver, &by_approver, &[("comment", "a")]),
        site.post(Role::Admin, &by_admin, &[("comment", "b")]),
    );
    let notices = [location(&first_try), location(&second_try)]
        .iter()
        .filter(|back| back.contains("notice="))
        .count();
    assert_eq!(notices, 1, "exactly one approval went through");
    assert_eq!(mlflow.stage(&model, "2").await, "Production");
    site.services.deployments.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_overtaken_in_mlflow_is_stale() {
    let FourEyes {
        site,
        mlflow,
        model,
        versions,
        promote,
    } = four_eyes().await;
    // v1, then v2, asked for and approved: v2 is in production.
    approved(&site, &promote, &versions[0]).await;
    approved(&site, &promote, &versions[1]).await;
    // v3 asked for again; then someone moves production back to v1 in
    // MLflow itself: the request was made against v2 and is now stale.
    let fourth = location(&ask(&site, &promote, &versions[2], "retry").await);
    mlflow.transition_stage(&model, "2", "Archived").await;
    mlflow.transition_stage(&model, "1", "Production").await;
    let stale = site
        .post(
            Role::Approver,
            &format!("{fourth}/approve"),
            &[("comment", "go")],
        )
        .await;
    let why = site.notice(Role::Approver, &stale).await;
    assert!(why.contains("stale"), "{why}");
    let fourth_id = fourth.strip_prefix("/approvals/").unwrap();
    assert_eq!(
        site.services
            .promotions
            .request(fourth_id)
            .await
            .unwrap()
            .state,
        RequestState::Stale
    );
    assert_eq!(
        mlflow.stage(&model, "3").await,
        "None",
        "a stale request promotes nothing"
    );
    site.services.deployments.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_step_is_audited_and_the_log_is_filtered_and_exported() {
    let FourEyes {
        site,
        mlflow,
        model,
        versions,
        promote,
    } = four_eyes().await;
    // The steps of the scenarios above, in one history.
    let page = location(&ask(&site, &promote, &versions[0], "first model").await);
    site.post(
        Role::Approver,
        &format!("{page}/approve"),
        &[("comment", "ok")],
    )
    .await;
    let second = location(&ask(&site, &promote, &versions[1], "lower rmse").await);
    let third = location(&ask(&site, &promote, &versions[2], "lowest rmse").await);
    site.post(
        Role::Admin,
        &format!("{third}/reject"),
        &[("comment", "not yet")],
    )
    .await;
    let approve = format!("{second}/approve");
    tokio::join!(
        site.post(Role::Approver, &approve, &[("comment", "a")]),
        site.post(Role::Admin, &approve, &[("comment", "b")]),
    );
    let fourth = location(&ask(&site, &promote, &versions[2], "retry").await);
    mlflow.transition_stage(&model, "2", "Archived").await;
    mlflow.transition_stage(&model, "1", "Production").await;
    site.post(
        Role::Approver,
        &format!("{fourth}/approve"),
        &[("comment", "go")],
    )
    .await;

    // The audit log has each step, each with its outcome.
    let audit = site
        .store
        .recent_events(Some(&format!("model:{model}")), 100)
        .await
        .unwrap();
    let steps: Vec<(String, String, String)> = audit
        .iter()
        .rev()
        .map(|event| {
            (
                event.actor.clone(),
                event.action.clone(),
                event.outcome.clone(),
            )
        })
        .collect();
    let step = |actor: &str, action: &str, outcome: &str| {
        (actor.to_string(), action.to_string(), outcome.to_string())
    };
    assert_eq!(
        step("catalog", "deployment-settings", "done"),
        steps[0],
        "the catalog file bound the model at start-up"
    );
    assert_eq!(steps[1].1, "promotion-request");
    assert!(
        steps.contains(&step("approver", "approve", "done")),
        "{steps:?}"
    );
    assert!(
        steps.contains(&step("approver", "approval", "done")),
        "{steps:?}"
    );
    assert!(
        steps.contains(&step("admin", "reject", "done")),
        "{steps:?}"
    );
    assert!(
        steps.iter().any(|(_, action, outcome)| action == "approve"
            && outcome.starts_with("failed: decided by someone else")),
        "the losing approval is recorded: {steps:?}"
    );
    assert!(
        steps.iter().all(|(_, _, outcome)| outcome != "pending"),
        "every step completed: {steps:?}"
    );

    // The same log, filtered and exported, as any signed-in user reads it.
    let json = page_text(
        &site,
        Role::Viewer,
        &format!("/audit.json?model={model}&action=reject"),
    )
    .await;
    let entries: Vec<app::model::AuditEntry> = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(
        (entries[0].actor.as_str(), entries[0].outcome.as_str()),
        ("admin", "done")
    );
    assert!(entries[0].detail.ends_with("not yet"), "{:?}", entries[0]);
    let csv = page_text(
        &site,
        Role::Viewer,
        &format!("/audit.csv?model={model}&actor=approver"),
    )
    .await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("time,actor,action,subject,detail,outcome")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|row| row.split(',').nth(1) == Some("approver")),
        "{csv}"
    );
    let html = page_text(
        &site,
        Role::Viewer,
        &format!("/audit?model={model}&action=promotion-request"),
    )
    .await;
    assert_eq!(
        html.matches("data-action=\"promotion-request\"").count(),
        4,
        "{html}"
    );
    let (status, _) = page_status(&site, "/audit.json?from=yesterday").await;
    assert_eq!(status, 400, "a bad date is explained, not ignored");
    site.services.deployments.shutdown().await;
}

async fn page_status(site: &Site, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let response = site
        .send(
            support::site::Caller::Signed(Role::Viewer),
            axum::http::Method::GET,
            path,
            "",
        )
        .await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn page_text(site: &Site, role: Role, path: &str) -> String {
    use http_body_util::BodyExt;
    let response = site
        .send(
            support::site::Caller::Signed(role),
            axum::http::Method::GET,
            path,
            "",
        )
        .await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn ask(site: &Site, promote: &str, version: &str, reason: &str) -> axum::response::Response {
    site.post(
        Role::Deployer,
        promote,
        &[("version", version), ("reason", reason)],
    )
    .await
}

/// Asks for `version` and has an approver approve it.
async fn approved(site: &Site, promote: &str, version: &str) {
    let page = location(&ask(site, promote, version, "tested").await);
    let approved = site
        .post(
            Role::Approver,
            &format!("{page}/approve"),
            &[("comment", "ok")],
        )
        .await;
    assert_eq!(location(&approved), page, "approved");
}
